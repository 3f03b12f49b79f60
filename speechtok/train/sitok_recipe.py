"""SiTok's training recipe: L1 flow matching + VQ commitment + ``ctc_weight`` × CTC on log-mel
(+ ``teacher_weight`` × distillation of a teacher's frame features, when the config names one).

Two stages (``objective.stage`` or ``--stage``): ``full`` trains everything; ``decoder`` fine-tunes
the flow-matching decoder of a trained tokenizer (``--init``) while the encoder, the quantiser, the
token projection ``vq_out`` and the CTC head stay exactly as loaded, so its codes do not change.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
from torch import nn

from ..ctc_decode import ctc_greedy
from ..data.dataset import Batch, DurationBatcher, MelDataset, collate
from ..data.manifest import Utterance
from ..data.teacher import Teacher, load_teacher
from ..errors import ConfigError
from ..models.sitok import MODEL_KIND, SiTok
from .plots import SITOK_PANELS
from .recipe import Recipe


@dataclass(frozen=True)
class SiTokObjective:
    stage: Literal["full", "decoder"] = "full"

    @property
    def requires_init(self) -> bool:
        return self.stage == "decoder"


class SiTokRecipe(Recipe):
    kind = MODEL_KIND
    objective_class = SiTokObjective
    stages = ("full", "decoder")
    progress_keys = ("loss", "flow", "ctc", "teacher", "shortcut", "guidance", "codebook_usage")
    plot_panels = SITOK_PANELS

    def __init__(self, model_config: Any, train: Any, objective: SiTokObjective | None = None, *,
                 progress: bool = True) -> None:
        super().__init__(model_config, train, objective, progress=progress)
        self.teacher: Teacher | None = load_teacher(model_config.teacher) if model_config.teacher else None

    @classmethod
    def complete_model_config(cls, model_config: Any) -> Any:
        """A teacher's feature size sizes the teacher head: filled in here, or checked."""
        if not model_config.teacher:
            return model_config
        frame_dim = load_teacher(model_config.teacher).frame_dim
        if not frame_dim:
            raise ConfigError(f"teacher {model_config.teacher!r}: has no frame features to distil")
        if model_config.teacher_dim not in (0, frame_dim):
            raise ConfigError(f"teacher_dim {model_config.teacher_dim} differs from the teacher's {frame_dim} features")
        return dataclasses.replace(model_config, teacher_dim=frame_dim)

    def build_model(self) -> SiTok:
        # Step at which each entry of each codebook was last chosen: [codebooks, codebook_size].
        self.last_used = torch.full((self.model_config.codebooks, self.model_config.codebook_size), -10**9,
                                    dtype=torch.long)
        model = SiTok(self.model_config)
        c = self.model_config
        if c.guidance_distill:  # an adapter over everything else
            model.freeze_for_guidance_distillation()
        elif self.objective.stage == "decoder" or c.shortcut:  # the paper's A.3 stages
            model.freeze_tokenizer()  # encoder, quantiser (kept in eval mode: no EMA update) and CTC head
        return model

    def dataset(self, rows: list[Utterance], model: nn.Module) -> MelDataset:
        return MelDataset(rows, model.mel, model.vocabulary, self.train.max_seconds, self.train.seed, self.teacher)

    def collate(self, examples: list[Any], model: nn.Module) -> Batch:
        return collate(examples, model.mel.silence_value)

    def batch_seconds(self, batch: Batch) -> float:
        return batch.seconds

    def losses(self, modules: dict[str, nn.Module], batch: Batch, phase: str, scratch: dict[str, Any],
               step: int) -> dict[str, torch.Tensor]:
        model = modules["model"]
        dev = next(model.parameters()).device
        teacher = None if batch.teacher is None else batch.teacher.to(dev)
        return model(batch.mel.to(dev), batch.frame_lengths.to(dev), batch.labels.to(dev), batch.label_lengths.to(dev),
                     teacher)

    # ------------------------------------------------------------------------ codebook usage
    def after_step(self, step: int, out: dict[str, torch.Tensor], reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Mark the entries chosen this step (residual VQ: the codes of every codebook, as ``encode`` emits them)."""
        codebooks, size = self.last_used.shape
        indices = out["indices"].detach().cpu().reshape(-1, codebooks) + torch.arange(codebooks) * size
        counts = torch.bincount(indices.flatten(), minlength=codebooks * size)
        self.last_used[reduce(counts).view(codebooks, size) > 0] = step

    def log_metrics(self, step: int) -> dict[str, float]:
        """Fraction of all codebook entries used recently; for a residual VQ, each codebook's too."""
        recent = (step - self.last_used < self.train.usage_window).float()
        metrics = {"codebook_usage": float(recent.mean())}
        if recent.shape[0] > 1:
            metrics.update({f"codebook_usage_{level}": float(r.mean()) for level, r in enumerate(recent)})
        return metrics

    def state_json(self) -> dict[str, Any]:
        return {"last_used": self.last_used.flatten().tolist()}

    def load_state_json(self, state: dict[str, Any]) -> None:
        self.last_used = torch.tensor(state["last_used"], dtype=torch.long).view(self.last_used.shape)

    # ---------------------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self, modules: dict[str, nn.Module], data: MelDataset, model: nn.Module,
                 device: torch.device, sharded: bool) -> dict[str, float]:
        """Flow and CTC loss with fixed noise, plus the greedy-CTC character error rate."""
        totals = {"valid_flow": 0.0, "valid_ctc": 0.0}
        if self.teacher is not None:
            totals["valid_teacher"] = 0.0
        edits = chars = 0
        batches = DurationBatcher(data.durations(), self.train.batch_seconds, seed=0).epoch(0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1234)
            for indices in batches:
                batch = self.collate([data.get(i, 0) for i in indices], model)
                out = self.losses(modules, batch, "model", {}, 0)
                totals["valid_flow"] += float(out["flow"]) / len(batches)
                totals["valid_ctc"] += float(out["ctc"]) / len(batches)
                if "valid_teacher" in totals:
                    totals["valid_teacher"] += float(out["teacher"]) / len(batches)
                if not sharded:  # the greedy CER probe calls submodules directly: not under FSDP
                    e, n = ctc_errors(model, batch, device)
                    edits, chars = edits + e, chars + n
        if chars:
            totals["valid_ctc_cer"] = edits / chars
        return totals


def ctc_errors(model: SiTok, batch: Batch, device: torch.device) -> tuple[int, int]:
    """Character edits and reference length of greedy CTC decoding on ``batch``."""
    x, token_mask, _ = model.stack(batch.mel.to(device), batch.frame_lengths.to(device))
    enc = model.encode_mel(x, token_mask)
    log_probs = model.ctc_log_probs(enc.cond, token_mask).cpu()
    units = range(1, log_probs.shape[-1])  # blank: 0
    edits = total = 0
    for i in range(log_probs.shape[0]):
        n_labels = int(batch.label_lengths[i])
        if n_labels == 0:
            continue
        frames = int(token_mask[i].sum()) * model.config.ctc_upsample
        hyp = ctc_greedy(log_probs[i, :frames], 0, units)
        edits += edit_distance(batch.labels[i, :n_labels].tolist(), hyp)
        total += n_labels
    return edits, total


def edit_distance(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]

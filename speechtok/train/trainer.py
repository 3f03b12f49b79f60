"""The training loop for SiTok: single process or ``torchrun`` (DDP / FSDP), exactly resumable.

Loss = L1 flow matching + VQ commitment + ``ctc_weight`` × CTC. AdamW with linear warm-up and
cosine decay, gradient clipping, duration-based batches, bf16 autocast on GPUs, periodic atomic
checkpoints, a JSONL metrics log (plus TensorBoard when installed) and a progress bar.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..checkpoint import load_checkpoint, load_state
from ..config import from_dict, to_dict
from ..data.dataset import Batch, DurationBatcher, MelDataset, collate
from ..data.manifest import read_manifest
from ..errors import ConfigError
from ..models.sitok import MODEL_KIND, SiTok
from ..models.sitok_config import SiTokConfig
from . import distributed as dist_utils
from .config import TrainConfig
from .plots import plot_metrics
from .state import find_checkpoint, gather_states, read_trainer_state, restore, save_training_state


@dataclass
class RunSpec:
    """Everything that defines a run; stored in each checkpoint so ``--resume`` needs nothing else."""

    model: SiTokConfig
    train: TrainConfig
    train_manifest: str
    valid_manifest: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"model": to_dict(self.model), "train": to_dict(self.train),
                "train_manifest": self.train_manifest, "valid_manifest": self.valid_manifest}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunSpec":
        return cls(from_dict(SiTokConfig, data["model"], "model"), from_dict(TrainConfig, data["train"], "train"),
                   data["train_manifest"], data.get("valid_manifest"))


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_lr_ratio`` at ``steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Trainer:
    def __init__(self, spec: RunSpec, run_dir: str | Path, *, resume_from: str | Path | None = None,
                 init_from: str | Path | None = None, progress: bool = True) -> None:
        self.spec = spec
        self.cfg = spec.train
        self.run_dir = Path(run_dir)
        self.info = dist_utils.setup()
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        torch.manual_seed(self.cfg.seed)
        self.progress = progress and self.info.is_main

        self.model = SiTok(spec.model).to(self.info.device)
        if init_from is not None:
            self._init_weights(init_from)
        self.strategy = dist_utils.choose_strategy(self.cfg.strategy, self.model)
        self.wrapped = dist_utils.wrap(self.model, self.info, self.strategy)
        decay = [p for p in self.model.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.model.parameters() if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.cfg.lr, betas=self.cfg.betas)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, self.cfg))

        train_rows = read_manifest(spec.train_manifest)
        self.dataset = MelDataset(train_rows, self.model.mel, self.model.vocabulary, self.cfg.max_seconds, self.cfg.seed)
        self.batcher = DurationBatcher(self.dataset.durations(), self.cfg.batch_seconds, seed=self.cfg.seed,
                                       rank=self.info.rank, world_size=self.info.world_size)
        self.valid = None
        if spec.valid_manifest:
            rows = read_manifest(spec.valid_manifest)
            self.valid = MelDataset(rows, self.model.mel, self.model.vocabulary, self.cfg.max_seconds, self.cfg.seed)

        self.step, self.epoch, self.position = 0, 0, 0
        self.last_used = torch.full((self.model.codebook_size,), -10**9, dtype=torch.long)
        if resume_from is not None:
            self._resume(find_checkpoint(resume_from))
        self.writer = self._tensorboard() if self.info.is_main else None

    # ------------------------------------------------------------------------------------- state
    def _init_weights(self, source: str | Path) -> None:
        loaded = load_checkpoint(source, expected_kind=MODEL_KIND)
        if loaded.config != to_dict(self.spec.model):
            raise ConfigError(f"{source}: its model config differs from this run's; fine-tuning needs the same architecture")
        load_state(self.model, loaded)

    def _resume(self, checkpoint_dir: Path) -> None:
        state = read_trainer_state(checkpoint_dir)
        saved = RunSpec.from_json(state["spec"])
        if to_dict(saved.model) != to_dict(self.spec.model):
            raise ConfigError(f"{checkpoint_dir}: the checkpoint's model config differs from the requested one")
        loaded = load_checkpoint(checkpoint_dir, expected_kind=MODEL_KIND)
        restore(checkpoint_dir, self.wrapped, self.optimizer, loaded.state)
        self.scheduler.last_epoch = state["step"]
        self.scheduler._last_lr = [g["lr"] for g in self.optimizer.param_groups]
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.last_used = torch.tensor(state["last_used"], dtype=torch.long)
        if self.info.is_main:
            print(f"resumed from {checkpoint_dir} at step {self.step} (epoch {self.epoch}, batch {self.position})")

    def _trainer_json(self) -> dict[str, Any]:
        return {"spec": self.spec.to_json(), "epoch": self.epoch, "position": self.position,
                "last_used": self.last_used.tolist(), "strategy": self.strategy,
                "world_size": self.info.world_size}

    def save(self) -> Path | None:
        model_state, optim_state = gather_states(self.wrapped, self.optimizer)
        path = None
        if self.info.is_main:
            path = save_training_state(self.run_dir, self.step, MODEL_KIND, self.spec.model, model_state,
                                       optim_state, self._trainer_json(), self.cfg.keep_checkpoints)
            plot_metrics(self.run_dir / "metrics.jsonl", self.run_dir / "metrics.png")
        if self.info.enabled:
            dist.barrier()
        return path

    # -------------------------------------------------------------------------------------- loop
    def _next_batch(self) -> Batch:
        batches = self.batcher.epoch(self.epoch)
        if self.position >= len(batches):
            self.epoch, self.position = self.epoch + 1, 0
            batches = self.batcher.epoch(self.epoch)
        examples = [self.dataset.get(i, self.epoch) for i in batches[self.position]]
        self.position += 1
        return collate(examples, self.model.mel.silence_value)

    def _autocast(self) -> contextlib.AbstractContextManager:
        use_bf16 = self.cfg.precision == "bf16" or (self.cfg.precision == "auto" and self.info.device.type == "cuda")
        if use_bf16:
            return torch.autocast(self.info.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, batch: Batch) -> dict[str, float]:
        self.wrapped.train()
        dev = self.info.device
        with self._autocast():
            out = self._losses(self.wrapped, batch, dev)
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self._track_usage(out["indices"])
        metrics = {k: float(v.detach()) for k, v in out.items() if k != "indices"}
        metrics["grad_norm"] = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
        return metrics

    @staticmethod
    def _losses(model: torch.nn.Module, batch: Batch, dev: torch.device) -> dict[str, torch.Tensor]:
        return model(batch.mel.to(dev), batch.frame_lengths.to(dev), batch.labels.to(dev), batch.label_lengths.to(dev))

    def _track_usage(self, indices: torch.Tensor) -> None:
        counts = torch.bincount(indices.detach().cpu(), minlength=self.model.codebook_size)
        if self.info.enabled:
            counts = counts.to(self.info.device)
            dist.all_reduce(counts)
            counts = counts.cpu()
        self.last_used[counts > 0] = self.step

    def codebook_usage(self) -> float:
        return float((self.step - self.last_used < self.cfg.usage_window).float().mean())

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Flow and CTC loss on the validation set with fixed noise, plus greedy-CTC character error rate."""
        assert self.valid is not None
        self.wrapped.eval()
        totals: dict[str, float] = {"valid_flow": 0.0, "valid_ctc": 0.0}
        edits, chars = 0, 0
        batcher = DurationBatcher(self.valid.durations(), self.cfg.batch_seconds, seed=0)
        batches = batcher.epoch(0)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1234)
            for indices in batches:
                batch = collate([self.valid.get(i, 0) for i in indices], self.model.mel.silence_value)
                with self._autocast():
                    out = self._losses(self.wrapped, batch, self.info.device)
                totals["valid_flow"] += float(out["flow"]) / len(batches)
                totals["valid_ctc"] += float(out["ctc"]) / len(batches)
                e, n = self._ctc_errors(batch)
                edits, chars = edits + e, chars + n
        if chars:
            totals["valid_ctc_cer"] = edits / chars
        return totals

    def _ctc_errors(self, batch: Batch) -> tuple[int, int]:
        m = self.model
        if self.strategy == "fsdp" and self.info.enabled:
            return 0, 0  # sharded parameters: the greedy CER probe runs only without FSDP
        dev = self.info.device
        x, token_mask, _ = m.stack(batch.mel.to(dev), batch.frame_lengths.to(dev))
        enc = m.encode_mel(x, token_mask)
        best = m.ctc_log_probs(enc.cond, token_mask).argmax(-1).cpu()
        edits = total = 0
        for i in range(best.shape[0]):
            n_labels = int(batch.label_lengths[i])
            if n_labels == 0:
                continue
            frames = int(token_mask[i].sum()) * m.config.ctc_upsample
            hyp = torch.unique_consecutive(best[i, :frames]).tolist()
            hyp = [t for t in hyp if t != 0]
            ref = batch.labels[i, :n_labels].tolist()
            edits += _edit_distance(ref, hyp)
            total += len(ref)
        return edits, total

    def _tensorboard(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))

    def _log(self, record: dict[str, Any]) -> None:
        if not self.info.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["step"])

    def run(self) -> Path | None:
        cfg = self.cfg
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "spec.json").write_text(json.dumps(self.spec.to_json(), indent=2))
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.progress, desc="train", unit="step")
        window: dict[str, float] = {}
        window_steps, audio_seconds, started = 0, 0.0, time.perf_counter()
        last_checkpoint = None
        while self.step < cfg.steps:
            batch = self._next_batch()
            metrics = self.train_step(batch)
            self.step += 1
            window_steps += 1
            audio_seconds += batch.seconds
            for key, value in metrics.items():
                window[key] = window.get(key, 0.0) + value
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                averaged = dist_utils.all_reduce_mean({k: v / window_steps for k, v in window.items()}, self.info)
                elapsed = time.perf_counter() - started
                record = {"step": self.step, "epoch": self.epoch, "lr": self.scheduler.get_last_lr()[0],
                          **averaged, "codebook_usage": self.codebook_usage(),
                          "sec_per_step": elapsed / window_steps,
                          "audio_sec_per_sec": audio_seconds * self.info.world_size / elapsed}
                bar.set_postfix(loss=f"{record['loss']:.3f}", flow=f"{record['flow']:.3f}",
                                ctc=f"{record['ctc']:.2f}", usage=f"{record['codebook_usage']:.4f}")
                self._log(record)
                window, window_steps, audio_seconds, started = {}, 0, 0.0, time.perf_counter()
            if self.valid is not None and (self.step % cfg.valid_every == 0 or self.step == cfg.steps):
                self._log({"step": self.step, **self.validate()})
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                last_checkpoint = self.save()
        bar.close()
        if self.writer is not None:
            self.writer.close()
        return last_checkpoint


def _edit_distance(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]

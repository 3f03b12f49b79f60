"""The generic training loop: single process or ``torchrun`` (DDP / FSDP), exactly resumable.

A :class:`~speechtok.train.recipe.Recipe` supplies the model family's modules, data, losses and
validation; this loop supplies the rest: AdamW per trained module with linear warm-up and cosine
decay, gradient clipping, duration-based batches, bf16 autocast on GPUs, periodic atomic
checkpoints, a JSONL metrics log (plus TensorBoard when installed) and a progress bar.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from safetensors.torch import load_file
from tqdm import tqdm

from ..checkpoint import load_checkpoint, load_state
from ..config import from_dict, to_dict
from ..data.dataset import DurationBatcher
from ..data.engine_config import source_of
from ..data.manifest import Utterance, read_corpus
from ..errors import ConfigError, DataError
from . import distributed as dist_utils
from .config import TrainConfig
from .families import family
from .plots import plot_metrics, truncate_metrics
from .state import find_checkpoint, gather_states, read_trainer_state, restore, save_training_state
from .summary import init_summary


@dataclass
class RunSpec:
    """Everything that defines a run; stored in each checkpoint so ``--resume`` needs nothing else."""

    model: Any  # the family's typed config (SiTokConfig, VocosConfig, HoliTokConfig)
    train: TrainConfig
    train_manifest: str
    valid_manifest: str | None = None
    kind: str = "sitok"
    objective: Any = None  # the family's typed objective, when it has one (HoliTok's stage and losses)

    def to_json(self) -> dict[str, Any]:
        data = {"kind": self.kind, "model": to_dict(self.model), "train": to_dict(self.train),
                "train_manifest": self.train_manifest, "valid_manifest": self.valid_manifest}
        if self.objective is not None:
            data["objective"] = to_dict(self.objective)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunSpec":
        kind = data.get("kind", "sitok")
        objective_class = family(kind).recipe.objective_class
        objective = from_dict(objective_class, data.get("objective", {}), "objective") if objective_class else None
        return cls(from_dict(family(kind).config_class, data["model"], "model"),
                   from_dict(TrainConfig, data["train"], "train"), data["train_manifest"],
                   data.get("valid_manifest"), kind, objective)

    def replace(self, **changes: Any) -> "RunSpec":
        return dataclasses.replace(self, **changes)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_lr_ratio`` at ``steps``, starting at ``decay_from``
    (0: the end of warm-up); flat while a time budget still waits to fix ``steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.time_budget_s > 0:
        return 1.0
    start = cfg.decay_from or cfg.warmup_steps
    progress = min(1.0, max(0, step - start) / max(1, cfg.steps - start))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def fit_steps(step: int, sec_per_step: float, elapsed: float, cfg: TrainConfig, pause_per_step: float = 0.0,
              reserve_s: float = 0.0) -> int:
    """The step count that ends within ``cfg.time_budget_s`` at ``sec_per_step`` of training plus
    ``pause_per_step`` (validation and checkpoints measured so far, spread over their interval), after
    ``reserve_s`` (the final validation and checkpoint) and 5 % of the rest are set aside, never more than
    ``cfg.steps`` and never before ``step``."""
    left = max(0.0, cfg.time_budget_s - elapsed - reserve_s)
    fitting = int(0.95 * left / max(sec_per_step + pause_per_step, 1e-6))
    return max(step, min(cfg.steps, step + fitting))


def keep_decay_position(step: int, cfg: TrainConfig, new_steps: int) -> int:
    """The ``decay_from`` that leaves ``step`` at the same point of the cosine decay when its last step
    moves to ``new_steps``, so a budget refit never makes the learning rate jump."""
    start = cfg.decay_from or cfg.warmup_steps
    if step <= start or new_steps <= step:
        return cfg.decay_from
    # at (or past) the old last step the decay has reached its floor: keep the rest near it
    progress = min(0.999, (step - start) / max(1, cfg.steps - start))
    anchored = round((step - progress * new_steps) / (1.0 - progress))
    return anchored or -1  # 0 would read as "the end of warm-up"


def check_source_repeats(repeats: dict[str, int], sources: set[str], manifest: str) -> None:
    """Refuse a data mix that names a source the training set lacks (a typo would silently train on the
    plain mix), a negative count, or one that leaves nothing."""
    if not repeats:
        return
    unknown = sorted(set(repeats) - sources)
    if unknown:
        known = sorted(sources)
        shown = ", ".join(known[:12]) + (f" and {len(known) - 12} more" if len(known) > 12 else "")
        raise DataError(f"train.source_repeats: {manifest} has no training utterance from {', '.join(unknown)}"
                        f" (its sources: {shown})")
    negative = sorted(k for k, v in repeats.items() if v < 0)
    if negative:
        raise DataError(f"train.source_repeats: a negative count for {', '.join(negative)}")
    if all(repeats.get(source, 1) == 0 for source in sources):
        raise DataError("train.source_repeats: every source is left out (0)")


class Trainer:
    def __init__(self, spec: RunSpec, run_dir: str | Path, *, resume_from: str | Path | None = None,
                 init_from: str | Path | None = None, progress: bool = True) -> None:
        self._created = time.perf_counter()  # a time budget counts from here: loading the data is part of it
        spec = spec.replace(model=family(spec.kind).recipe.complete_model_config(spec.model))
        self.spec = spec
        self.cfg = spec.train
        self.run_dir = Path(run_dir)
        self.info = dist_utils.setup()
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        torch.manual_seed(self.cfg.seed)
        self.progress = progress and self.info.is_main
        self.recipe = family(spec.kind).recipe(spec.model, spec.train, spec.objective, progress=self.progress)

        self.model = self.recipe.build_model().to(self.info.device)
        self.dataset = self.recipe.dataset(self._training_rows(spec.train_manifest), self.model)
        repeats = None
        if self.cfg.source_repeats:  # again on what the recipe kept (AR+DiT: transcribed utterances only)
            sources = self.dataset.sources()
            wanted = {name: count for name, count in self.cfg.source_repeats.items() if count > 0}
            check_source_repeats(wanted, set(sources), spec.train_manifest)
            repeats = [self.cfg.source_repeats.get(source, 1) for source in sources]
        self.batcher = DurationBatcher(self.dataset.durations(), self.cfg.batch_seconds, seed=self.cfg.seed,
                                       rank=self.info.rank, world_size=self.info.world_size, repeats=repeats)
        self.valid = self.recipe.dataset(read_corpus(spec.valid_manifest), self.model) if spec.valid_manifest else None
        if self.cfg.preload_workers > 0:
            self.dataset.preload(self.cfg.preload_workers, self.progress)
        # Every trained module: the exported model, then the recipe's auxiliary ones.
        self.modules: dict[str, nn.Module] = {"model": self.model}
        for name, module in self.recipe.auxiliary_modules(self.model).items():
            self.modules[name] = module.to(self.info.device)
        self.init_source: dict[str, Any] | None = None  # the --init checkpoint's path and training summary
        if init_from is not None:
            self._init_weights(init_from)
        self.strategy = dist_utils.choose_strategy(self.cfg.strategy, self.model)
        self.wrapped = {name: dist_utils.wrap(m, self.info, self.strategy if name == "model" else "ddp",
                                              find_unused=name != "model")
                        for name, m in self.modules.items()}
        self.optimizers = {name: self._optimizer(m) for name, m in self.modules.items()}
        self.phase_members = {phase: [n for n in self.modules if self.recipe.phase_of(n) == phase]
                              for phase in self.recipe.phases}

        self.step, self.epoch, self.position = 0, 0, 0
        if resume_from is not None:
            self._resume(find_checkpoint(resume_from))
        # what the budget fits need once the first has replaced cfg.steps and dropped the budget from cfg;
        # a resumed run's ceiling is its last fit unless --steps raises it
        self._budget_s, self._ceiling = self.cfg.time_budget_s, self.cfg.steps
        self.writer = self._tensorboard() if self.info.is_main else None

    def _training_rows(self, manifest: str) -> list[Utterance]:
        rows = read_corpus(manifest)
        kept = [r for r in rows if r.seconds >= self.cfg.min_seconds]
        if not kept:
            raise DataError(f"{manifest}: no utterance of at least train.min_seconds = {self.cfg.min_seconds:g} s")
        if not self.cfg.source_repeats:
            return kept
        sources = [source_of(r.path) for r in kept]
        check_source_repeats(self.cfg.source_repeats, set(sources), manifest)
        return [r for r, source in zip(kept, sources) if self.cfg.source_repeats.get(source, 1) > 0]  # 0: not loaded

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The exported model's optimizer."""
        return self.optimizers["model"]

    def _optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        trained = [p for p in module.parameters() if p.requires_grad]  # frozen parts (HoliTok stage II) are left out
        decay = [p for p in trained if p.dim() >= 2]
        no_decay = [p for p in trained if p.dim() < 2]
        return torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.cfg.lr, betas=self.cfg.betas)

    # ------------------------------------------------------------------------------------- state
    def _init_weights(self, source: str | Path) -> None:
        """Start from another run's weights (fine-tuning, or the next HoliTok stage): the model's,
        plus any auxiliary module saved beside them under the same name (e.g. the discriminators)."""
        path = Path(source)
        if not (path / "config.json").is_file() and path.is_dir():
            path = find_checkpoint(path)  # a run directory: its latest checkpoint
        loaded = load_checkpoint(path, expected_kind=self.spec.kind)
        # only the main rank writes trainer.json: the others need not read the init's manifests
        self.init_source = init_summary(loaded) if self.info.is_main else None
        source_model = from_dict(type(self.spec.model), loaded.config, "model")
        if hasattr(self.spec.model, "check_init"):  # what a family's free fields may not change over a trained part
            self.spec.model.check_init(source_model, str(source))
        free = tuple(f for group in ("INFERENCE_FIELDS", "OBJECTIVE_FIELDS", "FINETUNE_FIELDS")
                     for f in getattr(self.spec.model, group, ()))
        source_model = dataclasses.replace(source_model, **{f: getattr(self.spec.model, f) for f in free})
        grown = {}  # module → (layers it had, layers it has): the trained layers load, the new ones start silenced
        for field, module in getattr(self.spec.model, "GROWABLE_STACKS", {}).items():
            had, has = getattr(source_model, field), getattr(self.spec.model, field)
            if has > had:
                grown[module] = (had, has)
                source_model = dataclasses.replace(source_model, **{field: has})
        parts = getattr(self.spec.model, "REPLACEABLE_PARTS", {})
        replaced_parts = [part for part, (fields, _) in parts.items()
                          if any(getattr(source_model, f) != getattr(self.spec.model, f) for f in fields)]
        for part in replaced_parts:  # e.g. a new quantiser (bitrate) over the trained encoder and decoder
            fields = parts[part][0] + ("name",)
            source_model = dataclasses.replace(source_model, **{f: getattr(self.spec.model, f) for f in fields})
        if source_model != self.spec.model:
            differ = [f.name for f in dataclasses.fields(source_model)
                      if getattr(source_model, f.name) != getattr(self.spec.model, f.name)]
            raise ConfigError(f"{source}: its model config differs from this run's in {', '.join(differ)};"
                              " fine-tuning needs the same architecture")
        replaced = tuple(module for part in replaced_parts for module in parts[part][1])
        new_layers = tuple(f"{module}.blocks.{i}" for module, (had, has) in grown.items() for i in range(had, has))
        load_state(self.model, loaded, may_lack=getattr(self.model, "finetune_additions", ()) + replaced + new_layers,
                   may_drop=getattr(self.model, "finetune_removals", ()) + replaced)
        for module, (had, has) in grown.items():
            getattr(self.model, module).silence_blocks(had)
            if self.info.is_main:
                print(f"{source}: the {module} grows from {had} to {has} layers; the new ones start silenced"
                      " (the model starts as the checkpoint)")
        if replaced_parts and self.info.is_main:
            verb = "starts" if len(replaced_parts) == 1 else "start"
            print(f"{source}: a new {' and a new '.join(replaced_parts)} ({self.spec.model.name}) {verb} fresh;"
                  " the other weights are loaded")
        for name, module in self.modules.items():
            weights = loaded.directory / f"{name}.safetensors"
            if name != "model" and weights.is_file():
                try:
                    module.load_state_dict(load_file(str(weights)))
                except RuntimeError:
                    raise ConfigError(f"{weights}: does not fit this run's {name}") from None

    def _resume(self, checkpoint_dir: Path) -> None:
        state = read_trainer_state(checkpoint_dir)
        saved = RunSpec.from_json(state["spec"])
        if saved.kind != self.spec.kind or to_dict(saved.model) != to_dict(self.spec.model):
            raise ConfigError(f"{checkpoint_dir}: the checkpoint's model config differs from the requested one")
        loaded = load_checkpoint(checkpoint_dir, expected_kind=self.spec.kind)
        restore(checkpoint_dir, self.wrapped, self.optimizers, loaded.state)
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.recipe.load_state_json(state.get("recipe", {}))
        self.init_source = state.get("init")
        if self.info.is_main:
            truncate_metrics(self.run_dir / "metrics.jsonl", self.step)
            print(f"resumed from {checkpoint_dir} at step {self.step} (epoch {self.epoch}, batch {self.position})")

    def _trainer_json(self) -> dict[str, Any]:
        return {"spec": self.spec.to_json(), "epoch": self.epoch, "position": self.position,
                "recipe": self.recipe.state_json(), "strategy": self.strategy,
                "world_size": self.info.world_size, **({"init": self.init_source} if self.init_source else {})}

    def save(self) -> Path | None:
        states = {name: gather_states(self.wrapped[name], self.optimizers[name]) for name in self.modules}
        path = None
        if self.info.is_main:
            path = save_training_state(self.run_dir, self.step, self.spec.kind, self.spec.model, states,
                                       self._trainer_json(), self.cfg.keep_checkpoints)
            plot_metrics(self.run_dir / "metrics.jsonl", self.run_dir / "metrics.png", self.recipe.plot_panels)
        if self.info.enabled:
            dist.barrier()
        return path

    # -------------------------------------------------------------------------------------- loop
    def _next_batch(self) -> Any:
        batches = self.batcher.epoch(self.epoch)
        if self.position >= len(batches):
            self.epoch, self.position = self.epoch + 1, 0
            batches = self.batcher.epoch(self.epoch)
        examples = [self.dataset.get(i, self.epoch) for i in batches[self.position]]
        self.position += 1
        return self.recipe.collate(examples, self.model)

    def _autocast(self) -> contextlib.AbstractContextManager:
        use_bf16 = self.cfg.precision == "bf16" or (self.cfg.precision == "auto" and self.info.device.type == "cuda")
        if use_bf16:
            return torch.autocast(self.info.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if not self.info.enabled:
            return tensor
        summed = tensor.to(self.info.device)
        dist.all_reduce(summed)
        return summed.cpu()

    def train_step(self, batch: Any) -> dict[str, float]:
        """One update of every phase's module; returns the step's metrics."""
        for module in self.wrapped.values():
            module.train()
        lr = self.cfg.lr * lr_factor(self.step, self.cfg)  # a pure function of the step: nothing to resume
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = lr
        scratch: dict[str, Any] = {}
        metrics: dict[str, float] = {"lr": lr}
        for phase in self.recipe.phases:
            with self._autocast():
                out = self.recipe.losses(self.wrapped, batch, phase, scratch, self.step)
            if out is None:
                continue
            members = self.phase_members[phase]
            for name in members:
                self.optimizers[name].zero_grad(set_to_none=True)
            out["loss"].backward()
            params = [p for name in members for p in self.modules[name].parameters() if p.requires_grad]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip)
            for name in members:
                self.optimizers[name].step()
            if phase == "model":
                self.recipe.after_step(self.step + 1, out, self._all_reduce_sum)
            prefix = "" if phase == "model" else f"{phase}_"
            metrics.update({prefix + k: float(v.detach()) for k, v in out.items() if v.dim() == 0})
            metrics[prefix + "grad_norm"] = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
        metrics.pop("discriminator_loss", None)  # the recipe reports its own named terms
        return metrics

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        assert self.valid is not None
        for module in self.wrapped.values():
            module.eval()
        with self._autocast():
            return self.recipe.validate(self.wrapped, self.valid, self.model, self.info.device,
                                        sharded=self.strategy == "fsdp" and self.info.enabled)

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

    def _write_spec(self) -> None:
        (self.run_dir / "spec.json").write_text(json.dumps(self.spec.to_json(), indent=2))

    def _budget_fit_due(self, elapsed: float) -> bool:
        """Fit at every log window once warm-up is over (or once half the budget is spent, so that an
        overspent warm-up still ends in time); decided together on every process."""
        if self._budget_s <= 0:  # no budget: the same on every process, no collective needed
            return False
        due = self.step >= self.cfg.warmup_steps or elapsed >= self._budget_s / 2
        return bool(dist_utils.all_reduce_int(int(due), dist.ReduceOp.MAX, self.info))

    def _fit_to_budget(self, sec_per_step: float, pause_per_step: float, reserve_s: float, elapsed: float) -> None:
        """Set ``steps`` to what the last log window's step time fits in the rest of the budget (the same
        count on every process). The first fit starts the cosine decay; later ones move its last step and
        re-anchor its start so that the learning rate goes on from where it is: a first epoch that runs
        slower (data loading, new batch shapes warming up the GPU) costs no more than the windows it
        lasted. The spec keeps the latest fit and drops the budget, so a resume continues that schedule."""
        budgeted = dataclasses.replace(self.cfg, steps=self._ceiling, time_budget_s=self._budget_s)
        steps = dist_utils.all_reduce_int(fit_steps(self.step, sec_per_step, elapsed, budgeted, pause_per_step,
                                                    reserve_s), dist.ReduceOp.MIN, self.info)
        first = self.cfg.time_budget_s > 0
        decay_from = self.step if first else keep_decay_position(self.step, self.cfg, steps)
        fitted = dataclasses.replace(self.cfg, steps=steps, time_budget_s=0.0, decay_from=decay_from)
        changed, self.cfg = fitted != self.cfg, fitted
        self.spec = self.spec.replace(train=self.cfg)
        self._log({"step": self.step, "budget_s": self._budget_s, "budget_sec_per_step": sec_per_step,
                   "budget_pause_per_step": pause_per_step, "budget_steps": steps})
        if self.info.is_main and changed:
            self._write_spec()
            if first:
                print(f"time budget {self._budget_s:g} s: {sec_per_step:.3f} s/step (+{pause_per_step:.3f} for"
                      f" validation and checkpoints) at step {self.step}, training to step {steps} (refitted at"
                      " every log window)", flush=True)

    def run(self) -> Path | None:
        cfg = self.cfg
        run_started = self._created
        sec_per_step = 0.0  # of the last log window's training steps: what the budget fit measures
        # validation and checkpoints pause training: kept out of the step time, but their mean duration
        # spread over their interval is what the budget fit adds per step
        paused = 0.0
        pauses: dict[str, list[float]] = {"valid": [], "checkpoint": []}
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._write_spec()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not self.progress, desc="train", unit="step")
        window: dict[str, tuple[float, int]] = {}  # metric → (sum, steps that reported it)
        window_steps, audio_seconds, started = 0, 0.0, time.perf_counter()
        data_seconds = 0.0  # of the window, spent assembling batches (the rest is the step itself)
        last_checkpoint = None
        while self.step < cfg.steps:
            fetch_started = time.perf_counter()
            batch = self._next_batch()
            data_seconds += time.perf_counter() - fetch_started
            metrics = self.train_step(batch)
            self.step += 1
            window_steps += 1
            audio_seconds += self.recipe.batch_seconds(batch)
            for key, value in metrics.items():  # a metric may be absent from a step (no ASR item in the batch)
                total, count = window.get(key, (0.0, 0))
                window[key] = (total + value, count + 1)
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                averaged = dist_utils.all_reduce_mean(window, self.info)
                elapsed = time.perf_counter() - started - paused
                record = {"step": self.step, "epoch": self.epoch, **averaged, **self.recipe.log_metrics(self.step),
                          "sec_per_step": elapsed / window_steps, "data_sec_per_step": data_seconds / window_steps,
                          "audio_sec_per_sec": audio_seconds * self.info.world_size / elapsed}
                sec_per_step = record["sec_per_step"]
                bar.set_postfix({k: f"{record[k]:.3f}" for k in self.recipe.progress_keys if k in record})
                self._log(record)
                window, window_steps, audio_seconds, started, paused = {}, 0, 0.0, time.perf_counter(), 0.0
                data_seconds = 0.0
                if self._budget_fit_due(time.perf_counter() - run_started):
                    mean_pause = {kind: statistics.fmean(times) if times else 0.0 for kind, times in pauses.items()}
                    pause_per_step = (mean_pause["valid"] / cfg.valid_every
                                      + mean_pause["checkpoint"] / cfg.checkpoint_every)
                    # the last step validates (with validation data) and saves whatever the interval
                    reserve_s = mean_pause["valid"] + mean_pause["checkpoint"]
                    self._fit_to_budget(sec_per_step, pause_per_step, reserve_s, time.perf_counter() - run_started)
                    cfg = self.cfg
                    bar.total = cfg.steps
            if self.valid is not None and (self.step % cfg.valid_every == 0 or self.step == cfg.steps):
                pause_started = time.perf_counter()
                self._log({"step": self.step, **self.validate()})
                pauses["valid"].append(time.perf_counter() - pause_started)
                paused += pauses["valid"][-1]
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                pause_started = time.perf_counter()
                last_checkpoint = self.save()
                pauses["checkpoint"].append(time.perf_counter() - pause_started)
                paused += pauses["checkpoint"][-1]
        bar.close()
        if self.writer is not None:
            self.writer.close()
        return last_checkpoint


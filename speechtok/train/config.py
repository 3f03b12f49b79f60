"""Training hyper-parameters (typed; overridable from YAML under the ``train:`` key)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1000
    lr: float = 8e-5  # SiTok paper value; small CPU models train well at ~5e-4
    min_lr_ratio: float = 0.1  # cosine decay after warm-up ends at lr × this (the paper's schedule is not published)
    warmup_steps: int = 100
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    grad_clip: float = 0.5
    batch_seconds: float = 60.0  # padded seconds of audio per batch per process
    max_seconds: float = 12.0  # longer utterances are randomly cropped (and lose their transcript)
    # shorter training utterances are left out: 0.4 s FSDD digits would otherwise be most crops of a
    # waveform recipe (one crop per utterance), mostly padding
    min_seconds: float = 0.0
    segment_seconds: float = 1.0  # waveform recipes (vocoder) train on random crops of this length
    log_every: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    valid_every: int = 200
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"  # auto: FSDP for presets over 300M parameters
    usage_window: int = 500  # codebook usage = codes used in the last N steps
    threads: int = 0  # torch CPU threads per process; 0 = leave torch's default
    # > 0: load and cache the whole training set up front with this many threads (decoding releases the GIL)
    # instead of one file at a time during the first epoch
    preload_workers: int = 0
    # > 0: a wall-clock budget (a lent GPU's lease), counted from the trainer's construction (data loading
    # included). After
    # warm-up (or once half the budget is spent) `steps` is set at every log window to what the last window's
    # step time, plus validation and checkpoints as measured, fits in the rest, never above the configured
    # `steps`; the cosine decay runs from the first fit (`decay_from`) to the latest last step. The run's spec
    # keeps the latest fit and drops the budget, so resuming continues that schedule.
    time_budget_s: float = 0.0
    decay_from: int = 0  # the step the cosine decay starts at (0: the end of warm-up); set by a budget's fits
    # the data mix: how many times each epoch lists the utterances of a source (the data engine's source,
    # e.g. {real: 4, real_aug: 2}, or a dataset folder's name; see speechtok.data.engine_config.source_of);
    # sources not named keep 1, and 0 leaves a source out
    source_repeats: dict[str, int] = field(default_factory=dict, hash=False)

"""What the generic :class:`~speechtok.train.trainer.Trainer` needs from a model family.

A recipe builds the exported model (and any auxiliary modules that train beside it but are not
shipped, such as GAN discriminators), its data pipeline, its losses and its validation. The
trainer owns everything shared: optimisers and schedules, distributed wrapping, the loop, logging,
checkpoints and exact resume. A training step runs the recipe's ``phases`` in order; each phase
returns losses whose ``"loss"`` is back-propagated into the module of the same name only.
"""
from __future__ import annotations

from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from ..data.manifest import Utterance
from .config import TrainConfig
from .plots import Panel


class TrainingData(Protocol):
    """A dataset whose random choices are pure functions of ``(seed, epoch, index)``."""

    def __len__(self) -> int: ...

    def durations(self) -> list[float]: ...

    def sources(self) -> list[str]:
        """Each item's source (:func:`speechtok.data.engine_config.source_of`), for `train.source_repeats`."""

    def get(self, index: int, epoch: int) -> Any: ...

    def preload(self, workers: int, progress: bool = False) -> None:
        """Load every item now with ``workers`` threads (`train.preload_workers`)."""


class Recipe:
    kind: ClassVar[str]  # the model kind recorded in checkpoints
    objective_class: ClassVar[type | None] = None  # typed training objective (YAML 'objective:'), if any
    stages: ClassVar[tuple[str, ...]] = ()  # values of ``--stage`` (the objective's ``stage``), if any
    phases: ClassVar[tuple[str, ...]] = ("model",)
    progress_keys: ClassVar[tuple[str, ...]] = ("loss",)
    plot_panels: ClassVar[tuple[Panel, ...]] = (("loss", None, "loss"),)

    def __init__(self, model_config: Any, train: TrainConfig, objective: Any = None, *,
                 progress: bool = True) -> None:
        """``progress``: whether the recipe's own long preparation (e.g. encoding the corpus) shows a
        bar; the trainer passes its own setting, so ``--no-progress`` keeps logs free of bars."""
        self.model_config = model_config
        self.train = train
        self.progress = progress
        if objective is None and self.objective_class is not None:
            objective = self.objective_class()  # the defaults (an old run spec records none)
        self.objective = objective

    @classmethod
    def complete_model_config(cls, model_config: Any) -> Any:
        """Fill in (or check) what the config records about the outside world before the run is
        stored, e.g. the hash of the tokenizer an AR+DiT model reads."""
        return model_config

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def auxiliary_modules(self, model: nn.Module) -> dict[str, nn.Module]:
        """Modules trained and checkpointed with the model but not exported (e.g. discriminators).
        Called after the training set is built."""
        return {}

    def phase_of(self, module: str) -> str:
        """The phase whose loss updates ``module`` (auxiliary heads usually learn with the model)."""
        return module if module in self.phases else "model"

    def dataset(self, rows: list[Utterance], model: nn.Module) -> TrainingData:
        """Called for the training set first, then for the validation set."""
        raise NotImplementedError

    def collate(self, examples: list[Any], model: nn.Module) -> Any:
        raise NotImplementedError

    def batch_seconds(self, batch: Any) -> float:
        raise NotImplementedError

    def losses(self, modules: dict[str, nn.Module], batch: Any, phase: str, scratch: dict[str, Any],
               step: int) -> dict[str, torch.Tensor] | None:
        """Losses of ``phase`` (None skips the phase this step); ``scratch`` is shared by the step's phases."""
        raise NotImplementedError

    def validate(self, modules: dict[str, nn.Module], data: TrainingData, model: nn.Module,
                 device: torch.device, sharded: bool) -> dict[str, float]:
        raise NotImplementedError

    # Optional hooks for state that lives outside the modules (e.g. codebook usage statistics).
    def after_step(self, step: int, out: dict[str, torch.Tensor], reduce: Any) -> None:
        pass

    def log_metrics(self, step: int) -> dict[str, float]:
        return {}

    def state_json(self) -> dict[str, Any]:
        return {}

    def load_state_json(self, state: dict[str, Any]) -> None:
        pass

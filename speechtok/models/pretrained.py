"""``from_preset`` / ``from_pretrained`` / ``save_pretrained``, written once for every model family."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

import torch

from .. import checkpoint as ckpt
from ..config import from_dict, override

M = TypeVar("M", bound="PretrainedMixin")


class PretrainedMixin:
    """Mixed into an ``nn.Module`` whose ``__init__`` takes its typed config and stores ``self.config``."""

    model_kind: ClassVar[str]  # recorded in checkpoints; loading refuses another kind
    config_class: ClassVar[type]
    get_preset: ClassVar[Callable[[str], Any]]  # set as staticmethod(get_preset)
    #: Submodules attached from other checkpoints after loading (SiTok's vocoder): never saved as ours.
    companion_modules: ClassVar[tuple[str, ...]] = ()
    config: Any

    @classmethod
    def from_preset(cls: type[M], name: str, **overrides: object) -> M:
        config = cls.get_preset(name)
        if overrides:
            config = override(config, dict(overrides), where=name)
        return cls(config)

    @classmethod
    def from_pretrained(cls: type[M], name_or_dir: str | Path, *, map_location: str = "cpu") -> M:
        """Load a checkpoint directory or a bundled model name; refuses hash or architecture mismatch."""
        loaded = ckpt.load_checkpoint(name_or_dir, expected_kind=cls.model_kind)
        model = cls(from_dict(cls.config_class, loaded.config, where=f"{loaded.directory}/config"))
        ckpt.load_state(model, loaded)
        model.after_load(loaded)
        return model.eval().to(map_location)

    def after_load(self, loaded: ckpt.LoadedCheckpoint) -> None:
        """Hook for companions recorded in the checkpoint's info (e.g. SiTok's vocoder)."""

    @staticmethod
    def companion(loaded: ckpt.LoadedCheckpoint, source: str) -> str:
        """Where a companion checkpoint named ``source`` is: a folder of that name beside the loaded
        checkpoint when there is one, else ``source`` itself (a bundled name or a path)."""
        beside = Path(loaded.directory) / source
        return str(beside) if beside.is_dir() else source

    def save_pretrained(self, directory: str | Path, *, dtype: torch.dtype = torch.float32,
                        info: dict | None = None) -> Path:
        """Write the model's own weights; attached companions (:attr:`companion_modules`) are
        checkpoints of their own, named in ``info``, so a loaded model saves as it was trained."""
        state = {k: v for k, v in self.state_dict().items() if k.split(".")[0] not in self.companion_modules}
        return ckpt.save_checkpoint(directory, self.model_kind, self.config, state, dtype=dtype, info=info)

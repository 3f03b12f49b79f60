"""The trainable model families: kind → recipe, config class and presets.

Configs and presets are plain dataclasses (no torch), so ``speechtok train --help`` lists presets
instantly; a family's recipe (models, losses, torch) is imported only when a run needs it.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..errors import ConfigError
from ..models import ardit_config, holitok_config, sitok_config
from ..vocoder import vocos_config

if TYPE_CHECKING:
    from .recipe import Recipe


@dataclass(frozen=True)
class Family:
    recipe_path: str  # "module:Class" relative to this package, imported on first use
    config_class: type
    presets: dict[str, Any]
    get_preset: Callable[[str], Any]

    @property
    def recipe(self) -> type[Recipe]:
        module, name = self.recipe_path.split(":")
        return getattr(importlib.import_module(module, __package__), name)


FAMILIES: dict[str, Family] = {
    "sitok": Family(".sitok_recipe:SiTokRecipe", sitok_config.SiTokConfig, sitok_config.PRESETS,
                    sitok_config.get_preset),
    "vocos": Family(".vocos_recipe:VocosRecipe", vocos_config.VocosConfig, vocos_config.PRESETS,
                    vocos_config.get_preset),
    "holitok": Family(".holitok_recipe:HoliTokRecipe", holitok_config.HoliTokConfig, holitok_config.PRESETS,
                      holitok_config.get_preset),
    "ardit": Family(".ardit_recipe:ARDiTRecipe", ardit_config.ARDiTConfig, ardit_config.PRESETS,
                    ardit_config.get_preset),
}


def family(kind: str) -> Family:
    if kind not in FAMILIES:
        raise ConfigError(f"unknown model kind {kind!r} (trainable: {', '.join(FAMILIES)})")
    return FAMILIES[kind]


def all_presets() -> list[str]:
    return [name for fam in FAMILIES.values() for name in fam.presets]


def preset_family(name: str) -> tuple[str, Any]:
    """(kind, config) of the preset called ``name``, whatever its family."""
    for kind, fam in FAMILIES.items():
        if name in fam.presets:
            return kind, fam.get_preset(name)
    raise ConfigError(f"unknown preset {name!r} (available: {', '.join(all_presets())})")

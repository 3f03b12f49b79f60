"""The trainable model families: kind → recipe, config class and presets."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConfigError
from ..models import ardit_config, holitok_config, sitok_config
from ..vocoder import vocos_config
from .ardit_recipe import ARDiTRecipe
from .holitok_recipe import HoliTokRecipe
from .recipe import Recipe
from .sitok_recipe import SiTokRecipe
from .vocos_recipe import VocosRecipe


@dataclass(frozen=True)
class Family:
    recipe: type[Recipe]
    config_class: type
    presets: dict[str, Any]
    get_preset: Callable[[str], Any]


FAMILIES: dict[str, Family] = {
    SiTokRecipe.kind: Family(SiTokRecipe, sitok_config.SiTokConfig, sitok_config.PRESETS, sitok_config.get_preset),
    VocosRecipe.kind: Family(VocosRecipe, vocos_config.VocosConfig, vocos_config.PRESETS, vocos_config.get_preset),
    HoliTokRecipe.kind: Family(HoliTokRecipe, holitok_config.HoliTokConfig, holitok_config.PRESETS,
                               holitok_config.get_preset),
    ARDiTRecipe.kind: Family(ARDiTRecipe, ardit_config.ARDiTConfig, ardit_config.PRESETS, ardit_config.get_preset),
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

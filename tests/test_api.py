"""The public API: one import away, lazy, and ``speechtok.load`` picking the right class."""
from __future__ import annotations

import subprocess
import sys

import pytest

import speechtok
from speechtok.errors import CheckpointError


def test_import_is_light_and_versioned():
    code = "import sys, speechtok; print(speechtok.__version__, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [speechtok.__version__, "False"]


def test_main_classes_are_one_import_away():
    from speechtok import HoliTok, SiTok, Vocos
    from speechtok.models.holitok import HoliTok as holitok_class
    from speechtok.models.sitok import SiTok as sitok_class
    from speechtok.vocoder.vocos import Vocos as vocos_class

    assert (SiTok, HoliTok, Vocos) == (sitok_class, holitok_class, vocos_class)
    with pytest.raises(AttributeError):
        speechtok.NoSuchThing  # noqa: B018


def test_load_returns_the_class_of_the_checkpoint(tmp_path):
    model = speechtok.load("sitok-default")
    assert isinstance(model, speechtok.SiTok) and model.bitrate == 200.0
    assert isinstance(speechtok.load("vocos-24k"), speechtok.Vocos)
    speechtok.HoliTok.from_preset("holitok-tiny").save_pretrained(tmp_path / "h")
    assert isinstance(speechtok.load(tmp_path / "h"), speechtok.HoliTok)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        speechtok.load(tmp_path / "missing")


def test_every_family_recipe_matches_its_kind():
    """The kind keys of the lazy family table must name the recipes that record that kind."""
    from speechtok.train.families import FAMILIES

    assert {kind: fam.recipe.kind for kind, fam in FAMILIES.items()} == {kind: kind for kind in FAMILIES}

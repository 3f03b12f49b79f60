from __future__ import annotations

import json

import pytest
import torch

from speechtok.errors import CheckpointError
from speechtok.models.sitok import SiTok


def test_round_trip_gives_identical_model(tmp_path, tiny_model, speech):
    wav, rate = speech
    tiny_model.save_pretrained(tmp_path / "ckpt", info={"note": "test"})
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert files == ["config.json", "model.safetensors"]
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert len(meta["weights"]["sha256"]) == 64 and meta["kind"] == "sitok"
    loaded = SiTok.from_pretrained(tmp_path / "ckpt")
    x = torch.from_numpy(wav)[None, None]
    assert torch.equal(loaded.encode(x, rate), tiny_model.encode(x, rate))
    codes = torch.randint(0, 65536, (1, 1, 4))
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(loaded.decode_mel(codes, steps=2, generator=g()), tiny_model.decode_mel(codes, steps=2, generator=g()))


def test_tampered_weights_are_refused(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        SiTok.from_pretrained(tmp_path / "ckpt")


def test_edited_config_is_refused(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "ckpt")
    path = tmp_path / "ckpt" / "config.json"
    meta = json.loads(path.read_text())
    meta["config"]["decoder_layers"] = 3
    path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="recorded hash"):
        SiTok.from_pretrained(tmp_path / "ckpt")


def test_weights_of_another_architecture_are_refused(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "a")
    SiTok.from_preset("sitok-tiny", decoder_layers=3).save_pretrained(tmp_path / "b")
    (tmp_path / "a" / "model.safetensors").write_bytes((tmp_path / "b" / "model.safetensors").read_bytes())
    meta = json.loads((tmp_path / "a" / "config.json").read_text())
    meta["weights"]["sha256"] = json.loads((tmp_path / "b" / "config.json").read_text())["weights"]["sha256"]
    (tmp_path / "a" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="different architecture"):
        SiTok.from_pretrained(tmp_path / "a")


def test_unknown_name_and_wrong_kind(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        SiTok.from_pretrained("sitok-does-not-exist")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        SiTok.from_pretrained(tmp_path / "junk")


def test_fp16_export_loads_into_fp32_model(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    loaded = SiTok.from_pretrained(tmp_path / "half")
    assert loaded.encoder_in.weight.dtype == torch.float32
    assert torch.allclose(loaded.encoder_in.weight, tiny_model.encoder_in.weight, atol=1e-3)


def test_the_same_weights_exported_twice_get_the_same_file_hash(tmp_path, tiny_model):
    """A re-export of the same weights is byte-identical, so a model pinned to its tokenizer's weights
    hash (AR+DiT) accepts it. safetensors writes its metadata in an order that changes between
    processes; the header is rewritten sorted."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    from speechtok.checkpoint import sort_safetensors_header

    tiny_model.save_pretrained(tmp_path / "a", dtype=torch.float16)
    weights = tmp_path / "a" / "model.safetensors"
    data = weights.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + size])
    shuffled = json.dumps(dict(reversed(list(header.items()))), separators=(",", ":")).encode()
    weights.write_bytes(data[:8] + shuffled + b" " * (size - len(shuffled)) + data[8 + size:])
    assert weights.read_bytes() != data
    sort_safetensors_header(weights)
    assert weights.read_bytes() == data  # what save_pretrained wrote was already the sorted form
    assert all(torch.equal(v, tiny_model.state_dict()[k].half()) for k, v in load_file(weights).items()
               if v.is_floating_point())

    export = ("import sys, torch; from speechtok.models.sitok import SiTok;"
              "SiTok.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2], dtype=torch.float16)")
    for name in ("b", "c", "d"):  # separate processes: each has its own hash-map order
        subprocess.run([sys.executable, "-c", export, str(tmp_path / "a"), str(tmp_path / name)], check=True)
        assert (tmp_path / name / "model.safetensors").read_bytes() == data


def test_checkpoints_average_weight_by_weight_and_only_alike(tmp_path, tiny_model):
    """average_checkpoints: each float tensor the mean of the checkpoints' (in the first's dtype);
    another kind or architecture refused; scripts/bundle_checkpoint.py --average-with exports it."""
    import subprocess
    import sys
    from pathlib import Path

    from speechtok.checkpoint import average_checkpoints, load_checkpoint

    tiny_model.save_pretrained(tmp_path / "a")
    torch.manual_seed(1)
    SiTok.from_preset("sitok-tiny").save_pretrained(tmp_path / "b", dtype=torch.float16)
    a, b = (load_checkpoint(tmp_path / n, expected_kind="sitok") for n in "ab")
    averaged = average_checkpoints([a, b])
    weight = "encoder_in.weight"
    assert averaged.state[weight].dtype == torch.float32 and not torch.equal(a.state[weight], b.state[weight].float())
    torch.testing.assert_close(averaged.state[weight], (a.state[weight] + b.state[weight].float()) / 2)
    SiTok.from_preset("sitok-tiny", decoder_layers=3).save_pretrained(tmp_path / "deeper")
    with pytest.raises(CheckpointError, match="not the same architecture"):
        average_checkpoints([a, load_checkpoint(tmp_path / "deeper", expected_kind=None)])
    with pytest.raises(CheckpointError, match="cannot be averaged"):
        average_checkpoints([a, load_checkpoint("vocos-24k", expected_kind=None)])

    script = [sys.executable, str(Path(__file__).resolve().parents[1] / "scripts" / "bundle_checkpoint.py"),
              str(tmp_path / "a"), "mean", "--out-dir", str(tmp_path), "--average-with"]
    refused = subprocess.run([*script, str(tmp_path / "deeper")], capture_output=True, text=True)
    assert refused.returncode == 2 and "not the same architecture" in refused.stderr and not (tmp_path / "mean").exists()
    subprocess.run([*script, str(tmp_path / "b")], check=True, capture_output=True)
    exported = SiTok.from_pretrained(tmp_path / "mean")
    torch.testing.assert_close(exported.encoder_in.weight, averaged.state[weight].half().float())
    assert load_checkpoint(tmp_path / "mean", expected_kind="sitok").info["averaged_with"] == [str(tmp_path / "b")]


def test_bundled_checkpoint_loads_with_hash_check_and_tokenizes(speech):
    from speechtok.bundled import bundled_names

    assert bundled_names("sitok") == ["sitok-default"] and bundled_names("vocos") == ["vocos-24k"]
    model = SiTok.from_pretrained("sitok-default")
    assert model.vocoder_source == "vocos-24k" and model.vocoder is not None  # the pairing is recorded
    wav, rate = speech
    codes = model.encode(torch.from_numpy(wav)[None, None], rate)
    assert codes.shape == (1, 1, 50) and model.bitrate == 200.0
    assert codes.unique().numel() > 10  # a trained encoder does not collapse onto a few codes
    out = model.decode(codes, steps=4)  # no vocoder argument: the bundled neural vocoder
    assert out.shape == (1, 1, 50 * 1920) and torch.isfinite(out).all() and out.abs().max() > 1e-3


def test_bundled_checkpoints_stay_small():
    """The wheel carries four models (SiTok, HoliTok, vocoder, AR+DiT); it must stay well below PyPI's
    100 MB per file with the code and assets beside them (60 MB until the AR+DiT got its text aligner)."""
    from speechtok.bundled import BUNDLED_DIR

    total = sum(p.stat().st_size for p in BUNDLED_DIR.rglob("*") if p.is_file())
    assert total < 80e6, f"bundled checkpoints take {total / 1e6:.1f} MB"


def test_a_checkpoint_travels_as_its_difference_and_is_rebuilt_byte_for_byte(tiny_model, tmp_path):
    """scripts/checkpoint_delta.py: what a lent GPU sends back (the 64 MiB return path)."""
    import importlib.util
    from pathlib import Path

    from safetensors.torch import load_file

    script = Path(__file__).resolve().parents[1] / "scripts" / "checkpoint_delta.py"
    spec = importlib.util.spec_from_file_location("checkpoint_delta", script)
    delta = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(delta)

    tiny_model.save_pretrained(tmp_path / "base", dtype=torch.float16)
    with torch.no_grad():
        for p in tiny_model.decoder.parameters():
            p.add_(0.01)
    tiny_model.save_pretrained(tmp_path / "tuned", dtype=torch.float16, info={"note": "decoder stage"})
    delta.diff(tmp_path / "tuned", tmp_path / "base", tmp_path / "delta")
    changed = load_file(str(tmp_path / "delta" / "changed.safetensors"))
    assert changed and all(k.startswith("decoder.") for k in changed)  # the frozen rest stays home
    delta.apply(tmp_path / "delta", tmp_path / "base", tmp_path / "rebuilt")
    assert (tmp_path / "rebuilt" / "model.safetensors").read_bytes() == (tmp_path / "tuned" / "model.safetensors").read_bytes()
    torch.manual_seed(1)
    SiTok.from_preset("sitok-tiny").save_pretrained(tmp_path / "stranger", dtype=torch.float16)
    with pytest.raises(SystemExit, match="wrong base"):
        delta.apply(tmp_path / "delta", tmp_path / "stranger", tmp_path / "other")
    assert not (tmp_path / "other").exists()  # nothing half-right is left behind

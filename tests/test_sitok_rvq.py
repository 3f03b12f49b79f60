"""SiTok's multi-codebook variant (residual VQ, ``codebooks`` > 1): bitrate, codes [B, K, T'], decoding
from the first k codebooks, training, checkpoints, the CLI, tokenize and evaluation."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from speechtok.assets import SAMPLE_SPEECH
from speechtok.cli import main
from speechtok.errors import ConfigError
from speechtok.models.sitok import SiTok
from speechtok.quantization import EMAVectorQuantizer


#: One training step that moves no weight (lr 0; EMA codebooks still update): what an --init loaded.
ONE_STEP_AT_LR_0 = ("train:\n  steps: 1\n  lr: 0.0\n  warmup_steps: 1\n  batch_seconds: 6.0\n  max_seconds: 3.0\n"
                    "  log_every: 1\n  checkpoint_every: 1\n")


@pytest.fixture(scope="module")
def rvq_model() -> SiTok:
    torch.manual_seed(0)
    return SiTok.from_preset("sitok-tiny-rvq4").eval()


@pytest.fixture(scope="module")
def rvq_checkpoint(rvq_model, tmp_path_factory):
    return rvq_model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny-rvq4", info={"trained_on": "nothing"})


def _error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("tokenize")]
    assert len(err) == 1 and err[0].startswith("error: "), err  # one line, no traceback
    return err[0]


@pytest.mark.parametrize(("preset", "codebooks", "bits", "bps"), [
    ("sitok-tiny", 1, 16, 200.0), ("sitok-tiny-rvq4", 4, 56, 700.0), ("sitok-small-rvq2", 2, 28, 350.0),
    ("sitok-small-rvq4", 4, 56, 700.0), ("sitok-small-rvq8", 8, 112, 1400.0)])
def test_bitrate_counts_every_codebook(preset, codebooks, bits, bps):
    with torch.device("meta"):
        model = SiTok.from_preset(preset)
    assert (model.codebooks, model.bits_per_token, model.bitrate) == (codebooks, bits, bps)
    assert (model.config.bits_per_token, model.config.bitrate) == (bits, bps)
    assert model.codebook_size == (65536 if codebooks == 1 else 2**14)


def test_single_codebook_models_keep_their_quantizer_and_weight_names():
    """codebooks=1 is today's model: the same module and state keys, so existing checkpoints load unchanged."""
    model = SiTok.from_preset("sitok-tiny")
    assert type(model.quantizer) is EMAVectorQuantizer
    assert {k for k in model.state_dict() if k.startswith("quantizer.")} == {
        "quantizer.codebook", "quantizer.ema_count", "quantizer.ema_sum"}
    with pytest.raises(ConfigError, match="more than one needs quantizer 'vq'"):
        SiTok.from_preset("sitok-tiny", codebooks=2, quantizer="bsq")
    with pytest.raises(ConfigError, match="codebook_dropout"):
        SiTok.from_preset("sitok-tiny-rvq4", codebook_dropout=1.5)


def test_encode_gives_one_row_per_codebook_and_batches_like_single_items(rvq_model, speech):
    wav, rate = speech
    wav = wav[: rate * 2]
    a = torch.from_numpy(wav)[None, None]
    b = a[..., : len(wav) // 3] * 0.5
    alone_a, alone_b = rvq_model.encode(a, rate), rvq_model.encode(b, rate)
    assert alone_a.shape == (1, 4, 25) and alone_a.dtype == torch.long
    assert int(alone_a.min()) >= 0 and int(alone_a.max()) < 2**14
    batch = torch.zeros(2, 1, a.shape[-1])
    batch[0], batch[1, :, : b.shape[-1]] = a[0], b[0]
    codes = rvq_model.encode(batch, rate, lengths=torch.tensor([a.shape[-1], b.shape[-1]]))
    n_b = alone_b.shape[-1]
    assert torch.equal(codes[0], alone_a[0]) and torch.equal(codes[1, :, :n_b], alone_b[0])
    assert (codes[1, :, n_b:] == SiTok.PAD_CODE).all()  # every codebook padded
    wav_out = rvq_model.decode(codes, steps=1, vocoder="griffin-lim")
    assert wav_out[1, 0, n_b * rvq_model.samples_per_token:].abs().max() == 0


def test_decoding_from_the_first_k_codebooks(rvq_model, speech):
    wav, rate = speech
    codes = rvq_model.encode(torch.from_numpy(wav[:rate])[None, None], rate)
    mels = {k: rvq_model.decode_mel(codes[:, :k], steps=2) for k in (1, 2, 4)}
    assert all(m.shape == (1, 128, codes.shape[-1] * 4) and torch.isfinite(m).all() for m in mels.values())
    assert not torch.allclose(mels[1], mels[4]) and not torch.allclose(mels[2], mels[4])
    cond = rvq_model.cond_from_codes(codes[:, :2])
    levels = rvq_model.quantizer.levels
    expected = rvq_model.vq_out(levels[0].lookup(codes[:, 0]) + levels[1].lookup(codes[:, 1]))
    assert torch.equal(cond, expected)  # the first k codebooks' codes, summed
    assert rvq_model.decode(codes[:, :3], steps=1, vocoder="griffin-lim").shape == (1, 1, codes.shape[-1] * 1920)


@pytest.mark.parametrize(("codes", "fragment"), [
    (torch.zeros(1, 5, 3, dtype=torch.long), r"expected a LongTensor \[B, k, T'\] with k <= 4 codebooks, got \[1, 5, 3\]"),
    (torch.zeros(1, 0, 3, dtype=torch.long), "expected a LongTensor"),
    (torch.full((1, 2, 3), 2**14), r"values must be integers in \[0, 16384\)"),
    (torch.tensor([[[1, 2, -1], [1, 2, 3]]]), "padding must cover every codebook"),
])
def test_bad_codes_are_one_clear_error(rvq_model, codes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        rvq_model.decode_mel(codes, steps=1)


def test_train_command_resumes_exactly_and_its_checkpoints_round_trip(tmp_path, real_manifest):
    """``speechtok train --preset sitok-tiny-rvq4`` with quantiser dropout, token CFG and CTC: finite losses,
    per-codebook metrics, a resume that continues bit-identically (dropout draws, EMA codebooks and usage
    included), and a checkpoint that loads, saves and reloads bit-identically."""
    overrides = tmp_path / "o.yaml"
    overrides.write_text("model:\n  token_drop: 0.5\ntrain:\n  steps: 4\n  lr: 0.001\n  warmup_steps: 1\n"
                         "  batch_seconds: 6.0\n  max_seconds: 3.0\n  log_every: 1\n  checkpoint_every: 2\n")
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["train", "--preset", "sitok-tiny-rvq4", "--data", str(real_manifest), "--config", str(overrides),
                 "--out", str(a), "--no-progress"]) == 0
    assert main(["train", "--resume", str(a / "checkpoints" / "step_0000002"), "--out", str(b), "--no-progress"]) == 0
    records = {run: [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] for run in (a, b)}
    assert len(records[a]) == 4 and all(math.isfinite(r["loss"]) and r["ctc"] > 0 for r in records[a])
    levels = [f"perplexity_{k}" for k in range(4)] + [f"codebook_usage_{k}" for k in range(4)]
    assert set(levels) <= set(records[a][0])
    keys = ["loss", "flow", "vq", "ctc", "codebook_usage", *levels]
    assert [[r[k] for k in keys] for r in records[b]] == [[r[k] for k in keys] for r in records[a][2:]]
    final = [SiTok.from_pretrained(run / "checkpoints" / "step_0000004") for run in (a, b)]
    assert all(torch.equal(v, final[1].state_dict()[k]) for k, v in final[0].state_dict().items())
    loaded = final[0]
    assert loaded.codebooks == 4 and loaded.config.name == "sitok-tiny-rvq4"
    reloaded = SiTok.from_pretrained(loaded.save_pretrained(tmp_path / "again"))
    assert all(torch.equal(v, reloaded.state_dict()[k]) for k, v in loaded.state_dict().items())
    wav, rate = sf.read(SAMPLE_SPEECH, dtype="float32")
    clip = torch.from_numpy(wav[:rate])[None, None]
    assert torch.equal(loaded.encode(clip, rate), reloaded.encode(clip, rate))


def test_a_trained_single_codebook_model_is_requantised_to_four_codebooks(tmp_path, real_manifest, capsys):
    """``--preset sitok-tiny-rvq4 --init`` a 200 bps checkpoint: the residual quantiser starts fresh and
    every other weight loads (with lr 0 nothing but the EMA codebooks moves), so a 700 bps model need not
    be trained from scratch; a config that differs beyond the quantiser is still refused."""
    config = tmp_path / "c.yaml"
    config.write_text(ONE_STEP_AT_LR_0)
    common = ["train", "--data", str(real_manifest), "--config", str(config), "--no-progress"]
    assert main([*common, "--preset", "sitok-tiny", "--out", str(tmp_path / "vq")]) == 0
    init = tmp_path / "vq" / "checkpoints" / "step_0000001"
    assert main([*common, "--preset", "sitok-tiny-rvq4", "--init", str(init), "--out", str(tmp_path / "rvq")]) == 0
    before = SiTok.from_pretrained(init).state_dict()
    model = SiTok.from_pretrained(tmp_path / "rvq" / "checkpoints" / "step_0000001")
    after = model.state_dict()
    assert model.codebooks == 4 and model.bitrate == 700.0
    kept = [k for k in after if not k.startswith("quantizer.")]
    assert set(kept) == {k for k in before if not k.startswith("quantizer.")}
    assert all(torch.equal(after[k], before[k]) for k in kept)
    capsys.readouterr()
    assert main([*common, "--preset", "sitok-small-rvq4", "--init", str(init), "--out", str(tmp_path / "bad")]) == 2
    assert "differs from this run's in dim" in _error_line(capsys)


@pytest.mark.parametrize("change, part, fresh", [
    ("ctc_vocab: phoneme", "CTC output", ("ctc_out.",)),
    ("decoder_head_layers: 1", "decoder layout", ("decoder.", "decoder_body.")),
])
def test_init_replaces_one_part_and_loads_the_rest(change, part, fresh, tmp_path, real_manifest, capsys):
    """A phoneme CTC output over a character one, or a light-weight diffusion head over a decoder that
    iterates whole: only that part starts fresh; every other weight loads unchanged (lr 0)."""
    config = tmp_path / "c.yaml"
    config.write_text(ONE_STEP_AT_LR_0)
    common = ["train", "--data", str(real_manifest), "--no-progress", "--preset", "sitok-tiny"]
    assert main([*common, "--config", str(config), "--out", str(tmp_path / "a")]) == 0
    init = tmp_path / "a" / "checkpoints" / "step_0000001"
    changed = tmp_path / "b.yaml"
    changed.write_text(f"model:\n  {change}\n" + ONE_STEP_AT_LR_0)
    capsys.readouterr()
    assert main([*common, "--config", str(changed), "--init", str(init), "--out", str(tmp_path / "b")]) == 0
    assert f"a new {part} (sitok-tiny) starts fresh" in capsys.readouterr().out
    before = SiTok.from_pretrained(init).state_dict()
    model = SiTok.from_pretrained(tmp_path / "b" / "checkpoints" / "step_0000001")
    after = model.state_dict()
    key, value = change.split(": ")
    assert str(getattr(model.config, key)) == value
    assert not all(k in before and after[k].shape == before[k].shape and torch.equal(after[k], before[k])
                   for k in after if k.startswith(fresh))  # the part is new, not the old one's copy
    kept = [k for k in after if not k.startswith(("quantizer.", *fresh))]  # EMA codebooks move even at lr 0
    assert set(kept) == {k for k in before if not k.startswith(("quantizer.", *fresh))}
    assert all(torch.equal(after[k], before[k]) for k in kept)


def test_cli_encode_decode_info_with_four_codebooks(tmp_path, rvq_checkpoint, capsys):
    wav, rate = sf.read(SAMPLE_SPEECH, dtype="float32")
    clip = tmp_path / "clip.flac"
    sf.write(clip, wav[:rate], rate)  # 1 s
    tokens = tmp_path / "codes.npy"
    assert main(["encode", str(clip), "-o", str(tokens), "--checkpoint", str(rvq_checkpoint)]) == 0
    assert "13 tokens × 4 codebook(s), 12.5 Hz, 700 bps" in capsys.readouterr().out
    codes = np.load(tokens)
    assert codes.shape == (4, 13) and codes.dtype == np.int32
    for k in (4, 2):
        part = tmp_path / f"first{k}.npy"
        np.save(part, codes[:k])
        out = tmp_path / f"decoded{k}.wav"
        assert main(["decode", str(part), "-o", str(out), "--checkpoint", str(rvq_checkpoint), "--steps", "1",
                     "--vocoder", "griffin-lim"]) == 0
        assert sf.info(out).frames == 13 * 1920
    five = tmp_path / "five.npy"
    np.save(five, np.zeros((5, 50), dtype=np.int64))  # five codebooks for a four-codebook model
    assert main(["decode", str(five), "-o", str(tmp_path / "o.wav"), "--checkpoint", str(rvq_checkpoint)]) == 2
    line = _error_line(capsys)
    assert str(five) in line and "k <= 4 codebooks" in line and "[5, 50]" in line
    assert not (tmp_path / "o.wav").exists()
    assert main(["info", str(rvq_checkpoint)]) == 0
    assert "12.5 Hz × 4 × 14 bits = 700 bps" in capsys.readouterr().out
    assert main(["info", str(rvq_checkpoint), "--json"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert (described["codebooks"], described["bits_per_token"], described["bitrate"]) == (4, 56, 700.0)


@pytest.mark.parametrize("fmt", ["npy", "parquet"])
def test_tokenize_writes_every_codebook(tmp_path, rvq_checkpoint, fmt):
    if fmt == "parquet":
        pytest.importorskip("pyarrow.parquet")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    wav, rate = sf.read(SAMPLE_SPEECH, dtype="float32")
    for i, n in enumerate((rate * 2, rate * 2 // 3)):
        sf.write(corpus / f"u{i}.flac", wav[:n], rate)
    out = tmp_path / "tokens"
    assert main(["tokenize", str(corpus), "-o", str(out), "--checkpoint", str(rvq_checkpoint), "--format", fmt]) == 0
    alone = tmp_path / "alone.npy"
    assert main(["encode", str(corpus / "u1.flac"), "-o", str(alone), "--checkpoint", str(rvq_checkpoint)]) == 0
    if fmt == "npy":
        got = np.load(out / "u1.npy")
    else:
        import pyarrow.parquet as pq

        rows = {r["id"]: r for r in pq.read_table(sorted(out.glob("shard-*.parquet"))).to_pylist()}
        got = np.asarray(rows["u1"]["codes"], dtype=np.int32)
        assert rows["u1"]["num_tokens"] == got.shape[-1]
    assert got.shape == (4, 9) and np.array_equal(got, np.load(alone))  # batched with u0, equal to alone
    record = json.loads((out / "tokens.json").read_text())
    assert (record["codebooks"], record["bits_per_token"], record["token_rate"]) == (4, 56, 12.5)


def test_eval_system_counts_bits_of_every_codebook(rvq_checkpoint, speech):
    from speechtok.eval.systems import SiTokSystem

    system = SiTokSystem(str(rvq_checkpoint), vocoder="griffin-lim", steps=1)
    assert system.nominal_kbps == 0.7
    wav, rate = speech
    out = system.reconstruct(wav[:rate], rate)
    assert out.bits == 13 * 56  # 1 s → 13 frames × 4 codebooks × 14 bits
    assert out.codes.size == 13 * 4 and int(out.codes.max()) < 4 * 2**14
    assert system.describe()["codebooks"] == 4


def test_eval_decodes_from_the_first_k_codebooks_and_counts_only_their_bits(rvq_checkpoint, speech):
    """``CKPT@codebooks=2``: the same model sent at 350 bps, decoded from the codebooks it sent."""
    from speechtok.eval.errors import EvalError
    from speechtok.eval.systems import get_system

    system = get_system(f"{rvq_checkpoint}@codebooks=2@steps=1", vocoder="griffin-lim")
    assert system.nominal_kbps == 0.35 and system.name.endswith("@codebooks=2@steps=1")
    wav, rate = speech
    out = system.reconstruct(wav[:rate], rate)
    assert out.bits == 13 * 28 and out.codes.size == 13 * 2 and int(out.codes.max()) < 2 * 2**14
    full = get_system(f"{rvq_checkpoint}@steps=1", vocoder="griffin-lim")
    assert system.fingerprint() != full.fingerprint()  # cached results never mix the two
    with pytest.raises(EvalError, match="@codebooks=5, but the model has 4"):
        get_system(f"{rvq_checkpoint}@codebooks=5", vocoder="griffin-lim").nominal_kbps

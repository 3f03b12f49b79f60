"""The unified AR+DiT model: one object does TTS and ASR, over HoliTok latents or SiTok codes."""
from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from speechtok.audio import load_audio
from speechtok.cli import main as cli_main
from speechtok.data.manifest import read_manifest
from speechtok.errors import CheckpointError, ConfigError
from speechtok.models.ardit import ARDiT, AttentionPrior, Example
from speechtok.models.ardit_config import PRESETS, get_preset
from speechtok.models.holitok import HoliTok
from speechtok.models.sitok import SiTok
from speechtok.models.speech_lm import SpeechLM
from speechtok.text_lm import CharNgramConfig, CharNgramLM
from speechtok.train.ardit_recipe import ARDiTObjective, ARDiTRecipe, text_gain
from speechtok.train.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory) -> dict[str, Path]:
    """Untrained tiny HoliTok and SiTok checkpoints (their features of real speech are still real
    functions of the audio, which is all these tests need)."""
    root = tmp_path_factory.mktemp("tokenizers")
    torch.manual_seed(0)
    HoliTok.from_preset("holitok-tiny").save_pretrained(root / "holitok")
    SiTok.from_preset("sitok-tiny").save_pretrained(root / "sitok")
    return {"latents": root / "holitok", "tokens": root / "sitok"}


@pytest.fixture(scope="module")
def clips(real_manifest) -> list[tuple[str, torch.Tensor, int]]:
    """Three short transcribed real-speech clips: (transcript, waveform, rate)."""
    rows = [r for r in read_manifest(real_manifest) if r.transcript][:3]
    return [(r.transcript, torch.from_numpy(load_audio(r.path)[0]), load_audio(r.path)[1]) for r in rows]


def _speech_lm(kind: str, tokenizers: dict[str, Path], clips) -> tuple[SpeechLM, list[Example]]:
    torch.manual_seed(0)
    preset = "ardit-tiny" if kind == "latents" else "ardit-tiny-sitok"
    model = ARDiT(get_preset(preset))
    lm = SpeechLM(model, HoliTok.from_pretrained(tokenizers[kind]) if kind == "latents"
                  else SiTok.from_pretrained(tokenizers[kind]), vocoder=None if kind == "latents" else "griffin-lim")
    raw = [lm.features(wav, rate) for _, wav, rate in clips]
    if kind == "latents":
        model.fit_latent_stats([model.denormalize(f) for f in raw])
        raw = [lm.features(wav, rate) for _, wav, rate in clips]
    examples = [Example(task, torch.tensor(model.vocabulary.encode(text)), f)
                for (text, _, _), f in zip(clips, raw) for task in ("tts", "asr")]
    return lm, examples


def _with_aligner_units(model: ARDiT, examples: list[Example], clips) -> list[Example]:
    """``examples`` (made by :func:`_speech_lm` from ``clips``, each clip's TTS item before its ASR
    item) with the units of the model's own aligner vocabulary."""
    per_clip = len(examples) // len(clips)
    return [dataclasses.replace(e, units=torch.tensor(model.aligner_vocabulary.encode(clips[i // per_clip][0])))
            for i, e in enumerate(examples)]


def _planned_frames(model: ARDiT, text: str, after: int = 0) -> int:
    """The frames the aligner plans for ``text``'s units after the first ``after``, in whole patches."""
    units = torch.tensor(model.aligner_vocabulary.encode(text))
    with torch.no_grad():
        _, log_durations = model.aligner(model._aligner_embeds(units)[None], torch.ones(1, len(units), dtype=torch.bool))
    planned = int(model.aligner.frames_per_unit(log_durations[:, after:]).sum())
    return math.ceil(planned / model.config.patch_size) * model.config.patch_size


def _fit(model: ARDiT, items: list[Example], steps: int) -> None:
    """Overfit ``items`` for ``steps`` full-batch AdamW steps (lr 2e-3)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    for _ in range(steps):
        out = model(items)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()


@pytest.mark.parametrize("kind", ["latents", "tokens"])
def test_one_model_does_tts_and_asr_and_overfits_a_few_utterances(kind, tokenizers, clips):
    lm, examples = _speech_lm(kind, tokenizers, clips)
    model = lm.model
    assert examples[0].audio.shape[0] % model.config.patch_size == 0
    if kind == "latents":
        assert examples[0].audio.shape[1] == 128 and abs(float(examples[0].audio.mean())) < 1.0
    model.train()
    with torch.no_grad():
        first = {k: float(v) for k, v in model(examples).items()}
    _fit(model, examples, 120)
    with torch.no_grad():
        last = {k: float(v) for k, v in model(examples).items()}
    assert set(first) >= {"tts", "eos", "asr", "loss"}
    assert last["tts"] < 0.7 * first["tts"] and last["eos"] < 0.6 * first["eos"] and last["asr"] < 0.1
    model.eval()
    tts_items = [e for e in examples if e.task == "tts"]
    untrained = text_gain(_speech_lm(kind, tokenizers, clips)[0].model.eval(), tts_items)
    assert abs(untrained) < 0.01  # an untrained model cannot tell the right transcript from the wrong one
    assert text_gain(model, tts_items) > (0.5 if kind == "tokens" else untrained)  # one that learnt to read can
    for text, wav, rate in clips:
        assert lm.asr(wav.numpy(), rate) == model.vocabulary.decode(model.vocabulary.encode(text))
    generated = model.generate_speech(clips[0][0], max_seconds=10.0, generator=torch.Generator().manual_seed(0))
    limit = int(10.0 * model.config.patch_rate) * model.config.patch_size
    assert 0 < generated.shape[0] < limit and generated.shape[0] % model.config.patch_size == 0  # EOS stopped it
    audio = lm.synthesize(generated)
    assert audio.shape[:2] == (1, 1) and audio.shape[-1] > 0 and bool(torch.isfinite(audio).all())


def test_alignment_loss_is_learnable_and_absent_by_default(tokenizers, clips):
    """``align_weight`` adds a CTC head on the speech-generating states whose loss falls when trained
    and whose greedy reading of those states spells the transcript; at 0 (the default, and every
    existing checkpoint) there is no head and no term."""
    lm, examples = _speech_lm("latents", tokenizers, clips)
    assert not hasattr(lm.model, "align_head") and "align" not in lm.model(examples)
    with pytest.raises(ConfigError, match="align_upsample"):
        dataclasses.replace(lm.model.config, align_weight=1.0, align_upsample=0)
    torch.manual_seed(0)
    model = ARDiT(dataclasses.replace(lm.model.config, align_weight=1.0))
    model.load_state_dict(lm.model.state_dict(), strict=False)
    tts_items = [e for e in examples if e.task == "tts"]
    with torch.no_grad():
        first = float(model(tts_items)["align"])
    _fit(model, tts_items, 150)
    assert float(model(tts_items)["align"]) < 0.2 * first
    with torch.no_grad():  # the state before each patch, read by the CTC head, spells what is said
        for item in tts_items:
            text = model.text_embed(item.text)
            head = torch.cat([model._specials("<tts>"), text, model._specials("<speech>")])
            m = item.audio.shape[0] // model.config.patch_size
            hidden = model.lm(torch.cat([head, model.embed_audio(item.audio[None])[0]])[None])[0]
            ids = model.align_head(hidden[len(head) - 1: len(head) - 1 + m]).reshape(-1, model.end_of_text + 1).argmax(-1)
            collapsed = [u for u in torch.unique_consecutive(ids).tolist() if u != model.end_of_text]
            assert collapsed == item.text.tolist()


def test_attention_prior_pulls_heads_to_the_diagonal_and_anneals_away(tokenizers, clips, monkeypatch):
    """In a real forward the prior biases only its heads, only the rows of the states that predict a
    patch (TTS) or a text unit (ASR), towards the key at the same relative position (text for TTS,
    audio for ASR); the objective holds it, then fades it linearly to nothing."""
    lm, examples = _speech_lm("latents", tokenizers, clips)
    model = lm.model.eval()
    seen = {}
    build = model._prior_bias

    def spy(windows, length, prior):
        seen["windows"], seen["bias"] = windows, build(windows, length, prior)
        return seen["bias"]

    monkeypatch.setattr(model, "_prior_bias", spy)
    batch = examples[:2]  # one utterance as TTS, then as ASR
    with torch.no_grad():
        torch.manual_seed(3)
        plain = float(model(batch)["loss"])
        torch.manual_seed(3)
        assert float(model(batch, AttentionPrior(heads=2))["loss"]) != plain
    n, m = len(batch[0].text), batch[0].audio.shape[0] // model.config.patch_size
    assert seen["windows"] == [(n + 1, m, 1, n), (m + 2, n, 2, m)]  # <tts> t… <speech> a… | <asr> <speech> a… <text> t…
    bias = seen["bias"]
    assert bias.shape[:2] == (2, model.config.heads) and not bias[:, 2:].any()
    for item, (query, queries, key, keys) in enumerate(seen["windows"]):
        rows = bias[item, 0, query: query + queries]
        nearest = rows[:, key: key + keys].argmax(-1)
        assert nearest[0] == 0 and nearest[-1] == keys - 1 and bool((nearest.diff() >= 0).all())
        assert not bias[item, 0, :query].any() and not bias[item, 0, query + queries:].any()  # end states free
        assert bool((rows[:, key: key + keys].max(-1).values > rows[:, :key].max(-1).values).all())
        assert float(rows.min()) == pytest.approx(-0.5 * (0.5 / 0.1) ** 2)  # distances capped at 0.5
    with pytest.raises(ConfigError, match="heads"):
        model(batch, AttentionPrior(heads=model.config.heads + 1))
    with pytest.raises(ConfigError, match="width"):
        AttentionPrior(heads=1, width=0.0)
    objective = ARDiTObjective(prior_heads=2, prior_steps=10, prior_anneal_steps=10)
    assert [objective.prior(s).scale for s in (0, 10, 15)] == [1.0, 1.0, 0.5]
    assert objective.prior(20) is None and ARDiTObjective().prior(0) is None
    assert ARDiTObjective(prior_heads=1, prior_steps=5, prior_anneal_steps=0).prior(5) is None
    with pytest.raises(ConfigError, match="prior_width"):
        ARDiTObjective(prior_heads=1, prior_width=0.0)


def test_asr_masks_hide_spans_of_training_audio_only():
    """SpecAugment on ASR latents: whole frame spans and whole latent bands at zero, nothing else
    changed, no wider than configured; the recipe masks ASR items of a training batch only, drawing
    the same masks for the same step (exact resume). Off by default and refused on codes."""
    objective = ARDiTObjective(asr_time_masks=2, asr_time_mask_frames=5, asr_channel_masks=1, asr_channel_mask_dims=8)
    assert not ARDiTObjective().masks_asr and objective.masks_asr
    audio = torch.rand(40, 128) + 1.0
    hidden = 0
    for seed in range(20):
        masked = objective.mask_asr_audio(audio, torch.Generator().manual_seed(seed))
        zero = masked == 0
        rows, columns = zero.all(1), zero.all(0)
        assert torch.equal(zero, rows[:, None] | columns[None, :]) and torch.equal(masked[~zero], audio[~zero])
        assert int(rows.sum()) <= 10 and int(columns.sum()) <= 8
        hidden += int(zero.sum())
    assert hidden > 0
    torch.testing.assert_close(objective.mask_asr_audio(audio, torch.Generator().manual_seed(3)),
                               objective.mask_asr_audio(audio, torch.Generator().manual_seed(3)))
    with pytest.raises(ConfigError, match="asr_time_masks"):
        ARDiTObjective(asr_time_masks=-1)

    recipe = ARDiTRecipe(get_preset("ardit-tiny"), TrainConfig(), objective, progress=False)
    batch = [Example(task, torch.tensor([3, 4]), torch.rand(40, 128) + 1.0) for task in ("tts", "asr", "asr")]
    seen = []
    model = lambda items, prior, asr_teacher=None: seen.append(items) or {}  # noqa: E731
    recipe.losses({"model": model}, batch, "model", {}, 7)
    recipe.losses({"model": model}, batch, "model", {}, 7)
    recipe.losses({"model": model}, batch, "model", {}, 8)
    assert seen[0][0] is batch[0] and any(bool((e.audio == 0).any()) for e in seen[0][1:])
    assert all(torch.equal(a.audio, b.audio) for a, b in zip(seen[0], seen[1]))
    assert not all(torch.equal(a.audio, b.audio) for a, b in zip(seen[0], seen[2]))
    with pytest.raises(ConfigError, match="ASR masks and time warp act on latents"):
        ARDiTRecipe(get_preset("ardit-tiny-sitok"), TrainConfig(), objective, progress=False).build_model()


def test_asr_time_warp_resamples_training_latents_to_whole_patches():
    """Tempo perturbation: ASR latents stretched or squeezed within 1 ± asr_time_warp, to whole patches,
    the first and last frames kept (linear interpolation between real frames, nothing invented); factors
    on both sides drawn; the same step draws the same warp (exact resume); TTS items untouched; off by
    default, refused outside [0, 0.5) and on codes."""
    objective = ARDiTObjective(asr_time_warp=0.2)
    assert not ARDiTObjective().perturbs_asr and objective.perturbs_asr and not objective.masks_asr
    audio = torch.cumsum(torch.rand(100, 8), 0)  # rising in time: a warp keeps every channel monotone
    lengths = set()
    for seed in range(30):
        warped = objective.warp_asr_audio(audio, torch.Generator().manual_seed(seed), patch_size=4)
        assert warped.shape[1] == 8 and warped.shape[0] % 4 == 0 and 80 <= warped.shape[0] <= 128
        torch.testing.assert_close(warped[[0, -1]], audio[[0, -1]])
        assert bool((warped.diff(dim=0) >= 0).all())
        lengths.add(warped.shape[0])
    assert min(lengths) < 100 < max(lengths)
    assert objective.warp_asr_audio(audio[:3], torch.Generator().manual_seed(0), patch_size=4).shape == (4, 8)
    for bad in (-0.1, 0.5):
        with pytest.raises(ConfigError, match="asr_time_warp"):
            ARDiTObjective(asr_time_warp=bad)

    recipe = ARDiTRecipe(get_preset("ardit-tiny"), TrainConfig(), objective, progress=False)
    batch = [Example(task, torch.tensor([3, 4]), torch.rand(40, 128)) for task in ("tts", "asr", "asr")]
    seen = []
    model = lambda items, prior, asr_teacher=None: seen.append(items) or {}  # noqa: E731
    for step in (7, 7, 8):
        recipe.losses({"model": model}, batch, "model", {}, step)
    assert seen[0][0] is batch[0] and all(e.audio.shape[0] % recipe.model_config.patch_size == 0 for e in seen[0])
    assert all(torch.equal(a.audio, b.audio) for a, b in zip(seen[0], seen[1]))
    assert not all(a.audio.shape == b.audio.shape and torch.equal(a.audio, b.audio) for a, b in zip(seen[0], seen[2]))
    with pytest.raises(ConfigError, match="time warp act on latents"):
        ARDiTRecipe(get_preset("ardit-tiny-sitok"), TrainConfig(), objective, progress=False).build_model()


def test_asr_distillation_trains_the_encoder_towards_a_teacher_on_real_speech(tokenizers, real_manifest, tmp_path,
                                                                              capsys, one_thread):
    """``objective.asr_teacher``: a head on the ASR encoder's states learns a frozen teacher's frame
    features of real speech (its loss falls, validation reports it), checkpointed with the run but not
    in the model; the features are warped with the latents they line up with; refused without an ASR
    encoder, without ASR items, and for the evaluation's judges, in one line before any data is read."""
    objective = ARDiTObjective(asr_time_warp=0.3, asr_teacher="toy_teacher:toy_teacher")
    audio = torch.cumsum(torch.rand(40, 128), 0)
    teacher = audio[:, :12].clone()  # features that are a function of the frames they line up with
    recipe = ARDiTRecipe(get_preset("ardit-tiny"), TrainConfig(), objective, progress=False)
    seen = []
    model = lambda items, prior, asr_teacher=None: seen.append(items) or {}  # noqa: E731
    for step in range(6):
        recipe.losses({"model": model}, [Example("asr", torch.tensor([3, 4]), audio, teacher=teacher)], "model", {}, step)
    assert len({e.audio.shape[0] for [e] in seen}) > 1
    assert all(torch.allclose(e.teacher, e.audio[:, :12]) for [e] in seen)
    for bad, message in (({"tts_ratio": 1.0}, "tts_ratio 1"), ({"asr_teacher_weight": -1.0}, "asr_teacher_weight")):
        with pytest.raises(ConfigError, match=message):
            ARDiTObjective(asr_teacher="toy_teacher:toy_teacher", **bad)

    config = tmp_path / "distil.yaml"
    config.write_text(f"model:\n  tokenizer: {tokenizers['latents']}\n  asr_encoder_layers: 1\n  asr_encoder_dim: 32\n"
                      "  asr_encoder_mlp_dim: 64\nobjective:\n  tts_ratio: 0.0\n  asr_teacher: toy_teacher:toy_teacher\n"
                      "train:\n  steps: 40\n  lr: 0.01\n  warmup_steps: 1\n  batch_seconds: 8.0\n  log_every: 1\n"
                      "  checkpoint_every: 40\n  valid_every: 40\n")
    run = tmp_path / "run"
    assert cli_main(["train", "--preset", "ardit-tiny", "--data", str(real_manifest), "--valid", str(real_manifest),
                     "--config", str(config), "--out", str(run), "--no-progress"]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["asr_teacher"] for r in records if "asr_teacher" in r]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert len(losses) == 40 and 0 < last < 0.85 * first, (first, last)
    assert any("valid_asr_teacher" in r for r in records)
    checkpoint = run / "checkpoints" / "step_0000040"
    assert not any(k.startswith("asr_teacher") for k in load_file(str(checkpoint / "model.safetensors")))
    assert (checkpoint / "asr_teacher.safetensors").is_file()  # the head resumes with the run
    ARDiT.from_pretrained(checkpoint)  # the model loads without its teacher
    for change, message in ((("  asr_encoder_layers: 1\n", ""), "has none"),
                            (("toy_teacher:toy_teacher", "speechtok.eval.judges.asr:whisper_base"), "judge")):
        (tmp_path / "bad.yaml").write_text(config.read_text().replace(*change))
        assert cli_main(["train", "--preset", "ardit-tiny", "--data", str(real_manifest), "--config",
                         str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "bad" / "checkpoints").exists()


def test_asr_text_noise_replaces_training_inputs_only(tokenizers, clips):
    """ASR items of a training batch read noised teacher-forced units (about the configured share,
    drawn alike for the same step); targets, TTS items and validation are untouched, and the model
    reads ``inputs`` where given."""
    objective = ARDiTObjective(asr_text_noise=0.3)
    assert not ARDiTObjective().perturbs_asr and objective.perturbs_asr and not objective.masks_asr
    text = torch.randint(1, 30, (4000,))
    noised = objective.noisy_asr_inputs(text, 30, torch.Generator().manual_seed(0))
    assert 0.25 < float((noised != text).float().mean()) < 0.32 and int(noised.min()) >= 1 and int(noised.max()) < 30
    with pytest.raises(ConfigError, match="asr_text_noise"):
        ARDiTObjective(asr_text_noise=1.0)

    recipe = ARDiTRecipe(get_preset("ardit-tiny"), TrainConfig(), objective, progress=False)
    batch = [Example(task, torch.arange(1, 41), torch.rand(40, 128)) for task in ("tts", "asr", "asr")]
    seen = []
    model = lambda items, prior, asr_teacher=None: seen.append(items) or {}  # noqa: E731
    for step in (7, 7, 8):
        recipe.losses({"model": model}, batch, "model", {}, step)
    assert seen[0][0] is batch[0] and all(e.inputs is not None and not torch.equal(e.inputs, e.text)
                                          and torch.equal(e.text, batch[1].text) for e in seen[0][1:])
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(seen[0][1:], seen[1][1:]))
    assert not all(torch.equal(a.inputs, b.inputs) for a, b in zip(seen[0][1:], seen[2][1:]))

    lm, examples = _speech_lm("latents", tokenizers, clips)
    asr_items = [e for e in examples if e.task == "asr"]
    torch.manual_seed(0)
    plain = float(lm.model(asr_items)["asr"])
    torch.manual_seed(0)
    same = float(lm.model([dataclasses.replace(e, inputs=e.text.clone()) for e in asr_items])["asr"])
    torch.manual_seed(0)
    other = float(lm.model([dataclasses.replace(e, inputs=e.text.flip(0)) for e in asr_items])["asr"])
    assert same == plain != other


def test_speaker_condition_tells_the_dit_the_voice_before_it_is_heard(one_thread):
    """Two "voices" (latents shifted by ±1.5): without a speaker condition a short item's first patch
    could be either, with one the DiT is told which; the condition starts at zero (a model that adds
    it speaks as before) and generation takes it from the prompt or from a voice given alone. Refused
    on codes."""
    with pytest.raises(ConfigError, match="speaker_condition"):
        dataclasses.replace(get_preset("ardit-tiny-sitok"), speaker_condition=True)
    base = dataclasses.replace(get_preset("ardit-tiny"), history_patches=0, cond_drop=0.0, speaker_drop=0.0)
    generator = torch.Generator().manual_seed(0)
    items = [Example("tts", torch.tensor([3, 4, 5]), torch.randn(8, 128, generator=generator) * 0.3 + (1.5 if i % 2 else -1.5))
             for i in range(8)]
    losses = {}
    for condition in (False, True):
        torch.manual_seed(0)
        model = ARDiT(dataclasses.replace(base, speaker_condition=condition))
        if condition:
            torch.manual_seed(0)
            plain = ARDiT(base)
            x, t = torch.randn(2, 4, 128), torch.rand(2)
            state, history = torch.randn(2, 64), torch.zeros(2, 0, 128)
            torch.testing.assert_close(model.velocity(x, t, state, history, speaker=torch.randn(2, 256)),
                                       plain.velocity(x, t, state, history))
        _fit(model, items, 300)
        model.eval()
        torch.manual_seed(1)
        with torch.no_grad():
            losses[condition] = float(model(items)["tts"])
    assert losses[True] < 0.7 * losses[False]
    prompts = [items[0].audio[:4], items[1].audio[:4]]
    means = [float(model.generate_speech("cd", prompt=p, max_seconds=0.32, generator=torch.Generator().manual_seed(2)).mean())
             for p in prompts]
    assert means[0] < 0 < means[1]
    # a voice given only to the speaker condition (no prompt to continue) moves the speech alike
    voiced = [float(model.generate_speech("cd", speaker=p, max_seconds=0.32, generator=torch.Generator().manual_seed(2)).mean())
              for p in prompts]
    assert voiced[0] < 0 < voiced[1]
    with pytest.raises(ConfigError, match="no speaker condition"):
        plain.generate_speech("cd", speaker=prompts[0])


def test_voice_match_moves_the_speech_to_the_reference_mean(tokenizers, clips, monkeypatch):
    """`SpeechLM.generate(voice=…)`: on a model without a speaker condition the voice moves the speech's
    mean latent over time `voice_match` of the way to the voice's (the prompt's without a voice), the
    frame-to-frame changes untouched; 0 is the speech as generated. A model's default voice (a clip of
    speechtok/assets) is the voice when none and no prompt is given. A code model refuses a voice before
    it is encoded."""
    from speechtok.models.speech_lm import match_voice

    lm, examples = _speech_lm("latents", tokenizers, clips)
    assert not lm.model.config.speaker_condition
    _, wav, rate = clips[1]
    reference = lm.features(wav, rate)

    def speak(**options: object) -> torch.Tensor:
        return lm.generate("hello", max_seconds=0.48, generator=torch.Generator().manual_seed(3), **options)

    plain = speak()
    assert torch.equal(speak(voice=(wav, rate), voice_match=0.0), plain)
    matched = speak(voice=(wav, rate))
    assert torch.allclose(matched.mean(0), reference.mean(0), atol=1e-5)
    assert not torch.allclose(plain.mean(0), reference.mean(0), atol=0.05)  # so the match did something
    assert torch.allclose(matched - matched.mean(0), plain - plain.mean(0), atol=1e-5)  # the words as generated
    half = speak(voice=(wav, rate), voice_match=0.5)
    assert torch.allclose(half.mean(0), (plain.mean(0) + reference.mean(0)) / 2, atol=1e-5)
    assert torch.equal(match_voice(plain, reference, 0.5), half)
    # a prompt is matched too (its continuation, not the prompt itself, is what generate returns)
    prompt_text = clips[0][0]
    continued = lm.generate("hello", prompt=(clips[0][1], clips[0][2]), prompt_text=prompt_text, max_seconds=0.48,
                            generator=torch.Generator().manual_seed(3))
    assert torch.allclose(continued.mean(0), lm.features(clips[0][1], clips[0][2]).mean(0), atol=1e-5)
    with pytest.raises(ConfigError, match="voice_match"):
        speak(voice=(wav, rate), voice_match=-1.0)

    # a default voice (a bundle's: a clip of speechtok/assets) is the voice when given neither voice nor prompt
    from speechtok.assets import SAMPLE_SPEECH

    sample = load_audio(SAMPLE_SPEECH)
    lm.model.config = dataclasses.replace(lm.model.config, default_voice=SAMPLE_SPEECH.name)
    assert torch.equal(speak(), speak(voice=sample)) and not torch.equal(speak(), plain)
    assert torch.equal(speak(default_voice=False), plain)  # `speechtok tts --no-default-voice`
    with pytest.raises(ConfigError, match="voice is shorter than one patch"):
        speak(voice=(sample[0][:400], sample[1]))
    assert torch.equal(lm.generate("hello", prompt=(clips[0][1], clips[0][2]), prompt_text=prompt_text,
                                   max_seconds=0.48, generator=torch.Generator().manual_seed(3)), continued)
    lm.model.config, lm._default_voice = dataclasses.replace(lm.model.config, default_voice="gone.flac"), None
    with pytest.raises(CheckpointError, match="gone.flac"):
        speak()
    for bad, preset in (("../x.flac", "ardit-tiny"), ("", "ardit-tiny"), ("CREDITS.md", "ardit-tiny"),
                        (SAMPLE_SPEECH.name, "ardit-tiny-sitok")):
        with pytest.raises(ConfigError, match="default_voice"):
            dataclasses.replace(get_preset(preset), default_voice=bad)

    codes_lm, _ = _speech_lm("tokens", tokenizers, clips)

    def never_encoded(*args: object, **kwargs: object) -> None:
        raise AssertionError("the voice was encoded before the refusal")

    monkeypatch.setattr(codes_lm, "features", never_encoded)
    with pytest.raises(ConfigError, match="speaks SiTok codes"):
        codes_lm.generate("hello", voice=(wav, rate))


def test_default_voice_reaches_the_speaker_condition(tokenizers, clips):
    """A model with a speaker condition hears its default voice there, as it hears a --voice clip."""
    from speechtok.assets import SAMPLE_SPEECH

    lm, _ = _speech_lm("latents", tokenizers, clips)
    config = dataclasses.replace(lm.model.config, speaker_condition=True)
    torch.manual_seed(0)
    model = ARDiT(config)
    model.load_state_dict(lm.model.state_dict(), strict=False)
    with torch.no_grad():  # as if trained: the zero-initialised condition and adaptive norms no longer zero
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    lm = SpeechLM(model, lm.tokenizer)
    sample = load_audio(SAMPLE_SPEECH)

    def speak(**options: object) -> torch.Tensor:
        return lm.generate("hello", max_seconds=0.48, voice_match=0.0, generator=torch.Generator().manual_seed(3),
                           **options)

    voiced = speak(voice=sample)
    assert not torch.equal(voiced, speak())  # the condition alone moves the speech (no mean match here)
    model.config = dataclasses.replace(config, default_voice=SAMPLE_SPEECH.name)
    assert torch.equal(speak(), voiced)


def test_speaker_reference_is_another_utterance_of_the_speaker(tokenizers, real_manifest):
    """``objective.speaker_reference: speaker`` gives each TTS item (not ASR items) the posterior-mean
    latents of another utterance of its speaker (its own when it is the only one), drawn alike for the
    same epoch; ``item`` gives none (the item's own audio is used), and the model reads the reference."""
    from speechtok.train.ardit_recipe import SpeechTextData

    rows = read_manifest(real_manifest)
    model = ARDiT(dataclasses.replace(get_preset("ardit-tiny"), speaker_condition=True))
    tokenizer = HoliTok.from_pretrained(tokenizers["latents"])
    with pytest.raises(ConfigError, match="speaker_reference"):
        ARDiTObjective(speaker_reference="other")
    data = SpeechTextData(rows, tokenizer, model, model.vocabulary, ARDiTObjective(tts_ratio=1.0, speaker_reference="speaker"),
                          seed=0, progress=False)
    means = [model.normalize(features[:, :128]) for _, features, _ in data.items]
    speakers = data.item_speakers
    for index in range(len(data)):
        reference = data.get(index, 3).reference
        match = [j for j, m in enumerate(means) if m.shape == reference.shape and torch.equal(m, reference)]
        assert match and all(speakers[j] == speakers[index] for j in match)
        assert (index not in match) == (speakers.count(speakers[index]) > 1)
        assert torch.equal(reference, data.get(index, 3).reference)
    asr = SpeechTextData(rows[:2], tokenizer, model, model.vocabulary, ARDiTObjective(tts_ratio=0.0, speaker_reference="speaker"),
                         seed=0, progress=False)
    plain = SpeechTextData(rows[:2], tokenizer, model, model.vocabulary, ARDiTObjective(tts_ratio=1.0), seed=0, progress=False)
    assert asr.get(0, 0).reference is None and plain.get(0, 0).reference is None

    for parameter in model.parameters():  # the zero-initialised layers (speaker_in, the DiT's modulation)
        if parameter.dim() > 1 and not parameter.any():
            torch.nn.init.normal_(parameter, std=0.1)
    model.eval()
    item = data.get(0, 0)
    losses = []
    for reference in (item.reference, item.audio, None):
        torch.manual_seed(0)
        with torch.no_grad():
            losses.append(float(model([dataclasses.replace(item, reference=reference)])["tts"]))
    assert losses[0] != losses[1] == losses[2]


@pytest.mark.parametrize("heads", [{}, {"align_weight": 1.0}, {"asr_ctc_weight": 1.0}, {"aligner_layers": 1},
                                   {"regression_weight": 1.0, "asr_ctc_weight": 1.0, "align_weight": 1.0,
                                    "aligner_layers": 1, "speaker_condition": True},
                                   {"aligner_layers": 1, "aligner_vocab": "phoneme"},
                                   {"asr_encoder_layers": 1, "asr_encoder_dim": 32, "asr_encoder_mlp_dim": 64}])
@pytest.mark.parametrize("tasks", [("tts",), ("asr",), ("tts", "asr")])
def test_every_parameter_gets_a_gradient_whatever_the_batch_holds(tokenizers, clips, heads, tasks):
    """DDP needs a gradient for every parameter on every rank: a batch without one task still passes
    (with weight 0) through that task's heads, whichever optional heads the model has."""
    lm, examples = _speech_lm("latents", tokenizers, clips)
    model = ARDiT(dataclasses.replace(lm.model.config, **heads))
    if model.config.aligner_vocab:
        examples = _with_aligner_units(model, examples, clips)
    out = model([e for e in examples if e.task in tasks])
    out["loss"].backward()
    assert bool(torch.isfinite(out["loss"])) and [n for n, p in model.named_parameters() if p.grad is None] == []


def test_regression_and_asr_ctc_heads_learn_and_are_off_by_default(tokenizers, clips):
    """``regression_weight`` predicts each patch from the state that generates it; ``asr_ctc_weight``
    makes an ASR item's audio states spell its transcript. Both losses fall when trained; neither
    head exists by default (every existing checkpoint)."""
    lm, examples = _speech_lm("latents", tokenizers, clips)
    out = lm.model(examples)
    assert not {"regress", "asr_ctc"} & set(out) and not hasattr(lm.model, "regress_head")
    with pytest.raises(ConfigError, match="regression_weight"):
        dataclasses.replace(get_preset("ardit-tiny-sitok"), regression_weight=1.0)
    torch.manual_seed(0)
    model = ARDiT(dataclasses.replace(lm.model.config, regression_weight=1.0, asr_ctc_weight=1.0))
    model.load_state_dict(lm.model.state_dict(), strict=False)
    with torch.no_grad():
        first = model(examples)
    _fit(model, examples, 150)
    with torch.no_grad():
        last = model(examples)
    assert float(last["regress"]) < 0.5 * float(first["regress"]) and float(last["asr_ctc"]) < 0.2 * float(first["asr_ctc"])
    with torch.no_grad():  # the regression reads the state before each patch; the CTC the ASR audio states
        item = next(e for e in examples if e.task == "tts")
        head = torch.cat([model._specials("<tts>"), model.text_embed(item.text), model._specials("<speech>")])
        m = item.audio.shape[0] // model.config.patch_size
        hidden = model.lm(torch.cat([head, model.embed_audio(item.audio[None])[0]])[None])[0]
        predicted = model.regress_head(hidden[len(head) - 1: len(head) - 1 + m])
        expected = item.audio.reshape(m, -1)
        assert float(((predicted - expected) ** 2).mean()) < 0.5 * float(expected.pow(2).mean())


def test_asr_encoder_transcribes_by_ctc_starts_as_its_checkpoint_and_is_off_by_default(tokenizers, clips, one_thread,
                                                                                    tmp_path):
    """``asr_encoder_layers`` adds a bidirectional encoder whose CTC head learns to spell ASR items and
    whose states reach the LM through a layer at zero: added to a trained model, the LM's ASR is
    unchanged until it trains. ``asr_decoding: ctc`` transcribes with the CTC head, greedily or by beam
    search with a text LM (``set_decoding`` changes only decoding settings)."""
    lm, examples = _speech_lm("latents", tokenizers, clips)
    asr_items = [e for e in examples if e.task == "asr"]
    assert "asr_encoder" not in lm.model(examples) and not hasattr(lm.model, "asr_encoder")
    assert lm.model.parameter_counts()["asr_encoder"] == 0
    for bad in ({"asr_decoding": "ctc"}, {"asr_decoding": "beam", "asr_encoder_layers": 1}):
        with pytest.raises(ConfigError, match="asr_decoding"):
            dataclasses.replace(lm.model.config, **bad)
    with pytest.raises(ConfigError, match="asr_encoder_layers"):
        dataclasses.replace(get_preset("ardit-tiny-sitok"), asr_encoder_layers=1)
    config = dataclasses.replace(lm.model.config, asr_encoder_layers=2, asr_encoder_dim=64, asr_encoder_mlp_dim=128)
    torch.manual_seed(0)
    model = ARDiT(config)
    missing = model.load_state_dict(lm.model.state_dict(), strict=False).missing_keys
    assert {k.split(".")[0] for k in missing} == set(model.finetune_additions) == {"asr_in", "asr_encoder", "asr_ctc_head", "asr_lm_in"}
    assert model.parameter_counts()["asr_encoder"] > 0
    with torch.no_grad():
        assert torch.equal(model(asr_items)["asr"], lm.model(asr_items)["asr"])
        first = float(model(asr_items)["asr_encoder"])
    _fit(model, asr_items, 200)
    model.eval()
    with torch.no_grad():
        assert float(model(asr_items)["asr_encoder"]) < 0.1 * first
    model.config = dataclasses.replace(config, asr_decoding="ctc")
    for (text, _, _), item in zip(clips, asr_items):
        assert model.transcribe(item.audio) == model.vocabulary.decode(model.vocabulary.encode(text))
    CharNgramLM.fit([text for text, _, _ in clips], CharNgramConfig(order=6)).save(tmp_path / "lm")
    model.set_decoding(asr_beam_width=8, asr_text_lm=str(tmp_path / "lm"))
    assert model.text_lm is not None and model.text_lm.config.sentences == len(clips)
    for (text, _, _), item in zip(clips, asr_items):
        assert model.transcribe(item.audio) == model.vocabulary.decode(model.vocabulary.encode(text))
        assert model.read_ctc(model.asr_log_probs(item.audio)) == model.transcribe(item.audio)  # what sweeps reuse
    with pytest.raises(ConfigError, match="no ASR encoder"):
        lm.model.asr_log_probs(asr_items[0].audio)
    model.save_pretrained(tmp_path / "model")  # a saved model finds its text LM again
    assert ARDiT.from_pretrained(tmp_path / "model")._text_lm().config == model.text_lm.config
    bundle = [sys.executable, str(ROOT / "scripts" / "bundle_checkpoint.py"), str(tmp_path / "model"), "greedy",
              "--out-dir", str(tmp_path)]
    refused = subprocess.run([*bundle, "--sample-temperature", "0.5"], capture_output=True, text=True)
    assert refused.returncode == 2 and "does not apply to ardit" in refused.stderr and not (tmp_path / "greedy").exists()
    subprocess.run([*bundle, "--asr-beam-width", "1"], check=True, capture_output=True)  # greedy drops the LM there too
    assert ARDiT.from_pretrained(tmp_path / "greedy").config.asr_text_lm is None
    for bad, message in (({"dim": 8}, "not decoding settings"),
                         ({"asr_beam_width": 1, "asr_text_lm": str(tmp_path / "lm")}, "asr_text_lm needs"),
                         ({"asr_lm_weight": -1.0}, "asr_lm_weight"), ({"asr_text_lm": str(tmp_path)}, "config.json")):
        with pytest.raises((ConfigError, CheckpointError), match=message):
            model.set_decoding(**bad)
    assert model.config.asr_beam_width == 8 and model.config.asr_lm_weight == 1.0  # a refused change changes nothing
    model.set_decoding(asr_beam_width=1)  # greedy reading drops the prior
    assert model.config.asr_text_lm is None and model.text_lm is None
    with pytest.raises(ConfigError, match="needs asr_decoding 'ctc'"):
        dataclasses.replace(config, asr_beam_width=4)


def test_asr_encoder_batched_equals_solo(tokenizers, clips):
    """Right padding changes no real frame's ASR encoder state, nor the CTC loss of a training batch."""
    lm, examples = _speech_lm("latents", tokenizers, clips)
    torch.manual_seed(0)
    model = ARDiT(dataclasses.replace(lm.model.config, asr_encoder_layers=1, asr_encoder_dim=32,
                                      asr_encoder_mlp_dim=64)).eval()
    audio = [e.audio for e in examples if e.task == "asr"]
    padded = torch.nn.utils.rnn.pad_sequence(audio, batch_first=True)
    mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(a), dtype=torch.bool) for a in audio], batch_first=True)
    items = [e for e in examples if e.task == "asr"]
    with torch.no_grad():
        batched = model.encode_asr(padded, mask)
        for i, a in enumerate(audio):
            assert torch.allclose(batched[i, : len(a)], model.encode_asr(a[None])[0], atol=1e-5)
        solo = torch.stack([model([item])["asr_encoder"] for item in items])  # training pads the batch alike
        assert torch.allclose(model(items)["asr_encoder"], solo.mean(), atol=1e-4)


@pytest.mark.parametrize("config", ["ardit-gpu-continue.yaml", "ardit-asr-encoder.yaml", "ardit-asr-encoder-masks.yaml"])
def test_configs_that_continue_the_bundle_fit_its_weights(config):
    """A config run with ``--init ardit-default`` (the next lease's arm; the ASR encoder's stage) builds
    the bundle's architecture: every field but the decoding defaults and training noise is the bundle's,
    and every weight loads."""
    from speechtok.checkpoint import load_checkpoint, load_state
    from speechtok.train.cli import configure, load_overrides

    model_config, _, _ = configure(get_preset("ardit-small"), ARDiTObjective, load_overrides(ROOT / "configs" / config))
    bundle = ARDiT.from_pretrained("ardit-default")
    free = (*model_config.INFERENCE_FIELDS, *model_config.OBJECTIVE_FIELDS, "tokenizer_sha256")
    assert {f: v for f, v in dataclasses.asdict(model_config).items() if f not in free} == \
        {f: v for f, v in dataclasses.asdict(bundle.config).items() if f not in free}
    load_state(ARDiT(model_config), load_checkpoint("ardit-default", expected_kind="ardit"))  # every weight, strictly


def test_a_fine_tune_may_add_or_replace_an_asr_encoder_but_not_drop_a_trained_one(tmp_path, tokenizers, real_manifest,
                                                                                     capsys, one_thread):
    """A part the checkpoint has loads whole (a trained aligner grown by a layer is refused); an ASR
    encoder of another shape over a trained one starts fresh while every other weight loads (loaded
    over it, a different head count or depth would compute something else without a shape error), and
    a run without an encoder over a trained one is refused. Dropout in the encoder (training noise) may
    change: the trained encoder loads."""
    from speechtok.checkpoint import load_checkpoint, load_state

    ARDiT(dataclasses.replace(get_preset("ardit-tiny"), aligner_layers=1)).save_pretrained(tmp_path / "aligner")
    for layers in (1, 2):
        grown = ARDiT(dataclasses.replace(get_preset("ardit-tiny"), aligner_layers=layers, asr_encoder_layers=1))
        loaded = load_checkpoint(tmp_path / "aligner", expected_kind="ardit")
        if layers == 1:  # the encoder it adds may be absent
            load_state(grown, loaded, may_lack=grown.finetune_additions, may_drop=grown.finetune_removals)
        else:
            with pytest.raises(CheckpointError, match="missing.*aligner.encoder.blocks.1"):
                load_state(grown, loaded, may_lack=grown.finetune_additions, may_drop=grown.finetune_removals)
    base = get_preset("ardit-tiny")
    with_encoder = dataclasses.replace(base, asr_encoder_layers=2)
    with_encoder.check_init(base, "init")  # adding one, of any shape
    dataclasses.replace(with_encoder, asr_encoder_heads=8).check_init(with_encoder, "init")  # replacing one
    with pytest.raises(ConfigError, match="init: has a trained ASR encoder and this run's asr_encoder_layers is 0"):
        base.check_init(with_encoder, "init")

    encoder = "  asr_encoder_layers: {}\n  asr_encoder_dim: 32\n  asr_encoder_mlp_dim: 64\n"
    common = ["train", "--preset", "ardit-tiny", "--data", str(real_manifest), "--no-progress"]
    for name, layers, extra in (("first", 1, ""), ("second", 2, "objective:\n  tts_ratio: 0.0\n  train_only: [asr_encoder]\n")):
        (tmp_path / f"{name}.yaml").write_text(f"model:\n  tokenizer: {tokenizers['latents']}\n" + encoder.format(layers)
                                              + extra + "train:\n  steps: 1\n  batch_seconds: 6.0\n")
    assert cli_main([*common, "--config", str(tmp_path / "first.yaml"), "--out", str(tmp_path / "first")]) == 0
    source = ARDiT.from_pretrained(tmp_path / "first" / "checkpoints" / "step_0000001")
    capsys.readouterr()
    assert cli_main([*common, "--config", str(tmp_path / "second.yaml"), "--out", str(tmp_path / "second"),
                     "--init", str(tmp_path / "first" / "checkpoints" / "step_0000001")]) == 0
    assert "a new ASR encoder (ardit-tiny) starts fresh" in capsys.readouterr().out
    replaced = ARDiT.from_pretrained(tmp_path / "second" / "checkpoints" / "step_0000001")
    assert replaced.config.asr_encoder_layers == 2 and not torch.equal(replaced.asr_in.weight, source.asr_in.weight)
    for part in ("patch_in", "text_embed", "dit_out"):  # every other weight loaded (and frozen here)
        assert torch.equal(getattr(replaced, part).weight, getattr(source, part).weight)
    assert not bool(replaced.asr_lm_in.weight.any())  # the LM reads nothing of the new encoder yet
    # Dropout in the encoder is training noise, not a shape: switched on over a trained encoder, it loads it.
    (tmp_path / "dropout.yaml").write_text(
        f"model:\n  tokenizer: {tokenizers['latents']}\n" + encoder.format(2) + "  asr_encoder_dropout: 0.2\n"
        "objective:\n  tts_ratio: 0.0\n  train_only: [asr_ctc_head]\ntrain:\n  steps: 1\n  batch_seconds: 6.0\n")
    assert cli_main([*common, "--config", str(tmp_path / "dropout.yaml"), "--out", str(tmp_path / "dropout"),
                     "--init", str(tmp_path / "second" / "checkpoints" / "step_0000001")]) == 0
    assert "starts fresh" not in capsys.readouterr().out
    dropped = ARDiT.from_pretrained(tmp_path / "dropout" / "checkpoints" / "step_0000001")
    assert dropped.config.asr_encoder_dropout == 0.2 and dropped.asr_encoder.blocks[0].dropout.p == 0.2
    assert all(torch.equal(a, b) for a, b in zip(dropped.asr_encoder.state_dict().values(),
                                                 replaced.asr_encoder.state_dict().values()))
    with pytest.raises(ConfigError, match="asr_encoder_dropout must be in"):
        dataclasses.replace(with_encoder, asr_encoder_dropout=1.0)
    (tmp_path / "none.yaml").write_text(f"model:\n  tokenizer: {tokenizers['latents']}\ntrain:\n  steps: 1\n")
    assert cli_main([*common, "--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "none"),
                     "--init", str(tmp_path / "first" / "checkpoints" / "step_0000001")]) == 2
    err = capsys.readouterr().err.strip()
    assert "asr_encoder_layers is 0" in err and len(err.splitlines()) == 1


def test_train_only_freezes_every_other_part(tokenizers, clips):
    """``objective.train_only`` (a YAML list) makes the recipe's model train the parts it names and
    leave every other weight as it was; an unknown part is refused before any data is encoded."""
    lm, examples = _speech_lm("latents", tokenizers, clips)
    config = dataclasses.replace(lm.model.config, asr_encoder_layers=1, asr_encoder_dim=32, asr_encoder_mlp_dim=64,
                                 tokenizer=str(tokenizers["latents"]))
    with pytest.raises(ConfigError, match="train_only: asr_decoder is not a part"):
        ARDiTRecipe(config, TrainConfig(), ARDiTObjective(train_only=["asr_decoder"])).build_model()
    trained = ("asr_in", "asr_encoder", "asr_ctc_head", "asr_lm_in", "text_head")
    model = ARDiTRecipe(config, TrainConfig(), ARDiTObjective(train_only=list(trained))).build_model()  # as YAML gives it
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model(examples)["loss"].backward()
    optimizer.step()
    changed = {k.split(".")[0] for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == set(trained)


def test_speech_input_dropout_makes_the_model_read_the_text(tokenizers, clips, one_thread):
    """On latents a model overfitting three utterances predicts each patch mostly from the audio so
    far; with ``speech_input_dropout`` (and no DiT history) the wrong transcript costs it several times
    more (``text_gain``; both arms without condition dropout, so the LM state is always read). The
    dropout also acts in generation, reproducibly per generator."""
    lm, examples = _speech_lm("latents", tokenizers, clips)
    tts_items = [e for e in examples if e.task == "tts"]
    with pytest.raises(ConfigError, match="speech_input_dropout"):
        dataclasses.replace(lm.model.config, speech_input_dropout=1.0)
    gains = {}
    for dropout, history in ((0.0, 2), (0.5, 0)):
        torch.manual_seed(0)
        model = ARDiT(dataclasses.replace(lm.model.config, speech_input_dropout=dropout, history_patches=history,
                                          cond_drop=0.0))
        model.load_state_dict({k: v for k, v in lm.model.state_dict().items() if k.startswith("latent_")}, strict=False)
        _fit(model, tts_items, 600)
        gains[dropout] = text_gain(model.eval(), tts_items)
    assert gains[0.5] > 2 * gains[0.0] > 0
    runs = [model.generate_speech(clips[0][0], max_seconds=1.0, generator=torch.Generator().manual_seed(seed))
            for seed in (5, 5, 6)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0][: len(runs[2])], runs[2][: len(runs[0])])


def test_text_aligner_makes_the_model_read_the_text_and_plans_generation(tokenizers, clips, one_thread):
    """With ``aligner_layers`` the aligner's losses fall, and a model overfitting three utterances pays
    far more for a wrong transcript than the same model without it (its DiT and LM inputs are told
    which unit is spoken where). Generation lasts the predicted durations, whatever the end-of-speech
    head says; a prompt is aligned to its transcript's units, which must be given; KV-cached equals
    uncached. Off by default, and refused on codes."""
    lm, examples = _speech_lm("latents", tokenizers, clips)
    tts_items = [e for e in examples if e.task == "tts"]
    assert "aligner" not in lm.model(examples) and not hasattr(lm.model, "aligner")
    assert lm.model.parameter_counts()["aligner"] == 0
    with pytest.raises(ConfigError, match="aligner_layers"):
        dataclasses.replace(get_preset("ardit-tiny-sitok"), aligner_layers=1)
    gains, losses = {}, {}
    for layers in (0, 2):
        torch.manual_seed(0)
        model = ARDiT(dataclasses.replace(lm.model.config, aligner_layers=layers))
        model.load_state_dict({k: v for k, v in lm.model.state_dict().items() if k.startswith("latent_")}, strict=False)
        with torch.no_grad():
            first = model(tts_items)
        _fit(model, tts_items, 200)
        with torch.no_grad():
            losses[layers] = (first, model(tts_items))
        gains[layers] = text_gain(model.eval(), tts_items)
    first, last = losses[2]
    assert float(last["aligner"]) < 0.7 * float(first["aligner"]) and float(last["duration"]) < 0.5 * float(first["duration"])
    assert gains[2] > 3 * max(gains[0], 0.01)

    model.eos_head.weight.data.zero_()
    model.eos_head.bias.data.fill_(10.0)  # end-of-speech "certain" after every patch: the plan decides
    text = clips[0][0]
    speech = model.generate_speech(text, generator=torch.Generator().manual_seed(0))
    assert speech.shape[0] == _planned_frames(model, text)
    prompt = tts_items[0].audio[: 3 * model.config.patch_size]
    with pytest.raises(ConfigError, match="prompt_units, --prompt-text"):
        model.generate_speech(f"{text} again", prompt=prompt)
    ids = model.vocabulary.encode(text)
    runs = [model.generate_speech(f"{text} again", prompt=prompt, prompt_units=len(ids), cfg=2.0, use_cache=cached,
                                  generator=torch.Generator().manual_seed(3)) for cached in (True, False)]
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-4, atol=1e-4)
    assert runs[0].shape[0] == _planned_frames(model, f"{text} again", after=len(ids))
    assert "aligner" in model.finetune_additions and "aligner" not in lm.model.finetune_removals


def test_training_and_generation_condition_each_patch_alike(tokenizers, clips, monkeypatch):
    """Generation hands the LM and the DiT the same aligned text for patch k as training does: with
    the training alignment as the plan and the true patches fed back, every state that generates a
    patch equals the teacher-forced one. The unconditional branch of CFG ignores the text."""
    lm, examples = _speech_lm("latents", tokenizers, clips)
    torch.manual_seed(0)
    model = ARDiT(dataclasses.replace(lm.model.config, aligner_layers=1)).eval()
    for layer in (model.aligned_lm_in, model.aligned_dit_in):  # zero at initialisation: make them matter
        torch.nn.init.normal_(layer.weight, std=0.2)
    item, p = examples[0], model.config.patch_size
    seen = {}
    align, speech_loss = model._align, model._speech_loss

    def spy_align(texts, audio):
        seen["frames"] = align(texts, audio)[0][0]
        return align(texts, audio)

    def spy_speech_loss(states, audio, text=None, references=None):
        seen["states"], seen["text"] = states, text[0].reshape(-1, p, text[0].shape[-1])
        return speech_loss(states, audio, text, references)

    monkeypatch.setattr(model, "_align", spy_align)
    monkeypatch.setattr(model, "_speech_loss", spy_speech_loss)
    with torch.no_grad():
        model([item])
    given = []

    def teacher(state, frames, steps, cfg, generator, text=None, speaker=None):
        given.append((state.clone(), text.clone()))
        return item.audio[(len(given) - 1) * p: len(given) * p]

    monkeypatch.setattr(model, "_planned_frames", lambda ids, past, units: seen["frames"])
    monkeypatch.setattr(model, "_sample_patch", teacher)
    model.generate_speech(clips[0][0])
    assert len(given) == item.audio.shape[0] // p
    for k, (state, text) in enumerate(given):
        torch.testing.assert_close(state, seen["states"][k], rtol=1e-4, atol=1e-4)
        assert torch.equal(text, seen["text"][k])
    x, t, history = torch.randn(2, p, 128), torch.rand(2), torch.zeros(2, 2 * p, 128)
    drop = torch.zeros(2, dtype=torch.bool)
    with torch.no_grad():
        a, b = (model.velocity(x, t, seen["states"][:2], history, drop, torch.randn(2, p, model.config.dim))
                for _ in range(2))
        c = model.velocity(x, t, seen["states"][:2], history, ~drop, torch.randn(2, p, model.config.dim))
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_text_aligner_reads_its_own_vocabulary(tokenizers, clips, one_thread):
    """``aligner_vocab: phoneme`` gives the aligner its own embeddings of phonemes while the LM reads
    and ASR writes characters. TTS items must carry those units; the text gain pairs each audio with
    another item's units too (else a model that reads only phonemes would show none); generation plans
    the phonemes' durations, a prompt counted in phonemes."""
    lm, examples = _speech_lm("latents", tokenizers, clips)
    with pytest.raises(ConfigError, match="aligner_vocab 'phoneme' needs aligner_layers"):
        dataclasses.replace(lm.model.config, aligner_vocab="phoneme")
    torch.manual_seed(0)
    model = ARDiT(dataclasses.replace(lm.model.config, aligner_layers=2, aligner_vocab="phoneme"))
    model.load_state_dict({k: v for k, v in lm.model.state_dict().items() if k.startswith("latent_")}, strict=False)
    assert model.text_embed.weight.shape == lm.model.text_embed.weight.shape
    assert model.aligner_embed.num_embeddings == len(model.aligner_vocabulary) == 59  # 58 phonemes and the blank
    assert "aligner_embed" in model.finetune_additions
    tts_items = [e for e in examples if e.task == "tts"]
    with pytest.raises(ConfigError, match="Example.units"):
        model(tts_items)
    tts_items = _with_aligner_units(model, tts_items, clips[:len(tts_items)])
    with torch.no_grad():
        first = model(tts_items)
    _fit(model, tts_items, 200)
    with torch.no_grad():
        last = model(tts_items)
    assert float(last["aligner"]) < 0.7 * float(first["aligner"])
    assert text_gain(model.eval(), tts_items) > 0.03

    text = clips[0][0]
    speech = model.generate_speech(text, generator=torch.Generator().manual_seed(0))
    assert speech.shape[0] == _planned_frames(model, text)
    prompt = tts_items[0].audio[: 3 * model.config.patch_size]
    units = model.aligner_vocabulary.encode(text)
    speech = model.generate_speech(f"{text} again", prompt=prompt, prompt_units=len(units),
                                   generator=torch.Generator().manual_seed(0))
    assert speech.shape[0] == _planned_frames(model, f"{text} again", after=len(units))


@pytest.mark.parametrize("kind", ["latents", "tokens"])
def test_kv_cached_generation_equals_uncached(kind, tokenizers, clips):
    lm, examples = _speech_lm(kind, tokenizers, clips)
    model = lm.model.eval()
    prompt = examples[0].audio[: 2 * model.config.patch_size]
    runs = [model.generate_speech("hello there", prompt=prompt, max_seconds=1.5, cfg=2.0,
                                  generator=torch.Generator().manual_seed(3), use_cache=cached) for cached in (True, False)]
    assert runs[0].shape == runs[1].shape and runs[0].shape[0] > 0
    if kind == "latents":
        torch.testing.assert_close(runs[0], runs[1], rtol=1e-4, atol=1e-4)
    else:
        assert torch.equal(runs[0], runs[1])
    texts = [model.transcribe(examples[1].audio, max_units=20, use_cache=cached) for cached in (True, False)]
    assert texts[0] == texts[1]


def test_end_of_speech_threshold_decides_where_tts_stops(tokenizers, clips):
    lm, _ = _speech_lm("latents", tokenizers, clips)
    model = lm.model.eval()
    with torch.no_grad():  # the end-of-speech probability is exactly 0.5 after every patch
        model.eos_head.weight.zero_()
        model.eos_head.bias.zero_()

    def frames(threshold: float) -> int:
        return model.generate_speech("hello", max_seconds=1.0, eos_threshold=threshold,
                                     generator=torch.Generator().manual_seed(0)).shape[0]

    c = model.config
    assert frames(0.4) == c.patch_size  # stops after the first patch
    assert frames(0.6) == int(1.0 * c.patch_rate) * c.patch_size  # never stops: max_seconds ends it
    with pytest.raises(ConfigError, match="eos_threshold"):
        model.generate_speech("hello", eos_threshold=1.0)
    with pytest.raises(ConfigError, match="eos_threshold"):
        dataclasses.replace(c, eos_threshold=0.0)


def test_bad_inputs_are_refused_in_one_line(tokenizers, clips):
    lm, examples = _speech_lm("latents", tokenizers, clips)
    model = lm.model
    with pytest.raises(ConfigError, match="reads latents"):
        model.check_audio(torch.zeros(8, 64))
    with pytest.raises(ConfigError, match="NaN"):
        model.check_audio(torch.full((8, 128), float("nan")))
    with pytest.raises(ConfigError, match="nothing to say"):
        model.generate_speech("!!!")
    with pytest.raises(ConfigError, match="shorter than one patch"):
        model.generate_speech("hello", prompt=examples[0].audio[:2])
    with pytest.raises(ConfigError, match="steps and top_k"):
        model.generate_speech("hello", steps=0)
    with pytest.raises(ConfigError, match="whole, non-zero number"):
        model([Example("tts", torch.tensor([3]), torch.zeros(5, 128))])
    with pytest.raises(ConfigError, match="reads 65536 codes"):
        SpeechLM(ARDiT(get_preset("ardit-tiny-sitok")), lm.tokenizer)


def test_paper_preset_matches_the_published_sizes():
    with torch.device("meta"):
        counts = ARDiT(PRESETS["ardit-base"]).parameter_counts()
    assert abs(counts["audio_out"] / 345e6 - 1) < 0.05  # 18-layer DiT head
    assert abs(counts["audio_in"] / 102e6 - 1) < 0.05  # 8-layer patch encoder
    assert abs(counts["lm_body"] / 358e6 - 1) < 0.10  # Qwen2.5-0.5B without its 136M embedding table
    tiny = ARDiT(get_preset("ardit-tiny")).parameter_counts()["total"]
    assert tiny < 1e6


def test_train_command_checkpoint_and_tts_asr_commands(tokenizers, real_manifest, tmp_path, capsys, monkeypatch):
    config = tmp_path / "ardit.yaml"
    config.write_text(f"model:\n  tokenizer: {tokenizers['latents']}\nobjective:\n  tts_ratio: 0.5\n"
                      "train:\n  steps: 3\n  batch_seconds: 6.0\n  log_every: 1\n  checkpoint_every: 3\n")
    run = tmp_path / "run"
    assert cli_main(["train", "--preset", "ardit-tiny", "--data", str(real_manifest), "--valid", str(real_manifest),
                     "--config", str(config), "--out", str(run), "--no-progress"]) == 0
    assert "tokenizer features" not in capsys.readouterr().err  # --no-progress silences the encoding bar too
    checkpoint = run / "checkpoints" / "step_0000003"
    model = ARDiT.from_pretrained(checkpoint)
    assert model.config.tokenizer_sha256 and float(model.latent_std.min()) > 0
    from speechtok.train.summary import training_summary
    final = training_summary(checkpoint, "ardit")["final_train_metrics"]  # what `speechtok info` shows
    assert "loss" in final and {"tts", "asr"} & set(final)  # the last logged step's tasks
    assert float(model.latent_std.max()) != 1.0  # statistics fitted on the training set
    out = tmp_path / "tts.wav"
    assert cli_main(["tts", "one two", "-o", str(out), "--model", str(checkpoint), "--max-seconds", "0.5"]) == 0
    wav, rate = load_audio(out)
    assert rate == 48000 and 0 < len(wav) <= 0.5 * 48000
    clip = read_manifest(real_manifest)[0].path
    assert cli_main(["asr", str(clip), "--model", str(checkpoint)]) == 0
    assert cli_main(["tts", "hi", "-o", str(tmp_path / "x.wav"), "--model", str(checkpoint),
                     "--tokenizer", str(tokenizers["tokens"])]) == 2
    assert "error:" in capsys.readouterr().err
    assert cli_main(["tts", "hi", "-o", str(tmp_path / "y.wav"), "--model", str(checkpoint),
                     "--eos-threshold", "1.5"]) == 2
    assert "--eos-threshold" in capsys.readouterr().err and not (tmp_path / "y.wav").exists()
    assert cli_main(["tts", "hi", "-o", str(tmp_path / "y.wav"), "--model", str(checkpoint),
                     "--voice", str(clip), "--voice-match", "-1"]) == 2
    assert "--voice-match" in capsys.readouterr().err and not (tmp_path / "y.wav").exists()
    # a model without a speaker condition takes a voice through the mean latent (--voice-match)
    assert cli_main(["tts", "hi", "-o", str(tmp_path / "matched.wav"), "--model", str(checkpoint),
                     "--voice", str(clip), "--max-seconds", "0.5"]) == 0
    assert 0 < len(load_audio(tmp_path / "matched.wav")[0]) <= 0.5 * 48000
    assert cli_main(["tts", "hi", "-o", str(tmp_path / "y.wav"), "--model", str(checkpoint),
                     "--voice", str(tmp_path / "missing.wav")]) == 2
    assert "missing.wav" in capsys.readouterr().err and not (tmp_path / "y.wav").exists()
    with pytest.raises(CheckpointError, match="not the tokenizer"):
        torch.manual_seed(1)
        HoliTok.from_preset("holitok-tiny").save_pretrained(tmp_path / "other")
        SpeechLM.from_pretrained(checkpoint, tokenizer=tmp_path / "other")


    # fine-tuning a bundle (`--init`), as a lent GPU continues ardit-default: the bundle's own decoding
    # defaults (its end-of-speech threshold) do not block it, and it keeps the bundle's latent statistics
    # (its whole latent space) rather than refitting them on the new data
    bundle = ARDiT(dataclasses.replace(model.config, eos_threshold=0.3))
    bundle.load_state_dict(model.state_dict())
    bundle.save_pretrained(tmp_path / "bundle", dtype=torch.float16)
    header, *rows = Path(real_manifest).read_text().splitlines()
    subset = tmp_path / "subset.tsv"  # other data: statistics fitted on it would differ
    kept = [f"{Path(real_manifest).parent / r.split(chr(9), 1)[0]}\t{r.split(chr(9), 1)[1]}" for r in rows[:2]]
    subset.write_text("\n".join([header, *kept]) + "\n")
    assert cli_main(["train", "--preset", "ardit-tiny", "--data", str(subset), "--config", str(config),
                     "--init", str(tmp_path / "bundle"), "--out", str(tmp_path / "tuned"), "--no-progress"]) == 0
    tuned = ARDiT.from_pretrained(tmp_path / "tuned" / "checkpoints" / "step_0000003")
    assert tuned.config.eos_threshold == 0.5  # the run's own decoding default, set again when bundled
    stored = ARDiT.from_pretrained(tmp_path / "bundle")  # its fp16 statistics
    assert torch.equal(tuned.latent_std, stored.latent_std.float())
    assert torch.equal(tuned.latent_mean, stored.latent_mean.float())
    # a fine-tune may switch on the heads the bundle lacks (regression, ASR CTC) and train under the prior
    heads = tmp_path / "heads.yaml"
    heads.write_text(config.read_text().replace("model:\n", "model:\n  regression_weight: 1.0\n  asr_ctc_weight: 0.5\n")
                     .replace("objective:\n", "objective:\n  prior_heads: 2\n  prior_steps: 1\n  prior_anneal_steps: 1\n"))
    assert cli_main(["train", "--preset", "ardit-tiny", "--data", str(subset), "--config", str(heads),
                     "--init", str(tmp_path / "bundle"), "--out", str(tmp_path / "heads"), "--no-progress"]) == 0
    grown = ARDiT.from_pretrained(tmp_path / "heads" / "checkpoints" / "step_0000003")
    assert grown.config.regression_weight == 1.0 and hasattr(grown, "regress_head") and hasattr(grown, "align_head")
    # and switch them off again: the training-only heads are left behind
    assert cli_main(["train", "--preset", "ardit-tiny", "--data", str(subset), "--config", str(config),
                     "--init", str(tmp_path / "heads" / "checkpoints" / "step_0000003"), "--out", str(tmp_path / "plain"),
                     "--no-progress"]) == 0
    assert not hasattr(ARDiT.from_pretrained(tmp_path / "plain" / "checkpoints" / "step_0000003"), "regress_head")
    # a text aligner and a speaker condition over the bundle, then an aligner that reads phonemes over
    # that: the new aligner starts fresh (the speaker condition, part of how the model speaks, stays)
    for name, fields in (("chars", "  aligner_layers: 1\n  speaker_condition: true\n"),
                         ("phonemes", "  aligner_layers: 1\n  aligner_vocab: phoneme\n  speaker_condition: true\n")):
        (tmp_path / f"{name}.yaml").write_text(config.read_text().replace("model:\n", "model:\n" + fields))
    assert cli_main(["train", "--preset", "ardit-tiny", "--data", str(subset), "--config", str(tmp_path / "chars.yaml"),
                     "--init", str(tmp_path / "bundle"), "--out", str(tmp_path / "chars"), "--no-progress"]) == 0
    capsys.readouterr()
    assert cli_main(["train", "--preset", "ardit-tiny", "--data", str(subset), "--config", str(tmp_path / "phonemes.yaml"),
                     "--init", str(tmp_path / "chars" / "checkpoints" / "step_0000003"), "--out", str(tmp_path / "ph"),
                     "--no-progress"]) == 0
    assert "a new text aligner (ardit-tiny) starts fresh" in capsys.readouterr().out
    phonemes = ARDiT.from_pretrained(tmp_path / "ph" / "checkpoints" / "step_0000003")
    assert hasattr(phonemes, "aligner_embed") and hasattr(phonemes, "speaker_in")
    # its voice can be given without a transcript (--voice): heard through the speaker condition only
    voiced = tmp_path / "voiced.wav"
    assert cli_main(["tts", "one two", "-o", str(voiced), "--model", str(tmp_path / "ph" / "checkpoints" / "step_0000003"),
                     "--voice", str(read_manifest(real_manifest)[0].path), "--max-seconds", "0.5"]) == 0
    assert 0 < len(load_audio(voiced)[0]) <= 0.5 * 48000


def test_bundled_default_speaks_and_listens_without_model(tmp_path, capsys, monkeypatch):
    """`speechtok tts` / `asr` with no --model use the bundled ardit-default on the bundled
    holitok-default (weights hash checked); the output is 48 kHz audio, stopped by --max-seconds at the
    latest; without a bundled model the error is one line."""
    from speechtok.bundled import bundled_names
    from speechtok.models import speech_lm_cli

    assert bundled_names("ardit") == ["ardit-default"]
    out = tmp_path / "default.wav"
    assert cli_main(["tts", "one two three", "-o", str(out), "--max-seconds", "2"]) == 0
    wav, rate = load_audio(out)
    assert rate == 48000 and 0 < len(wav) <= 2 * 48000 + 1920 * 4
    assert cli_main(["asr", str(ROOT / "speechtok" / "assets" / "librispeech_84-121123-0001.flac")]) == 0
    assert capsys.readouterr().out.strip()
    assert cli_main(["info", "ardit-default"]) == 0  # its decoding defaults, its default voice among them
    printed = capsys.readouterr().out
    assert "CFG 5, stops where its text aligner plans; default voice librispeech_2952-407-0000.flac" in printed
    assert "CTC over a 6-layer bidirectional ASR encoder, beam 16 with text LM charlm-ljspeech" in printed
    sample = str(ROOT / "speechtok" / "assets" / "librispeech_84-121123-0001.flac")
    for args, message in ((["--beam", "0"], "asr_beam_width must be >= 1"),
                          (["--text-lm", "holitok-default"], "not a character n-gram checkpoint"),
                          (["--beam", "1", "--text-lm", "charlm-ljspeech"], "asr_text_lm needs"),
                          (["--lm-weight", "nan"], "asr_lm_weight must be")):
        assert cli_main(["asr", sample, *args]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert cli_main(["asr", sample, "--beam", "1"]) == 0  # greedy: the text LM is dropped
    assert capsys.readouterr().out.strip()
    monkeypatch.setattr(speech_lm_cli, "DEFAULT_MODEL", "ardit-missing")
    assert cli_main(["tts", "hi", "-o", str(tmp_path / "y.wav")]) == 2
    err = capsys.readouterr().err.strip()
    assert "pass --model" in err and len(err.splitlines()) == 1


def test_help_lists_the_commands():
    from speechtok.cli import build_parser

    text = build_parser().format_help()
    assert "tts" in text and "asr" in text and "ardit-small" in subprocess.run(
        [sys.executable, "-m", "speechtok.cli", "train", "--help"], capture_output=True, text=True, cwd=ROOT).stdout


def test_probe_script_reports_where_tts_takes_its_information(tokenizers, clips, real_manifest, tmp_path):
    """`scripts/ardit_probe.py` prints its tables for a latent model (with the regression's text gain
    when it has that head) and refuses a code model in one line, exit 2."""
    lm, _ = _speech_lm("latents", tokenizers, clips)
    model = ARDiT(dataclasses.replace(lm.model.config, tokenizer=str(tokenizers["latents"]), regression_weight=1.0))
    model.load_state_dict(lm.model.state_dict(), strict=False)
    model.save_pretrained(tmp_path / "latents")
    ARDiT(dataclasses.replace(get_preset("ardit-tiny-sitok"), tokenizer=str(tokenizers["tokens"]))).save_pretrained(
        tmp_path / "codes")
    script = ROOT / "scripts" / "ardit_probe.py"
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "latents"), "--data", str(real_manifest),
                           "--limit", "3"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    cells = [[c.strip() for c in line.strip("| ").split("|")] for line in done.stdout.splitlines() if line.startswith("| ")]
    values = {name: value for name, value in cells if name not in ("probe", "tokenizer latents")}
    for row in ("flow loss, null LM state", "flow loss, history frames zeroed", "text gain (flow) under the prior",
                "text gain (regression MSE)", "components for 90 % of the variance"):
        assert math.isfinite(float(values[row]))
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "codes"), "--data", str(real_manifest)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "latent" in done.stderr


def test_voice_split_holds_out_sentences_with_their_augmented_copies(tmp_path):
    """`scripts/voice_split.py`: the held-out rows come from the named source, none of their sentences is
    trained on (not even an augmented copy), other sources and untranscribed rows are left out, the
    draw is fixed by the seed, and it refuses to overwrite a split or to hold out more than there is."""
    corpus = tmp_path / "corpus"
    lines = ["path\tseconds\tspeaker\ttranscript"]
    for i in range(12):
        lines.append(f"audio/hibari/000/h-{i}.flac\t{2 + i % 5}.0\th\tSentence number {i}.")
        lines.append(f"audio/hibari_aug/000/a-{i}.flac\t3.0\tx{i}\tsentence  number {i}.")
    lines += ["audio/piper/000/p-0.flac\t3.0\tp\tSentence number 0.", "audio/hibari/000/u.flac\t3.0\th\t"]
    corpus.mkdir()
    (corpus / "manifest.tsv").write_text("\n".join(lines) + "\n")
    script = [sys.executable, str(ROOT / "scripts" / "voice_split.py"), str(corpus / "manifest.tsv"), "--valid", "3"]
    splits = []
    for out in ("a", "b"):
        assert subprocess.run([*script, "--out-dir", str(tmp_path / out)], capture_output=True, timeout=60).returncode == 0
        splits.append([read_manifest(tmp_path / out / f"hibari-{s}.tsv") for s in ("train", "valid")])
    (train, valid), (_, again) = splits
    assert [r.path for r in valid] == [r.path for r in again] and len(valid) == 3
    assert all(r.path.parent.parent.name == "hibari" for r in valid)
    held_out = {r.transcript.lower() for r in valid}
    assert len(train) == 24 - 6 and not {" ".join(r.transcript.lower().split()) for r in train} & held_out
    assert all(r.path.parent.parent.name in ("hibari", "hibari_aug") and r.transcript for r in train)
    refused = subprocess.run([*script, "--out-dir", str(tmp_path / "a")], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "already there" in refused.stderr
    too_many = subprocess.run([*script[:-1], "20", "--out-dir", str(tmp_path / "c")], capture_output=True, text=True, timeout=60)
    assert too_many.returncode == 2 and "cannot hold out 20" in too_many.stderr and not (tmp_path / "c").exists()

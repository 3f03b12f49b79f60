"""Where an AR+DiT model's TTS takes its information from, on a transcribed manifest.

    python scripts/ardit_probe.py MODEL [--data data/splits/dev.tsv] [--prior-heads 2] [--limit N]

Every transcribed utterance is a TTS item (and an ASR item for the last rows). Printed as markdown:

* the flow loss as trained; with the LM state replaced by the learned null state (what the LM adds);
  with the DiT's history frames zeroed, as the first patch of an utterance sees them (what the last
  patches add);
* the text gain (`speechtok.train.ardit_recipe.text_gain`: the loss with every utterance paired with
  the next one's transcript minus with its own), also under the diagonal attention prior, and of the
  next-patch regression when the model has that head;
* ASR next-unit accuracy without and under the prior, and with every transcript paired with the next
  utterance's audio (what the audio adds: a model that only predicts text from text scores the same);
* the tokenizer latents' own statistics (posterior means, before the model's normalisation):
  principal components holding 90 / 97.5 % of the variance, median per-dimension correlation 1 frame
  and 1 patch apart, and the posterior noise variance over the variance of the means (median dimension).
All losses use fixed seeds, so two models probed on the same data see the same flow times and noise;
each is a mean over batches of 8 utterances weighted by utterance, not by patch.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from speechtok.data.manifest import read_manifest
from speechtok.errors import SpeechtokError
from speechtok.models.ardit import ARDiT, AttentionPrior, Example
from speechtok.models.speech_lm import load_tokenizer
from speechtok.train.ardit_recipe import ARDiTObjective, SpeechTextData, text_gain

ROOT = Path(__file__).resolve().parents[1]


def mean_loss(model: ARDiT, items: list[Example], key: str, prior: AttentionPrior | None = None) -> float:
    """``key``'s loss averaged over items (batches of 8, the same seed for every call)."""
    total = 0.0
    for start in range(0, len(items), 8):
        torch.manual_seed(start)
        with torch.no_grad():
            total += float(model(items[start:start + 8], prior)[key]) * len(items[start:start + 8])
    return total / len(items)


def latent_statistics(means: list[torch.Tensor], patch: int) -> dict[str, float]:
    """Principal components for 90 / 97.5 % of the variance and per-dimension lag correlations."""
    frames = torch.cat(means).double()
    centred = frames - frames.mean(0)
    share = torch.linalg.svdvals(centred) ** 2
    cumulative = (share / share.sum()).cumsum(0)

    def lag_correlation(lag: int) -> float:
        a = torch.cat([m[:-lag] for m in means if len(m) > lag]).double()
        b = torch.cat([m[lag:] for m in means if len(m) > lag]).double()
        a, b = a - a.mean(0), b - b.mean(0)
        return float(((a * b).mean(0) / (a.std(0) * b.std(0))).median())

    return {"components for 90 % of the variance": int((cumulative < 0.9).sum()) + 1,
            "components for 97.5 %": int((cumulative < 0.975).sum()) + 1,
            "median correlation 1 frame apart": lag_correlation(1),
            f"median correlation 1 patch ({patch} frames) apart": lag_correlation(patch)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="an AR+DiT checkpoint (latents) or a bundled name")
    parser.add_argument("--data", default="data/splits/dev.tsv", help="a manifest (default: the dev split)")
    parser.add_argument("--prior-heads", type=int, default=2)
    parser.add_argument("--prior-width", type=float, default=0.1)
    parser.add_argument("--limit", type=int, default=None, help="the first N transcribed rows (before the 12 s limit)")
    args = parser.parse_args()
    try:
        model = ARDiT.from_pretrained(args.model).eval()
        if model.config.audio != "latents":
            raise SpeechtokError(f"{args.model}: the probe reads latent models (audio 'latents')")
        prior = AttentionPrior(args.prior_heads, args.prior_width)
        if prior.heads > model.config.heads:
            raise SpeechtokError(f"--prior-heads {prior.heads}: {args.model} has {model.config.heads} heads")
        manifest = Path(args.data) if Path(args.data).exists() else ROOT / args.data
        rows = [r for r in read_manifest(manifest) if r.transcript][: args.limit]
        data = SpeechTextData(rows, load_tokenizer(model.config.tokenizer), model, model.vocabulary,
                              ARDiTObjective(), seed=0)
        if len(data) < 2:
            raise SpeechtokError(f"{args.data}: the probe needs at least two transcribed utterances")
    except SpeechtokError as error:
        parser.exit(2, f"error: {error}\n")
    audio = [data.get(i, 0).audio for i in range(len(data))]
    tts = [Example("tts", data.items[i][0], a, data.item_units[i]) for i, a in enumerate(audio)]
    asr = [Example("asr", data.items[i][0], a) for i, a in enumerate(audio)]
    rows_out = {"flow loss": mean_loss(model, tts, "tts")}
    config = model.config
    model.config = dataclasses.replace(config, cond_drop=1.0)  # in training mode every state is dropped
    rows_out["flow loss, null LM state"] = mean_loss(model.train(), tts, "tts")
    model.config = config
    model.eval()
    history = model._history

    def zero_history(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        before, patches = history(frames)
        return torch.zeros_like(before), patches

    model._history = zero_history  # type: ignore[method-assign]
    rows_out["flow loss, history frames zeroed"] = mean_loss(model, tts, "tts")
    del model._history  # the class's own again
    rows_out["text gain (flow)"] = text_gain(model, tts)
    rows_out["text gain (flow) under the prior"] = text_gain(model, tts, prior=prior)
    if hasattr(model, "regress_head"):
        weight = model.config.regression_weight  # the model reports weight × MSE
        rows_out["next-patch regression MSE"] = mean_loss(model, tts, "regress") / weight
        rows_out["text gain (regression MSE)"] = text_gain(model, tts, loss="regress") / weight
    rows_out["ASR next-unit accuracy"] = mean_loss(model, asr, "asr_accuracy")
    rows_out["ASR next-unit accuracy under the prior"] = mean_loss(model, asr, "asr_accuracy", prior)
    shifted = [Example("asr", e.text, asr[(i + 1) % len(asr)].audio) for i, e in enumerate(asr)]
    rows_out["ASR next-unit accuracy, the next utterance's audio"] = mean_loss(model, shifted, "asr_accuracy")
    limit = f" --limit {args.limit}" if args.limit is not None else ""
    print(f"Produced by `python scripts/ardit_probe.py {args.model} --data {args.data} --prior-heads {args.prior_heads}"
          f" --prior-width {args.prior_width}{limit}`: {len(tts)} transcribed utterances of at most 12 s.\n")
    print("| probe | value |\n|---|---|")
    for name, value in rows_out.items():
        print(f"| {name} | {value:.4f} |")
    means = [features[:, : model.config.latent_dim] for _, features, _ in data.items]
    stats = latent_statistics(means, model.config.patch_size)
    stats["posterior noise variance / variance of the means (median dimension)"] = float(
        (torch.cat([f[:, model.config.latent_dim:] for _, f, _ in data.items]).double().exp() ** 2).mean(0).div(
            torch.cat(means).double().var(0)).median())
    print("\n| tokenizer latents | value |\n|---|---|")
    for name, value in stats.items():
        print(f"| {name} | {value:.3g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

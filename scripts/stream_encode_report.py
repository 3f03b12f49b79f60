"""Measure streaming SiTok encode against offline ``encode`` (the figures of docs/sitok.md).

    python scripts/stream_encode_report.py margins sitok-default   # codes, float gaps, VQ margins
    python scripts/stream_encode_report.py delay                    # soxr's withheld samples
    python scripts/stream_encode_report.py speed                    # CPU time per token, 1 thread

``margins`` encodes tests/data and, where present, ../shared/data (LibriSpeech speaker 84 and the
LJSpeech sample) offline and streamed in random chunks. It reports how many codes agree, how far
the streamed ``vq_in`` outputs are from the offline ones, and the decision margin of each token:
the squared distance to the second-nearest code minus that to the nearest, in float64.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from speechtok.audio import load_audio, resample_stream
from speechtok.models.sitok import SiTok
from speechtok.models.sitok_stream import SiTokEncoderStream

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def margins(name: str) -> None:
    files = sorted((REPO / "tests" / "data").glob("*.flac"))
    if name == "sitok-default":
        files += sorted((SHARED / "librispeech_dev_clean_spk84").glob("*.flac"))
        files += sorted((SHARED / "ljspeech_32utt").glob("*.flac"))
        model = SiTok.from_pretrained(name)
    else:
        torch.manual_seed(0)
        model = SiTok.from_preset(name).eval()
    codebook = model.quantizer.codebook.double()
    rng = np.random.default_rng(0)
    seen: list[torch.Tensor] = []
    model.vq_in.register_forward_hook(lambda module, args, out: seen.append(out.detach().clone()))
    tokens = equal = 0
    seconds, max_dz, gaps, changes = 0.0, 0.0, [], []
    for path in files:
        wav, rate = load_audio(path)
        w = torch.from_numpy(wav)
        seconds += len(wav) / rate
        seen.clear()
        offline = model.encode(w[None, None], rate)
        z_offline = seen[0][0]
        seen.clear()
        cuts = [int(c) for c in rng.integers(1, 8000, size=len(wav) // 500 + 2).cumsum() if c < len(wav)]
        streamed = torch.cat(list(model.encode_stream(torch.tensor_split(w, cuts), rate)), -1)
        z_streamed = torch.cat([z[0] for z in seen], 0)
        tokens += offline.shape[-1]
        equal += int((offline == streamed).sum())
        max_dz = max(max_dz, float((z_streamed - z_offline).abs().max()))
        d_offline = torch.cdist(z_offline.double(), codebook) ** 2
        d_streamed = torch.cdist(z_streamed.double(), codebook) ** 2
        best = d_offline.topk(2, largest=False)
        gaps.append((best.values[:, 1] - best.values[:, 0]).numpy())
        changes.append((d_streamed.gather(1, best.indices) - best.values).abs().max(1).values.numpy())
    gap, change = np.concatenate(gaps), np.concatenate(changes)
    print(f"{name}: {len(files)} files, {seconds:.1f} s, {tokens} tokens, codes equal {equal}/{tokens}")
    print(f"max |z_stream - z_offline| = {max_dz:.3g}; distance change on the best two codes: "
          f"max {change.max():.3g}, median {np.median(change):.3g}")
    print(f"margin d2 - d1: min {gap.min():.3g}, 1st percentile {np.percentile(gap, 1):.3g}, median {np.median(gap):.3g}; "
          f"tokens with margin < 1e-4: {(gap < 1e-4).sum()}, < 1e-3: {(gap < 1e-3).sum()}, < 1e-2: {(gap < 1e-2).sum()}, "
          f"< 10 x the largest change: {(gap < 10 * change.max()).sum()}")


def delay() -> None:
    for rate in (8000, 16000, 22050, 44100, 48000):
        stream, rng = resample_stream(rate, 24000), np.random.default_rng(0)
        fed = produced = 0
        withheld = []
        for _ in range(200):
            fed += rate // 100
            produced += len(stream.resample_chunk((rng.standard_normal(rate // 100) * 0.1).astype(np.float32), last=False))
            withheld.append(fed * 24000 / rate - produced)
        steady = np.array(withheld[50:]) / 24
        print(f"{rate} Hz -> 24 kHz, 10 ms chunks: {steady.min():.1f}..{steady.max():.1f} ms of output withheld")


def speed() -> None:
    torch.set_num_threads(1)
    model = SiTok.from_pretrained("sitok-default")
    wav, rate = load_audio(REPO / "tests" / "data" / "118-121721-0000.flac", 24000)
    w = torch.from_numpy(wav)
    tokens = model.num_tokens(len(w), rate)
    model.encode(w[None, None], rate)
    best_offline = best_stream = float("inf")
    for _ in range(3):
        started = time.process_time()
        model.encode(w[None, None], rate)
        best_offline = min(best_offline, time.process_time() - started)
        stream, started = SiTokEncoderStream(model, rate), time.process_time()
        for chunk in w.split(model.samples_per_token):
            stream.push(chunk)
        stream.flush()
        best_stream = min(best_stream, time.process_time() - started)
    print(f"{len(w) / rate:.2f} s clip, {tokens} tokens, 1 thread, CPU time (best of 3): offline encode "
          f"{best_offline:.3f} s; stream in 80 ms chunks {best_stream:.3f} s = {1000 * best_stream / tokens:.1f} ms per token")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "margins":
        margins(sys.argv[2] if len(sys.argv) > 2 else "sitok-default")
    elif command in ("delay", "speed"):
        {"delay": delay, "speed": speed}[command]()
    else:
        sys.exit(__doc__)

"""The HTML report: summary table, bitrate-vs-quality plot, and per sample every reconstruction
as an audio player beside its spectrogram.

Everything it references lives inside the report folder (relative links, CSS inline, no scripts,
no CDN), so the folder can be zipped, mailed and opened offline.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402

from ..audio import load_audio, save_audio  # noqa: E402
from ..data.manifest import Utterance  # noqa: E402
from ..fileio import atomic_path  # noqa: E402
from .summary import UNITS, format_cell  # noqa: E402
from .systems import System  # noqa: E402

SPEC_RATE, SPEC_FFT, SPEC_HOP = 16000, 512, 160
#: Fixed colour range (dBFS) so spectrograms of different systems are comparable by eye.
SPEC_DB_RANGE = (-110.0, -20.0)
REFERENCE = "reference"
#: kbit/s ticks of the bitrate plot's log axis (tokenizers sit near 0.2, codecs 0.45-8).
BITRATE_TICKS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50)
#: Per-file metrics shown beside each player (the rest are in results.jsonl).
SAMPLE_METRICS = ("wer", "dwer", "stoi", "pesq_wb", "sim", "dnsmos", "mcd")

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;color:#222;
padding:0 1em}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}h3{margin-bottom:.3em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:.3em .5em;text-align:right}
th{background:#f3f3f3}td{white-space:nowrap}td:first-child,th:first-child{text-align:left}
.samples td{vertical-align:middle}
.samples img{display:block;max-width:640px;height:96px;width:100%;image-rendering:pixelated}
.meta,.legend{color:#555;font-size:.9em}.err{color:#b00}.text{font-style:italic;color:#444}
audio{width:240px}.wide{overflow-x:auto}
"""


def spectrogram_png(audio: Path, target: Path) -> Path:
    """Log-magnitude spectrogram (0-8 kHz, 10 ms hop, one pixel per frame and bin) as a PNG."""
    if target.is_file() and target.stat().st_mtime >= audio.stat().st_mtime:
        return target
    wav, _ = load_audio(audio, SPEC_RATE)
    window = scipy.signal.get_window("hann", SPEC_FFT)
    _, _, spec = scipy.signal.stft(wav, nperseg=SPEC_FFT, noverlap=SPEC_FFT - SPEC_HOP, window=window,
                                   boundary=None, padded=False)
    db = 20 * np.log10(np.abs(spec) * 2 + 1e-9)  # scipy scales by 1/sum(window): ×2 gives a sine's amplitude
    with atomic_path(target) as tmp:
        plt.imsave(tmp, db[::-1], cmap="magma", vmin=SPEC_DB_RANGE[0], vmax=SPEC_DB_RANGE[1], format="png")
    return target


def bitrate_plot(rows: Sequence[dict[str, Any]], target: Path) -> Path | None:
    """WER (or dWER) and STOI against nominal bitrate, log x; identity drawn as the judges' floor line."""
    panels = [m for m in ("wer", "dwer", "stoi") if any(r.get(m) is not None for r in rows)]
    panels = [p for p in panels if not (p == "dwer" and "wer" in panels)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, metric in zip(axes[0], panels, strict=True):
        for row in rows:
            value = row.get(metric)
            if value is None:
                continue
            if row.get("bitrate") is None:
                ax.axhline(value, color="0.5", linestyle="--", linewidth=1)
                ax.annotate(f"{row['system']} (floor)" if metric != "stoi" else row["system"], (0, value),
                            xycoords=("axes fraction", "data"), xytext=(4, 3), textcoords="offset points",
                            fontsize=8, color="0.4")
                continue
            ax.errorbar(row["bitrate"], value, yerr=row.get(f"{metric}_ci95") or 0, fmt="o", capsize=3)
            ax.annotate(row["system"], (row["bitrate"], value), xytext=(4, 4), textcoords="offset points", fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator(BITRATE_TICKS))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("nominal bitrate (kbit/s)")
        ax.set_ylabel(f"{metric.upper()} ({UNITS[metric][0]})")
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return target


def _table(rows: Sequence[dict[str, Any]], cols: Sequence[str]) -> str:
    shown = [c for c in cols if not c.endswith("_ci95")]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(format_cell(row, c))}</td>" for c in shown) + "</tr>" for row in rows
    )
    return f'<div class="wide"><table><tr>{head}</tr>{body}</table></div>'


def _row(out_dir: Path, title: str, audio: Path, spectrogram: Path, scores: str) -> str:
    """One table row: system name, audio player, spectrogram (made if missing), per-file scores."""
    a = audio.relative_to(out_dir).as_posix()
    s = spectrogram_png(audio, spectrogram).relative_to(out_dir).as_posix()
    return (f"<tr><th>{html.escape(title)}</th>"
            f'<td><audio controls preload="none" src="{html.escape(a)}"></audio></td>'
            f'<td><img src="{html.escape(s)}" alt="spectrogram of {html.escape(a)}" loading="lazy"></td>'
            f"<td>{html.escape(scores)}</td></tr>")


def _sample(out_dir: Path, utt: Utterance, key: str, systems: Sequence[System], by_key: dict) -> str:
    ref_audio = out_dir / "audio" / REFERENCE / f"{key}.wav"
    if not ref_audio.is_file():
        wav, rate = load_audio(utt.path)
        save_audio(ref_audio, wav, rate)
    rows = [_row(out_dir, "original", ref_audio, _spec_path(out_dir, REFERENCE, key), "")]
    for system in systems:
        if system.name == "identity":  # identical to the original row above
            continue
        record = by_key.get((system.name, key))
        if record is None or "error" in record:
            error = html.escape(record["error"] if record else "not evaluated")
            rows.append(f'<tr><th>{html.escape(system.name)}</th><td colspan="3" class="err">{error}</td></tr>')
            continue
        metrics = record["metrics"]
        scores = ", ".join(f"{m} {format_cell(metrics, m)}" for m in SAMPLE_METRICS if m in metrics)
        spectrogram = _spec_path(out_dir, system.name, key)
        rows.append(_row(out_dir, system.name, out_dir / record["audio"], spectrogram, scores))
    text = (f'<p class="text">{html.escape(utt.transcript)}</p>' if utt.transcript
            else '<p class="meta">(no transcript)</p>')
    title = f"{html.escape(key)} <span class=meta>speaker {html.escape(utt.speaker)}, {utt.seconds:.1f} s</span>"
    return (f'<section><h3>{title}</h3>{text}<table class="samples"><tr><th>system</th><th>audio</th>'
            f"<th>spectrogram (0–8 kHz)</th><th>scores</th></tr>{''.join(rows)}</table></section>")


def _spec_path(out_dir: Path, system: str, key: str) -> Path:
    return out_dir / "spectrograms" / system / f"{key}.png"


def write_html(
    out_dir: Path,
    rows: Sequence[dict[str, Any]],
    cols: Sequence[str],
    records: Sequence[dict[str, Any]],
    systems: Sequence[System],
    samples: Sequence[tuple[Utterance, str]],
    meta: dict[str, Any],
) -> Path:
    """Write ``index.html`` (+ figures/, spectrograms/, audio/reference/) into ``out_dir``."""
    by_key = {(r["system"], r["file"]): r for r in records}
    plot = bitrate_plot(rows, out_dir / "figures" / "bitrate.png")
    judges = "".join(
        f"<li>{html.escape(g)}: {html.escape(j['name'])}, {html.escape(j['version'])},"
        f" sha256 <code>{j['sha256']}</code></li>"
        for g, j in meta["judges"].items()
    )
    legend = "; ".join(f"{c}: {u}" for c, (u, _) in UNITS.items() if c in cols)
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>speechtok evaluation</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>speechtok evaluation</h1>",
        f"<p class=meta>Data <code>{html.escape(meta['data'])}</code>: {meta['files']} files,"
        f" {meta['minutes']:.1f} min, {meta['speakers']} speakers, {meta['transcribed']} transcribed."
        f" Metrics: {html.escape(', '.join(meta['groups']))}. {meta['date']}, wall time {meta['seconds']:.0f} s,"
        f" {meta['reused']} of {meta['results']} results from the cache.</p>",
        "<h2>Systems</h2>", _table(rows, cols),
        f"<p class=legend>Mean ± 95 % CI over files (WER/CER/dWER pooled over words). {html.escape(legend)}.</p>",
    ]
    if plot is not None:
        src = plot.relative_to(out_dir).as_posix()
        parts.append(f'<h2>Bitrate vs. quality</h2><img src="{src}" alt="bitrate vs. WER and STOI">')
    parts += [f"<h2>Judges</h2><ul>{judges}</ul>", f"<h2>Samples ({len(samples)})</h2>"]
    parts += [_sample(out_dir, utt, key, systems, by_key) for utt, key in samples]
    parts.append("</body></html>")
    target = out_dir / "index.html"
    with atomic_path(target) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")
    return target

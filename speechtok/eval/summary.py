"""Per-system summary of per-file records: means with 95 % confidence intervals, as CSV and Markdown.

WER, CER and dWER are pooled (total edits / total reference words, as ASR papers report them) with
a bootstrap interval over files; every other metric is a per-file mean with a Student-t interval.
A ``*_ci95`` column holds the half-width, so a cell reads ``value ± ci95``.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.stats

from ..fileio import atomic_path
from .groups import METRIC_GROUPS
from .systems import System
from .tokens import codebook_stats

POOLED = ("wer", "cer", "dwer")
TOKEN_COLUMNS = ("token_rate", "bits_per_token", "codebook_usage", "codebook_entropy")
BOOTSTRAP_RESAMPLES = 1000
#: Units and decimals of each column, for the Markdown table and its legend.
UNITS: dict[str, tuple[str, int]] = {
    "bitrate": ("nominal kbit/s", 2), "bitrate_disk": ("kbit/s of the encoded file on disk", 2),
    "wer": ("% vs. manifest transcript", 1), "cer": ("% vs. manifest transcript", 1),
    "dwer": ("% vs. the judge's transcript of the original", 1),
    "stoi": ("0..1", 3), "estoi": ("0..1", 3), "pesq_nb": ("MOS-LQO 1..4.55", 2), "pesq_wb": ("MOS-LQO 1..4.64", 2),
    "sim": ("cosine", 3), "dnsmos": ("OVRL MOS 1..5", 2), "dnsmos_sig": ("SIG MOS 1..5", 2),
    "dnsmos_bak": ("BAK MOS 1..5", 2), "mel_distance": ("mean |Δ ln mel|", 3), "mcd": ("dB", 2),
    "token_rate": ("tokens/s", 1), "bits_per_token": ("bits", 1), "codebook_usage": ("fraction used", 3),
    "codebook_entropy": ("bits/token", 2),
}


def _mean_ci(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    arr = np.asarray(values, dtype=np.float64)
    if arr.size < 2:
        return float(arr.mean()), None
    half = scipy.stats.t.ppf(0.975, arr.size - 1) * arr.std(ddof=1) / math.sqrt(arr.size)
    return float(arr.mean()), float(half)


def _pooled_ci(counts: list[list[int]]) -> tuple[float | None, float | None]:
    if not counts:
        return None, None
    arr = np.asarray(counts, dtype=np.float64)
    value = 100.0 * arr[:, 0].sum() / arr[:, 1].sum()
    if len(arr) < 2:
        return float(value), None
    idx = np.random.default_rng(0).integers(0, len(arr), size=(BOOTSTRAP_RESAMPLES, len(arr)))
    boot = 100.0 * arr[idx, 0].sum(axis=1) / np.maximum(arr[idx, 1].sum(axis=1), 1.0)
    low, high = np.percentile(boot, [2.5, 97.5])
    return float(value), float((high - low) / 2)


def columns(groups: Sequence[str], systems: Sequence[System]) -> list[str]:
    """Table columns: system, bitrates, each metric and its CI, tokenizer statistics, file counts."""
    cols = ["system", "bitrate", "bitrate_disk"]
    for group in groups:
        for metric in METRIC_GROUPS[group]:
            cols += [metric, f"{metric}_ci95"]
    if any(s.describe().get("kind") == "sitok" for s in systems):
        cols += list(TOKEN_COLUMNS)
    return cols + ["files", "failed"]


def metric_summary(records: Sequence[dict[str, Any]], metric: str) -> tuple[float | None, float | None]:
    """One metric over scored records (of one system): pooled over words with a bootstrap CI for
    WER/CER/dWER, else the mean with a Student-t CI; ``(value, 95 % CI half-width)``."""
    if metric in POOLED:
        return _pooled_ci([r["asr"]["counts"][metric] for r in records if metric in r.get("asr", {}).get("counts", {})])
    return _mean_ci([r["metrics"][metric] for r in records if metric in r["metrics"]])


def summarize(records: Sequence[dict[str, Any]], systems: Sequence[System], groups: Sequence[str]) -> list[dict]:
    """One row per system, in the order the systems were given."""
    rows = []
    for system in systems:
        mine = [r for r in records if r["system"] == system.name]
        ok = [r for r in mine if "error" not in r]
        row: dict[str, Any] = {"system": system.name, "bitrate": system.nominal_kbps}
        bits = [(r["bits"], r["seconds"]) for r in ok if r.get("bits") is not None]
        row["bitrate_disk"] = sum(b for b, _ in bits) / sum(s for _, s in bits) / 1000 if bits else None
        for group in groups:
            for metric in METRIC_GROUPS[group]:
                row[metric], row[f"{metric}_ci95"] = metric_summary(ok, metric)
        info = system.describe()
        if info.get("kind") == "sitok":
            entries = info["codebook_size"] * info.get("codebooks", 1)  # residual VQ: every codebook's entries
            stats = codebook_stats([r["token_hist"] for r in ok if "token_hist" in r], entries)
            row.update(token_rate=info["token_rate"], bits_per_token=info["bits_per_token"],
                       codebook_usage=stats.usage, codebook_entropy=stats.entropy_bits)
        row["files"], row["failed"] = len(ok), len(mine) - len(ok)
        rows.append(row)
    return rows


def paired_differences(records: Sequence[dict[str, Any]], base: str, systems: Sequence[str],
                       metrics: Sequence[str] = ("wer", "stoi", "sim")) -> list[dict[str, Any]]:
    """Each system minus ``base`` on the files both scored: far tighter than comparing two rows'
    intervals when the systems share their tokens (one model decoded two ways). Pooled metrics: the
    difference of pooled rates with a paired bootstrap over files; the others: the mean per-file
    difference with a Student-t interval. Same columns as :func:`summarize` (``_ci95`` half-widths)."""
    by_system: dict[str, dict[str, dict[str, Any]]] = {}
    for r in records:
        if "error" not in r:
            by_system.setdefault(r["system"], {})[r["file"]] = r
    reference = by_system.get(base, {})
    rows = []
    for name in systems:
        mine = by_system.get(name, {})
        files = sorted(set(reference) & set(mine))
        row: dict[str, Any] = {"system": f"{name} − {base}", "files": len(files)}
        for metric in metrics:
            if metric in POOLED:
                pairs = [(mine[f]["asr"]["counts"][metric], reference[f]["asr"]["counts"][metric]) for f in files
                         if metric in mine[f].get("asr", {}).get("counts", {})
                         and metric in reference[f].get("asr", {}).get("counts", {})]
                row[metric], row[f"{metric}_ci95"] = _pooled_difference_ci(pairs)
            else:
                values = [mine[f]["metrics"][metric] - reference[f]["metrics"][metric] for f in files
                          if metric in mine[f]["metrics"] and metric in reference[f]["metrics"]]
                row[metric], row[f"{metric}_ci95"] = _mean_ci(values)
        rows.append(row)
    return rows


def _pooled_difference_ci(pairs: list[tuple[list[int], list[int]]]) -> tuple[float | None, float | None]:
    if not pairs:
        return None, None
    arr = np.asarray(pairs, dtype=np.float64)  # [files, system/base, edits/words]

    def rate(rows: np.ndarray, which: int) -> np.ndarray:
        return 100.0 * rows[..., which, 0].sum(-1) / np.maximum(rows[..., which, 1].sum(-1), 1.0)
    value = float(rate(arr, 0) - rate(arr, 1))
    if len(arr) < 2:
        return value, None
    boot = arr[np.random.default_rng(0).integers(0, len(arr), size=(BOOTSTRAP_RESAMPLES, len(arr)))]
    low, high = np.percentile(rate(boot, 0) - rate(boot, 1), [2.5, 97.5])
    return value, float((high - low) / 2)


def write_jsonl(path: Path, records: Sequence[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            for record in records:
                slim = {k: v for k, v in record.items() if k not in ("token_hist", "traceback")}
                handle.write(json.dumps(slim, sort_keys=True) + "\n")


def write_csv(path: Path, rows: Sequence[dict[str, Any]], cols: Sequence[str]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(cols), extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({c: "" if row.get(c) is None else row[c] for c in cols})


def format_value(value: float | None, ci: float | None, digits: int) -> str:
    """``value ± ci`` with ``digits`` decimals; ``–`` where there is no value."""
    if value is None:
        return "–"
    return f"{value:.{digits}f}" + (f" ± {ci:.{digits}f}" if ci is not None else "")


def format_cell(row: dict[str, Any], column: str) -> str:
    """A table cell: ``value ± ci`` with the column's decimals; ``–`` where there is no value."""
    value = row.get(column)
    if column not in UNITS:
        return "–" if value is None else str(value)
    return format_value(value, row.get(f"{column}_ci95"), UNITS[column][1])


def markdown_table(rows: Sequence[dict[str, Any]], cols: Sequence[str]) -> str:
    shown = [c for c in cols if not c.endswith("_ci95")]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(format_cell(row, c) for c in shown) + " |" for row in rows]
    return "\n".join(lines)


def legend(cols: Sequence[str]) -> str:
    return "; ".join(f"`{c}`: {UNITS[c][0]}" for c in cols if c in UNITS)


def write_markdown(path: Path, rows: Sequence[dict[str, Any]], cols: Sequence[str], meta: dict[str, Any]) -> None:
    """The table plus what it was measured on and with which judges (``meta`` from the CLI)."""
    parts = [
        "# Evaluation summary", "",
        f"Data: `{meta['data']}`: {meta['files']} files, {meta['minutes']:.1f} min, {meta['speakers']} speakers, "
        f"{meta['transcribed']} with transcripts. Metrics: {', '.join(meta['groups'])}. "
        f"Wall time {meta['seconds']:.0f} s ({meta.get('workers', 1)} worker processes, {meta['threads']} threads), {meta['reused']} of {meta['results']}"
        f" results from the cache ({meta['date']}).", "",
        markdown_table(rows, cols), "",
        "Cells are mean ± 95 % CI half-width over files (WER/CER/dWER: pooled over words, bootstrap CI). "
        + legend(cols) + ".", "",
        "## Judges", "",
    ]
    parts += [f"- {group}: {j['name']}, {j['version']}, sha256 `{j['sha256']}`" for group, j in meta["judges"].items()]
    parts += [f"- libraries: {', '.join(f'{k}=={v}' for k, v in meta['libraries'].items())}", ""]
    failed = meta.get("failures", [])
    if failed:
        parts += ["## Failed files", ""] + [f"- {f['system']} / {f['file']}: {f['error']}" for f in failed] + [""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(parts), encoding="utf-8")


def check_marked_block(doc: Path, marker: str) -> str:
    """``doc``'s text, if it has the ``<!-- marker:begin -->`` … ``<!-- marker:end -->`` block (a script
    that rewrites one calls this before its long work); else an EvalError."""
    from .errors import EvalError

    text = doc.read_text(encoding="utf-8")
    if f"<!-- {marker}:begin -->" not in text or f"<!-- {marker}:end -->" not in text:
        raise EvalError(f"{doc}: markers <!-- {marker}:begin --> / <!-- {marker}:end --> not found")
    return text


def publish_block(doc: Path, marker: str | None, block: str) -> None:
    """Print ``block`` and, with a ``marker``, rewrite that block of ``doc`` with it; with none the document
    stays as it is, so that an exploratory run of a table script (other models, other settings) leaves the
    documented tables alone."""
    print(f"\n{block}\n")
    if marker:
        replace_marked_block(doc, marker, block)
        print(f"updated the {marker} block of {doc.name}")


def replace_marked_block(doc: Path, marker: str, block: str) -> None:
    """Rewrite the text between ``<!-- marker:begin -->`` and ``<!-- marker:end -->`` in ``doc``."""
    import re

    text = check_marked_block(doc, marker)
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    doc.write_text(pattern.sub(lambda _: f"{begin}\n{block}\n{end}", text), encoding="utf-8")

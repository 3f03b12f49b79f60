"""Training curves as a PNG: people would rather look at a loss curve than read a JSONL file.

Plotting needs matplotlib (the ``plot`` extra); without it training goes on and says once that
``metrics.png`` is skipped.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from ..extras import MissingExtraError, optional_import
from ..fileio import atomic_path

log = logging.getLogger("speechtok")

Panel = tuple[str, str | None, str]  # (training key, validation key or None, title)

SITOK_PANELS: tuple[Panel, ...] = (
    ("flow", "valid_flow", "flow-matching L1"),
    ("ctc", "valid_ctc", "CTC loss"),
    ("codebook_usage", None, "codebook usage (fraction of codes used recently)"),
    ("perplexity", None, "code perplexity per batch"),
    ("valid_ctc_cer", None, "validation greedy-CTC CER"),
    ("teacher", "valid_teacher", "teacher distillation (1 − cos)"),
    ("shortcut", None, "shortcut self-consistency L1"),
    ("guidance", None, "one-pass guidance L1 (guidance distillation)"),
    ("lr", None, "learning rate"),
)


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(path: Path, last_step: int) -> None:
    """Drop the rows logged after ``last_step``: a run resumed from that checkpoint logs those steps
    again, and a log whose step column goes backwards double-counts them in plots and tables."""
    records = read_metrics(path)
    kept = [r for r in records if r.get("step", 0) <= last_step]
    if len(kept) != len(records):
        with atomic_path(path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or None (said once) without the plot extra."""
    global _plots_unavailable
    try:
        matplotlib = optional_import("matplotlib", "plot", "metrics.png")
    except MissingExtraError as exc:
        if not _plots_unavailable:
            log.warning(f"note: skipping training plots: {exc}")
            _plots_unavailable = True
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_plots_unavailable = False


def plot_metrics(jsonl: str | Path, png: str | Path, panels: tuple[Panel, ...] = SITOK_PANELS,
                 title: str | None = None) -> Path | None:
    records = read_metrics(Path(jsonl))
    plt = _pyplot() if records else None
    if plt is None:
        return None
    # Optional objectives (teacher, shortcut, guidance) get a panel only in runs that log them.
    logged = {key for r in records for key in r}
    panels = tuple(p for p in panels if p[0] in logged or p[1] in logged)
    if not panels:
        return None
    rows = -(-len(panels) // 3)
    fig, axes = plt.subplots(rows, 3, figsize=(15, 3.75 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (train_key, valid_key, label) in zip(axes.flat, panels):
        for key, style in ((train_key, "-"), (valid_key, "o-")):
            points = [(r["step"], r[key]) for r in records if key and key in r]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, label=("valid" if key == valid_key else "train"), markersize=3)
        ax.set_title(label)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if valid_key and ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(title or str(Path(jsonl).parent.name))
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(png)

"""``evaluate()``: the whole evaluation in one call (what ``speechtok eval`` and the scripts run).

Writes into the report folder: ``results.jsonl`` (one line per system × file), ``summary.csv`` and
``summary.md`` (one row per system), ``run.json`` (data, judges, library versions, systems, wall
time), ``index.html`` and the audio/spectrogram/figure files it shows.
"""
from __future__ import annotations

import datetime
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ..data.manifest import read_corpus
from ..fileio import write_json_atomic
from .judges.asr import ASRJudge
from .report import write_html
from .groups import DEFAULT_WORKERS, parse_metrics
from .runner import Judges, Runner, file_keys, library_versions
from .summary import columns, summarize, write_csv, write_jsonl, write_markdown
from .systems import System, get_systems


@dataclass(frozen=True)
class EvalResult:
    """The summary rows and table columns, every per-file record, and the run's metadata."""

    rows: list[dict[str, Any]]
    columns: list[str]
    records: list[dict[str, Any]]
    meta: dict[str, Any]
    out_dir: Path

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.records if "error" in r]


def evaluate(
    systems: Sequence[str | System],
    data: str | Path,
    out_dir: str | Path,
    *,
    metrics: str | Sequence[str] | None = None,
    asr_judge: str | ASRJudge = "whisper-base",
    limit: int | None = None,
    samples: int | None = None,
    html: bool = True,
    progress: bool = True,
    vocoder: str | None = None,
    steps: int | None = None,
    cfg: float | None = None,
    workers: int = DEFAULT_WORKERS,
) -> EvalResult:
    """Evaluate ``systems`` (names, paths or :class:`System` objects) on the manifest ``data``.

    ``asr_judge`` is a registered name, ``module:factory``, or any object with ``info``,
    ``sample_rate`` and ``transcribe(wav)``. ``limit`` keeps the first N files; ``samples`` caps how
    many files get players in the HTML. ``workers`` processes score files side by side.
    """
    out_dir = Path(out_dir)
    groups = parse_metrics(metrics)
    chosen = get_systems(systems, vocoder=vocoder, steps=steps, cfg=cfg)
    rows_in = read_corpus(data)
    utterances = rows_in[:limit] if limit else rows_in
    judges = Judges(asr_judge) if isinstance(asr_judge, str) else Judges(asr=asr_judge)
    runner = Runner(out_dir, groups, judges, progress=progress, workers=workers)
    start = time.perf_counter()
    records = runner.run(chosen, utterances)
    meta = {
        "data": str(data), "files": len(utterances), "minutes": sum(u.seconds for u in utterances) / 60,
        "speakers": len({u.speaker for u in utterances}), "transcribed": sum(1 for u in utterances if u.transcript),
        "groups": list(groups), "judges": runner.judge_infos(), "libraries": library_versions(),
        "systems": {s.name: s.describe() for s in chosen}, "threads": torch.get_num_threads(), "workers": workers,
        "date": datetime.date.today().isoformat(), "seconds": time.perf_counter() - start,
        "results": len(records), "reused": runner.reused,
        "failures": [{"system": r["system"], "file": r["file"], "error": r["error"]} for r in records if "error" in r],
    }
    cols = columns(groups, chosen)
    rows = summarize(records, chosen, groups)
    write_jsonl(out_dir / "results.jsonl", records)
    write_csv(out_dir / "summary.csv", rows, cols)
    write_markdown(out_dir / "summary.md", rows, cols, meta)
    if html:
        keys = file_keys(utterances)
        shown = utterances[:samples] if samples is not None else utterances
        write_html(out_dir, rows, cols, records, chosen, [(u, keys[u.path]) for u in shown], meta)
    meta["seconds_total"] = time.perf_counter() - start
    write_json_atomic(out_dir / "run.json", meta)
    return EvalResult(rows, cols, records, meta, out_dir)

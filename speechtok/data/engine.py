"""The offline data engine: plan, run, resume and report a training corpus.

Every utterance is a pure function of ``(seed, source, index)``: its text, voice, speaking rate,
augmentation and output path (:func:`plan_item`). Running an item synthesises (or loads) the
audio, augments it, asks Moonshine what it hears, and either keeps it (FLAC written atomically)
or drops it at the gate; the outcome is appended to ``journal.jsonl`` in the output folder.

That journal makes the build resumable: a rerun skips every index it lists, so a killed run loses
at most the files in flight, and nothing already judged is recomputed. ``manifest.tsv`` and
``report.md`` are rebuilt from the journal alone (:func:`write_outputs`), each source cut at its
hours target in index order, so the manifest does not depend on how many workers ran or where a
run was interrupted.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..audio import load_audio, save_audio
from ..errors import DataError, SpeechtokError
from ..fileio import atomic_path
from .augment import Profile, augment, draw_profiles
from .engine_config import EngineConfig, SourceConfig, corpus_path, prepare_output
from .manifest import Utterance, read_manifest, write_manifest
from .moonshine import Moonshine, word_error_rate
from .texts import Exclusion, evaluation_exclusion, read_sentences, text_pool
from .voices import LICENCES, Voice, backend_voices, synthesize

JOURNAL = "journal.jsonl"
MANIFEST = "manifest.tsv"
REPORT = "report.md"
#: Licences of the real-speech folders (``shared/data/README.md``).
REAL_LICENCES = {
    "librispeech_train_clean_100_251spk_untranscribed": "CC BY 4.0",
    "asterisk_en_allison_8k": "CC BY-SA 3.0",
    "fsdd_digits_6spk_8k": "CC BY-SA 4.0",
    "dctts_lj_reader_44k": "Apache-2.0",
}


@dataclass(frozen=True)
class Item:
    """Everything a worker needs to produce one utterance (picklable, no models inside)."""

    key: str
    source: str
    index: int
    path: str  # relative to the output folder
    seed: int
    text: str  # what the speech says; empty: real speech to pseudo-label
    speaker: str
    voice: Voice | None  # None for real speech
    original: str  # real speech: the source file
    speed: float
    profile: Profile | None
    gated: bool


@dataclass(frozen=True)
class Plan:
    """The fixed inputs of a build: the sentence pool and the real utterances, both evaluation-free."""

    config: EngineConfig
    sentences: list[str]
    real: list[Utterance]
    augment_pools: dict[str, list[Utterance]]  # per augmented real source: its files in a seeded order


def make_plan(config: EngineConfig) -> Plan:
    """Read the texts and real manifests, and drop every evaluation sentence and speaker."""
    exclusion = evaluation_exclusion(config.dev_path(), config.shared_path())
    sentences = [s.text for s in text_pool(read_sentences(config.texts_path()), exclusion)]
    real = real_utterances(config, exclusion)
    order = np.random.default_rng([config.seed, 0x7265616C]).permutation(len(real)).tolist()
    pools = {s.name: [real[i] for i in order if real[i].seconds >= s.min_seconds]
             for s in config.sources if s.kind == "real" and s.augment}
    return Plan(config, sentences, real, pools)


def real_utterances(config: EngineConfig, exclusion: Exclusion) -> list[Utterance]:
    """The train split plus ``real_folders``, without dev speakers, dev files or evaluation sentences."""
    dev = read_manifest(config.dev_path())
    dev_speakers, dev_paths = {r.speaker for r in dev}, {r.path for r in dev}
    rows = list(read_manifest(config.train_path()))
    for folder in config.real_folders:
        rows += read_manifest(config.shared_path() / folder / "manifest.tsv")
    return [r for r in rows if r.speaker not in dev_speakers and r.path not in dev_paths
            and not exclusion.excludes(r.path.stem, r.transcript)]


def item_count(plan: Plan, source: SourceConfig) -> int | None:
    """How many items a source can have at most (None: unbounded, stop on hours)."""
    if source.kind != "real":
        return None
    return len(plan.augment_pools[source.name]) * source.augment if source.augment else len(plan.real)


@functools.lru_cache(maxsize=64)
def _voices(kind: str, count: int, seed: int) -> list[Voice]:
    return backend_voices(kind, count, seed)


@functools.lru_cache(maxsize=64)
def _profiles(count: int, seed: int) -> list[Profile]:
    return draw_profiles(count, seed)


def plan_item(plan: Plan, source: SourceConfig, index: int) -> Item:
    """The utterance at ``index`` of ``source``: a pure function of the config, source and index."""
    seed = plan.config.seed
    rng = np.random.default_rng([seed, int.from_bytes(source.name.encode()[:8], "little"), index])
    profiles = _profiles(source.augment, seed) if source.augment else []
    profile = profiles[int(rng.integers(len(profiles)))] if profiles else None
    speed = float(rng.uniform(0.85, 1.15)) if profile else 1.0
    key = f"{source.name}-s{seed}-{index:06d}"
    path = f"{corpus_path(source.name, index)}/{key}.flac"
    item_seed = int(rng.integers(2**31))
    if source.kind == "real":
        pool = plan.augment_pools[source.name] if profile else plan.real
        utt = pool[index % len(pool)]
        if profile:  # each pass over the files gives every file a profile it has not had yet
            profile = profiles[(index % len(pool) + index // len(pool)) % len(profiles)]
        speaker = f"{utt.speaker}~{profile.name}" if profile else utt.speaker
        return Item(key, source.name, index, path, item_seed, utt.transcript, speaker, None, str(utt.path),
                    speed, profile, gated=profile is not None)
    voices = _voices(source.kind, source.voices, seed)
    voice = voices[int(rng.integers(len(voices)))]
    text = plan.sentences[int(rng.integers(len(plan.sentences)))]
    if not profile:
        speed = float(rng.uniform(0.9, 1.1))  # the TTS's own rate when no augmentation changes it
    speaker = f"{voice.speaker}~{profile.name}" if profile else voice.speaker
    return Item(key, source.name, index, path, item_seed, text, speaker, voice, "", speed, profile, gated=True)


@functools.lru_cache(maxsize=1)
def _moonshine() -> Moonshine:
    """One Moonshine per process (workers load their own)."""
    return Moonshine(threads=1)


def run_item(item: Item, out: str, gate_wer: float) -> dict[str, Any]:
    """Produce one utterance and judge it; returns its journal record (failures are recorded, not raised)."""
    start = time.monotonic()
    record: dict[str, Any] = {"key": item.key, "source": item.source, "index": item.index, "path": item.path,
                              "speaker": item.speaker, "voice": item.voice.speaker if item.voice else "real",
                              "text": item.text, "kept": False, "seconds": 0.0}
    if item.original:
        record["original"] = item.original
    try:
        if item.voice is None:
            wav, rate = load_audio(item.original)
        else:
            wav, rate = synthesize(item.text, item.voice, 1.0 if item.profile else item.speed, item.seed)
        text = item.text or _moonshine().transcribe(wav, rate)  # untranscribed real speech: Moonshine's pseudo-label
        if item.profile:
            wav, rate = augment(wav, rate, item.profile, item.speed, item.seed)
        record.update(text=text, seconds=round(wav.size / rate, 3), rate=rate)
        if item.gated:
            heard = _moonshine().transcribe(wav, rate)
            record.update(asr=heard, wer=round(word_error_rate(text, heard), 4))
            record["kept"] = record["wer"] <= gate_wer
        else:
            record["kept"] = bool(text.strip())
        if record["kept"]:
            save_audio(Path(out) / item.path, wav, rate)
    except Exception as exc:  # noqa: BLE001 - one odd sentence (a G2P or runtime failure) must not stop
        # an unattended build forever at the same index; the journal keeps it, and 200 in a row stop the source
        record["error"] = str(exc) if isinstance(exc, SpeechtokError) else f"{type(exc).__name__}: {exc}"
    record["elapsed"] = round(time.monotonic() - start, 3)
    return record


class Journal:
    """Append-only JSON lines, flushed and synced per record; a torn last line is ignored on read."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def repair(self) -> None:
        """Cut a torn last line (a run killed while writing it) so that new records start cleanly."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn line not yet repaired
        return records

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def build(config: EngineConfig, out: str | os.PathLike[str], workers: int = 1,
          progress: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Run (or continue) the build, then rewrite the manifest and report; returns the summary."""
    out = Path(out)
    prepare_output(out, config)
    plan = make_plan(config)
    journal = Journal(out / JOURNAL)
    journal.repair()
    for stray in out.glob("audio/*/*/.*.tmp.flac"):  # half-written by a killed run (atomic_path's temp files)
        stray.unlink()
    done: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for record in journal.read():
        done[record["source"]][record["index"]] = record
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        for source in config.sources:
            _build_source(plan, source, out, done[source.name], journal, pool, workers, progress)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return write_outputs(out, config)


def _build_source(plan: Plan, source: SourceConfig, out: Path, done: dict[int, dict[str, Any]], journal: Journal,
                  pool: ProcessPoolExecutor | None, workers: int, progress: Callable[..., Any] | None) -> None:
    """Run a source's items in index order until its kept hours reach the target."""
    target = source.hours * 3600
    limit = item_count(plan, source)
    state = {"kept": sum(r["seconds"] for r in done.values() if r["kept"]), "misses": 0}
    shown = min(target, sum(u.seconds for u in plan.real)) if source.kind == "real" and not source.augment else target
    bar = progress(total=shown, initial=min(state["kept"], shown), unit="s", desc=source.name) if progress else None

    def items() -> Iterator[Item]:
        # Indices below the last judged one are always filled: a killed parallel run can leave a
        # gap, and the manifest takes records in index order, as an uninterrupted run would.
        index, last = 0, max(done, default=-1)
        while (index < last or state["kept"] < target) and (limit is None or index < limit):
            if index not in done:
                yield plan_item(plan, source, index)
            index += 1

    def finish(record: dict[str, Any]) -> None:
        journal.append(record)
        done[record["index"]] = record
        gained = record["seconds"] if record["kept"] else 0.0
        state["kept"] += gained
        state["misses"] = 0 if record["kept"] else state["misses"] + 1
        if state["misses"] >= 200:
            raise DataError(f"source {source.name}: 200 utterances in a row failed or were dropped"
                            f" (last: {record.get('error') or record.get('asr')!r}); check the voice")
        if bar is not None:
            bar.update(min(gained, max(0.0, target - bar.n)))

    try:
        if pool is None:
            for item in items():
                finish(run_item(item, str(out), plan.config.gate_wer))
            return
        pending: set[Future[dict[str, Any]]] = set()
        feed = items()
        while True:
            while len(pending) < 2 * workers and (item := next(feed, None)) is not None:
                pending.add(pool.submit(run_item, item, str(out), plan.config.gate_wer))
            if not pending:
                return
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                finish(future.result())
    finally:
        if bar is not None:
            bar.close()


def selected(config: EngineConfig, records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per source, the journal records in index order up to where the kept hours reach the target."""
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_source[record["source"]].append(record)
    chosen = {}
    for source in config.sources:
        rows, kept = [], 0.0
        for record in sorted({r["index"]: r for r in by_source[source.name]}.values(), key=lambda r: r["index"]):
            if kept >= source.hours * 3600:
                break
            rows.append(record)
            kept += record["seconds"] if record["kept"] else 0.0
        chosen[source.name] = rows
    return chosen


def write_outputs(out: str | os.PathLike[str], config: EngineConfig) -> dict[str, Any]:
    """Rebuild ``manifest.tsv`` and ``report.md`` from the journal; returns the per-source summary."""
    out = Path(out)
    chosen = selected(config, Journal(out / JOURNAL).read())
    rows = [Utterance(out / r["path"], r["seconds"], r["speaker"], r["text"])
            for records in chosen.values() for r in records if r["kept"]]
    if rows:
        write_manifest(out / MANIFEST, rows)
    summary = {name: _summarise(records) for name, records in chosen.items()}
    kinds = {s.name: s.kind for s in config.sources}
    report = _report(config, summary, kinds, chosen)
    with atomic_path(out / REPORT) as tmp:
        tmp.write_text(report, encoding="utf-8")
    return summary


def _summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    kept = [r for r in records if r["kept"]]
    gated = [r for r in records if "wer" in r or r.get("error")]
    produced = sum(r["seconds"] for r in records)
    return {
        "utterances": len(kept),
        "hours": sum(r["seconds"] for r in kept) / 3600,
        "voices": len({r["speaker"] for r in kept}),
        "rates": sorted({r["rate"] for r in kept if "rate" in r}),
        "pass_rate": sum(r["kept"] for r in gated) / len(gated) if gated else None,
        "realtime": produced / max(1e-9, sum(r.get("elapsed", 0.0) for r in records)) if records else None,
        "errors": sum(1 for r in records if r.get("error")),
    }


def _licence(kind: str, records: list[dict[str, Any]]) -> str:
    if kind != "real":
        return LICENCES[kind]
    folders = {Path(r["original"]).parent.name for r in records if r.get("original")}
    return "; ".join(sorted({REAL_LICENCES.get(f, "see shared/data/README.md") for f in folders})) or \
        "per folder, see shared/data/README.md"


def _report(config: EngineConfig, summary: dict[str, dict[str, Any]], kinds: dict[str, str],
            chosen: dict[str, list[dict[str, Any]]]) -> str:
    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.0f} %"

    def speed(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f}"

    all_kept = [r for records in chosen.values() for r in records if r["kept"]]
    lines = [
        "# Corpus report",
        "",
        f"Built by the speechtok data engine (seed {config.seed}, gate: Moonshine WER ≤ {100 * config.gate_wer:.0f} %)."
        f" Total: {len(all_kept)} utterances, {sum(r['seconds'] for r in all_kept) / 3600:.2f} h,"
        f" {len({r['speaker'] for r in all_kept})} voices (speaker ids, augmented pseudo-speakers included).",
        "",
        "| source | kind | utterances | hours | voices | sample rate (Hz) | licence | gate pass rate | × real time | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        lines.append(
            f"| {name} | {kinds[name]} | {s['utterances']} | {s['hours']:.2f} | {s['voices']} |"
            f" {', '.join(map(str, s['rates'])) or '–'} | {_licence(kinds[name], chosen[name])} |"
            f" {pct(s['pass_rate'])} | {speed(s['realtime'])} |"
            f" {s['errors']} |")
    per_voice: dict[str, list[bool]] = defaultdict(list)
    for records in chosen.values():
        for r in records:
            if "wer" in r:
                per_voice[r["voice"]].append(bool(r["kept"]))
    lines += ["", "Gate pass rate per base voice (before augmentation; `real` = augmented real speech):", "",
              "| voice | judged | pass rate |", "|---|---|---|"]
    lines += [f"| {voice} | {len(v)} | {pct(sum(v) / len(v))} |" for voice, v in sorted(per_voice.items())]
    lines += ["", "`× real time`: seconds of audio produced per second of wall time, synthesis + augmentation +"
              " Moonshine together, per worker process. Rebuild this file and the manifest from the journal with"
              " `speechtok data report DIR`.", ""]
    return "\n".join(lines)


def progress_bar(**kwargs: Any) -> Any:
    """A tqdm bar; in a log file (not a terminal) it refreshes at most once a minute."""
    try:
        from tqdm import tqdm
    except ImportError:
        raise DataError("the progress bar needs tqdm: pip install 'speechtok[data]'") from None
    return tqdm(mininterval=1 if sys.stderr.isatty() else 60, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s of"
                " speech kept [{elapsed}<{remaining}]", **kwargs)

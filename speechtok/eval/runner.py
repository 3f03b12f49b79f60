"""The evaluation loop: every system on every manifest file, scored by the selected metrics.

Per (system, file) the reconstruction is written to ``REPORT_DIR/audio/<system>/<file>.wav`` and
its record to ``REPORT_DIR/cache/<system>/<file>.json``. A rerun reuses a record whose system
fingerprint, source-audio hash and judge hashes still match and computes only what is missing, so
adding a system or a metric costs only the new work. A file that crashes is recorded with its error
and retried next time; it never stops the run. Metrics are computed on the audio exactly as saved
(16-bit), so the numbers belong to what the report lets you hear.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..audio import load_audio, resample, save_audio
from ..data.manifest import Utterance
from ..fileio import atomic_path, sha256_file, write_json_atomic
from . import metrics
from .align import AlignedPair, align
from .groups import DEFAULT_GROUPS, METRIC_GROUPS
from .judges import JudgeInfo, judge_threads, set_judge_threads
from .judges.asr import ASRJudge, load_asr_judge, score_text
from .judges.speaker import embedding_cosine
from .systems import Reconstruction, System
from .tokens import histogram

#: Rate every judge listens at (Whisper, pystoi, PESQ-WB, Resemblyzer, DNSMOS all take 16 kHz).
JUDGE_RATE = 16000
CACHE_VERSION = 2  # 2: SIM against the whole reference file; ASR transcripts keyed by judge settings


@dataclass
class Judges:
    """The judges a run needs, loaded lazily so a STOI-only run never touches Whisper."""

    asr_spec: str = "whisper-base"
    asr: ASRJudge | None = None
    _others: dict[str, Any] = field(default_factory=dict)

    def get(self, group: str) -> Any:
        if group == "wer":
            if self.asr is None:
                self.asr = load_asr_judge(self.asr_spec)
            return self.asr
        if group not in self._others:
            if group == "sim":
                from .judges.speaker import load_speaker_judge

                self._others[group] = load_speaker_judge()
            elif group == "dnsmos":
                from .judges.mos import load_mos_judge

                self._others[group] = load_mos_judge()
        return self._others.get(group)

    def info(self, group: str) -> JudgeInfo | None:
        """The judge behind a metric group; ``None`` for library metrics (STOI, PESQ, mel, MCD)."""
        judge = self.get(group) if group in ("wer", "sim", "dnsmos") else None
        return judge.info if judge is not None else None


def library_versions() -> dict[str, str]:
    """Versions of the metric libraries that are not judges (recorded once per run)."""
    from importlib import metadata

    return {name: metadata.version(name) for name in ("pystoi", "pesq", "jiwer", "whisper-normalizer", "librosa")}


@dataclass
class Runner:
    """Evaluate ``systems`` on a manifest into ``out_dir``; see the module docstring."""

    out_dir: Path
    groups: tuple[str, ...] = DEFAULT_GROUPS
    judges: Judges = field(default_factory=Judges)
    progress: bool = True
    workers: int = 1  # processes scoring files side by side (each loads its own judges); 1: in this process

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.reused = 0  # (system, file) results taken whole from the cache in this run
        torch.set_num_threads(min(torch.get_num_threads(), judge_threads()))
        self._reference_embeddings: dict[Path, np.ndarray] = {}

    @cached_property
    def _judge_infos(self) -> dict[str, JudgeInfo | None]:
        """Loaded on first use, so worker processes (not the parent) load the judges they run."""
        return {g: self.judges.info(g) for g in self.groups}

    # ------------------------------------------------------------------ public
    def run(self, systems: Sequence[System], utterances: Sequence[Utterance]) -> list[dict[str, Any]]:
        """Evaluate everything; return one record per (system, file), failed ones included, system-major."""
        utterances = list(utterances)
        keys = file_keys(utterances)
        by_file: dict[int, list[dict[str, Any]]] = {}
        bar = tqdm(total=len(systems) * len(utterances), disable=not self.progress, unit="file", dynamic_ncols=True)
        for index, file_records, reused in self._evaluate_files(systems, utterances, keys):
            by_file[index] = file_records
            self.reused += reused
            bar.set_description(utterances[index].path.stem)
            bar.update(len(systems))
        bar.close()
        return [by_file[i][s] for s in range(len(systems)) for i in range(len(utterances))]

    def evaluate_file(self, system: System, utt: Utterance, key: str) -> dict[str, Any]:
        """One (system, file) record, from the cache where possible; errors are recorded, not raised."""
        try:
            return self._evaluate(system, utt, key)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # a crashed file must not stop the run: it is reported in the summary
            return {
                "system": system.name, "file": key, "path": str(utt.path), "speaker": utt.speaker,
                "seconds": utt.seconds, "metrics": {}, "error": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc(limit=4),
            }

    def evaluate_utterance(self, systems: Sequence[System], utt: Utterance, key: str) -> tuple[list[dict[str, Any]], int]:
        """Every system on one file (so its reference transcript and embedding are computed once);
        returns the records and how many came whole from the cache."""
        before = self.reused
        records = [self.evaluate_file(system, utt, key) for system in systems]
        reused, self.reused = self.reused - before, before
        return records, reused

    def _evaluate_files(self, systems: Sequence[System], utterances: list[Utterance],
                        keys: dict[Path, str]) -> Iterator[tuple[int, list[dict[str, Any]], int]]:
        """``(file index, records, reused)`` per file, in order, or as worker processes finish them."""
        if self.workers <= 1 or len(utterances) <= 1:
            for index, utt in enumerate(utterances):
                yield (index, *self.evaluate_utterance(systems, utt, keys[utt.path]))
            return
        yield from _evaluate_in_workers(self, systems, utterances, keys)

    def judge_infos(self) -> dict[str, dict[str, str]]:
        return {g: info.as_dict() for g, info in self._judge_infos.items() if info is not None}

    # ------------------------------------------------------------------ internals
    def _cache_path(self, system: System, key: str) -> Path:
        return self.out_dir / "cache" / system.name / f"{key}.json"

    def _audio_path(self, system: System, key: str) -> Path:
        return self.out_dir / "audio" / system.name / f"{key}.wav"

    def _evaluate(self, system: System, utt: Utterance, key: str) -> dict[str, Any]:
        cache_path, audio_path = self._cache_path(system, key), self._audio_path(system, key)
        source_sha = sha256_file(utt.path)
        record = _load_json(cache_path)
        valid = (
            record is not None
            and record.get("cache_version") == CACHE_VERSION
            and record.get("fingerprint") == system.fingerprint()
            and record.get("source_sha256") == source_sha
            and audio_path.is_file()
        )
        if not valid:
            record = self._reconstruct(system, utt, key, source_sha, audio_path)
        todo = [g for g in self.groups if not self._cached(record, g)]
        self.reused += valid and not todo
        if todo:
            ref, ref_rate = load_audio(utt.path)
            deg, deg_rate = load_audio(audio_path)
            pair = align(ref, ref_rate, deg, deg_rate, JUDGE_RATE)
            record["delay_ms"] = pair.delay_ms
            for group in todo:
                self._score(record, group, pair, utt)
            write_json_atomic(cache_path, record)
        return record

    def _reconstruct(self, system: System, utt: Utterance, key: str, source_sha: str, audio_path: Path) -> dict:
        wav, rate = load_audio(utt.path)
        out: Reconstruction = system.reconstruct(wav, rate)
        save_audio(audio_path, out.wav, out.sample_rate)
        seconds = wav.size / rate
        record: dict[str, Any] = {
            "cache_version": CACHE_VERSION, "system": system.name, "file": key, "path": str(utt.path),
            "speaker": utt.speaker, "seconds": seconds, "fingerprint": system.fingerprint(),
            "source_sha256": source_sha, "audio": str(audio_path.relative_to(self.out_dir)),
            "bits": out.bits, "kbps_disk": None if out.bits is None else out.bits / seconds / 1000.0,
            "metrics": {}, "judges": {}, "metric_errors": {},
        }
        if out.codes is not None:
            record["tokens"] = int(out.codes.size)
            record["token_hist"] = histogram(out.codes)
        return record

    def _cached(self, record: dict[str, Any], group: str) -> bool:
        """Scored before (successfully or with a recorded metric error) by the same judge."""
        info = self._judge_infos[group]
        return group in record["judges"] and record["judges"][group] == (info.as_dict() if info else None)

    def _score(self, record: dict[str, Any], group: str, pair: AlignedPair, utt: Utterance) -> None:
        info = self._judge_infos[group]
        record["metric_errors"].pop(group, None)
        for column in METRIC_GROUPS[group]:
            record["metrics"].pop(column, None)
        try:
            record["metrics"].update(SCORERS[group](self, pair, utt, record))
        except Exception as exc:  # e.g. PESQ's "no utterance detected" on a silent reconstruction
            record["metric_errors"][group] = f"{type(exc).__name__}: {exc}"
        record["judges"][group] = info.as_dict() if info else None

    # --- scorers (one per group) ---
    def _transcript(self, wav: np.ndarray) -> str:
        """Judge transcript, cached by audio content (so identity reuses the original's transcript)."""
        asr = self.judges.get("wer")
        digest = hashlib.sha256(np.ascontiguousarray(wav, dtype=np.float32).tobytes()).hexdigest()
        judge = hashlib.sha256(f"{asr.info.name}|{asr.info.sha256}".encode()).hexdigest()[:12]  # settings + weights
        path = self.out_dir / "cache" / "asr" / judge / f"{digest}.txt"
        if path.is_file():
            return path.read_text(encoding="utf-8")
        text = asr.transcribe(wav)
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return text

    def _score_wer(self, pair: AlignedPair, utt: Utterance, record: dict[str, Any]) -> dict[str, float]:
        ref_wav, _ = load_audio(utt.path, JUDGE_RATE)
        deg_wav, _ = load_audio(self.out_dir / record["audio"], JUDGE_RATE)
        hypothesis, judge_ref = self._transcript(deg_wav), self._transcript(ref_wav)
        record["asr"] = {"hypothesis": hypothesis, "transcript": utt.transcript, "judge_reference": judge_ref}
        values: dict[str, float] = {}
        counts: dict[str, list[int]] = {}
        scored = score_text(utt.transcript, hypothesis) if utt.transcript else None
        if scored is not None:
            values.update(wer=scored.wer, cer=scored.cer)
            counts.update(wer=[scored.word_errors, scored.words], cer=[scored.char_errors, scored.chars])
        versus_judge = score_text(judge_ref, hypothesis)
        if versus_judge is not None:
            values["dwer"] = versus_judge.wer
            counts["dwer"] = [versus_judge.word_errors, versus_judge.words]
        record["asr"]["counts"] = counts
        return values

    def _score_stoi(self, pair: AlignedPair, utt: Utterance, record: dict[str, Any]) -> dict[str, float]:
        return metrics.stoi_scores(pair)

    def _score_pesq(self, pair: AlignedPair, utt: Utterance, record: dict[str, Any]) -> dict[str, float]:
        return {"pesq_nb": metrics.pesq(pair, "nb"), "pesq_wb": metrics.pesq(pair, "wb")}

    def _score_sim(self, pair: AlignedPair, utt: Utterance, record: dict[str, Any]) -> dict[str, float]:
        """Cosine of speaker embeddings; the reference's (whole file: no alignment needed for an
        utterance-level embedding) is computed once per file and shared by every system."""
        judge = self.judges.get("sim")
        if utt.path not in self._reference_embeddings:
            self._reference_embeddings[utt.path] = judge.embed(load_audio(utt.path, judge.sample_rate)[0])
        a = self._reference_embeddings[utt.path]
        b = judge.embed(resample(pair.degraded, pair.sample_rate, judge.sample_rate))
        return {"sim": embedding_cosine(a, b)}

    def _score_dnsmos(self, pair: AlignedPair, utt: Utterance, record: dict[str, Any]) -> dict[str, float]:
        deg_wav, _ = load_audio(self.out_dir / record["audio"], JUDGE_RATE)
        return self.judges.get("dnsmos").score(deg_wav)

    def _score_mel(self, pair: AlignedPair, utt: Utterance, record: dict[str, Any]) -> dict[str, float]:
        return {"mel_distance": metrics.mel_distance(pair)}

    def _score_mcd(self, pair: AlignedPair, utt: Utterance, record: dict[str, Any]) -> dict[str, float]:
        return {"mcd": metrics.mcd(pair)}


Scorer = Callable[[Runner, AlignedPair, Utterance, dict], dict[str, float]]
SCORERS: dict[str, Scorer] = {
    "wer": Runner._score_wer, "stoi": Runner._score_stoi, "pesq": Runner._score_pesq, "sim": Runner._score_sim,
    "dnsmos": Runner._score_dnsmos, "mel": Runner._score_mel, "mcd": Runner._score_mcd,
}


#: What forked workers inherit: (runner, systems, utterances, keys). Set only while a pool runs.
_POOL_STATE: tuple[Runner, Sequence[System], list[Utterance], dict[Path, str]] | None = None


def _worker_start() -> None:
    """One thread per worker: the workers themselves are the parallelism."""
    set_judge_threads(1)
    torch.set_num_threads(1)


def _worker_file(index: int) -> tuple[int, list[dict[str, Any]], int]:
    assert _POOL_STATE is not None
    runner, systems, utterances, keys = _POOL_STATE
    utt = utterances[index]
    return (index, *runner.evaluate_utterance(systems, utt, keys[utt.path]))


def _evaluate_in_workers(runner: Runner, systems: Sequence[System], utterances: list[Utterance],
                         keys: dict[Path, str]) -> Iterator[tuple[int, list[dict[str, Any]], int]]:
    """Files spread over ``runner.workers`` forked processes.

    Forking shares the loaded systems without pickling them; judges load lazily inside each worker
    (the parent must not hold a CTranslate2/onnxruntime thread pool across a fork). Per-file cache
    records never collide, and the ASR transcript cache is content-addressed with atomic writes.
    """
    global _POOL_STATE
    for system in systems:  # load model weights once, before the fork, so every worker shares them
        getattr(system, "model", None)
    _POOL_STATE = (runner, systems, utterances, keys)
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(runner.workers, mp_context=context, initializer=_worker_start) as pool:
            futures = [pool.submit(_worker_file, i) for i in range(len(utterances))]
            for future in as_completed(futures):
                yield future.result()
    finally:
        _POOL_STATE = None


def file_keys(utterances: Iterable[Utterance]) -> dict[Path, str]:
    """Output name per file: its stem, plus a short path hash where two files share a stem."""
    utterances = list(utterances)
    stems = [u.path.stem for u in utterances]
    return {
        u.path: u.path.stem if stems.count(u.path.stem) == 1
        else f"{u.path.stem}-{hashlib.sha256(str(u.path).encode()).hexdigest()[:8]}"
        for u in utterances
    }


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None

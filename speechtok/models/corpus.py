"""Tokenizing a corpus, on one process, on ``torchrun`` ranks or on Ray actors: the same codes either way.

Every engine encodes with :class:`CorpusEncoder` (audio loaded at its own rate, resampled, batched by
padded duration, masked so that each item gets the codes of encoding it alone) and writes through a
token sink (:mod:`speechtok.data.token_sinks`) whose outputs appear atomically. A rerun of any engine
skips what the folder already holds, so a killed run loses at most the work in flight.

* ``local``: one process; Parquet shards are cut by size as rows come.
* ``torchrun``: rank ``r`` of ``W`` encodes every W-th pending item and writes ``shard-rank<r>-…``
  files; rank 0 writes the index once all ranks are done (gloo, no GPU needed).
* ``ray``: pending items are cut into fixed groups (``shard-ray<k>-…``, one file per group) and fed
  through Ray Data to ``workers`` actors, each loading the model once. A group whose file exists is
  skipped, so a rerun continues where a killed run stopped.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from ..audio import load_audio, resample
from ..bundled import CONFIG_FILE, load_checkpoint_kind, resolve
from ..data.token_sinks import (SHARD_PATTERN, NpySink, ParquetSink, TokenItem, TokenSink, parquet_shards,
                                write_parquet_index)
from ..errors import AudioError
from ..extras import optional_import
from ..fileio import write_json_atomic
from ..waveform import pad_batch

@dataclass(frozen=True)
class TokenizeJob:
    """What to tokenize and how; plain data, so it travels to torchrun ranks and Ray actors."""

    checkpoint: str
    out: Path
    format: str = "npy"  # "npy" or "parquet"
    batch_seconds: float = 120.0
    shard_bytes: float = 256 << 20
    device: str = "cpu"
    threads: int | None = None  # torch threads per process (None: torch's default)


Failure = tuple[str, str]  # (audio path, one-line reason)


def load_tokenizer(checkpoint: str, device: str = "cpu") -> Any:
    """The SiTok or HoliTok model of a checkpoint (verified by hash; any other kind, or no checkpoint,
    is refused by ``SiTok.from_pretrained`` in one line)."""
    from .holitok import HoliTok
    from .sitok import SiTok

    model_class = HoliTok if load_checkpoint_kind(checkpoint) == "holitok" else SiTok
    return model_class.from_pretrained(checkpoint, map_location=device)


def job_metadata(job: TokenizeJob, model: Any, source: str) -> dict[str, Any]:
    """What every output records: the tokenizer, its weights hash and its rates."""
    meta = json.loads((resolve(job.checkpoint) / CONFIG_FILE).read_text())
    continuous = meta["kind"] == "holitok"
    rates = ({"latent_rate": model.latent_rate, "latent_dim": model.latent_dim} if continuous
             else {"token_rate": model.token_rate, "bits_per_token": model.bits_per_token, "codebooks": model.codebooks})
    return {"tokenizer": job.checkpoint, "kind": meta["kind"], "weights_sha256": meta["weights"]["sha256"],
            "config_sha256": meta["config_sha256"], "model_sample_rate": model.sample_rate, **rates,
            "source": source, "format": job.format}


def write_job_record(job: TokenizeJob, metadata: dict[str, Any]) -> None:
    """``tokens.json``: which tokenizer wrote this folder, and how its files are laid out."""
    layout = ("size-bounded Parquet shards listed in index.json" if job.format == "parquet" else
              f"one {'float32 .npy [D' if metadata['kind'] == 'holitok' else 'int32 .npy [K'}, T'] per audio file,"
              " at <path below the corpus root>.npy")
    write_json_atomic(job.out / "tokens.json", {**metadata, "layout": layout})


def make_sink(job: TokenizeJob, metadata: dict[str, Any], *, prefix: str = "", index: bool = True) -> TokenSink:
    if job.format == "parquet":
        return ParquetSink(job.out, metadata, job.shard_bytes, prefix=prefix, index=index)
    return NpySink(job.out)


class CorpusEncoder:
    """Encodes items into a sink in padded batches of at most ``batch_seconds`` of audio."""

    def __init__(self, model: Any, batch_seconds: float) -> None:
        from .holitok import HoliTok

        self.model, self.batch_seconds = model, batch_seconds
        self.continuous = isinstance(model, HoliTok)

    def encode(self, items: list[TokenItem], sink: TokenSink,
               on_done: Callable[[int], None] = lambda n: None) -> list[Failure]:
        model, failures = self.model, []
        batch: list[tuple[TokenItem, np.ndarray, int]] = []  # (item, audio at the model rate, source rate)

        def flush() -> None:
            if not batch:
                return
            wav, lengths = pad_batch([w for _, w, _ in batch])
            # HoliTok is causal, so trailing padding cannot change an item's frames; SiTok masks it.
            codes = (model.encode(wav, model.sample_rate) if self.continuous
                     else model.encode(wav, model.sample_rate, lengths=lengths))
            for i, (item, w, rate) in enumerate(batch):
                frames = (model.num_latents(len(w), model.sample_rate) if self.continuous
                          else model.num_tokens(len(w), model.sample_rate))
                sink.write(item, token_array(codes[i, :, :frames]), len(w) / model.sample_rate, rate)
            on_done(len(batch))
            batch.clear()

        for item in items:
            try:
                wav, rate = load_audio(item.path)
            except AudioError as exc:
                failures.append((str(item.path), str(exc)))
                on_done(1)
                continue
            wav = resample(wav, rate, model.sample_rate)
            longest = max([len(wav)] + [len(w) for _, w, _ in batch])
            if batch and longest * (len(batch) + 1) > self.batch_seconds * model.sample_rate:
                flush()
            batch.append((item, wav, rate))
        flush()
        return failures


def token_array(codes: torch.Tensor) -> np.ndarray:
    """Codes as int32, latents as float32, ``[K or D, T']``."""
    array = codes.cpu().numpy()
    return array.astype(np.float32 if np.issubdtype(array.dtype, np.floating) else np.int32)


# ------------------------------------------------------------------------------------------ engines
def run_local(job: TokenizeJob, items: list[TokenItem], source: str, progress: Callable[[int, int], Any]) -> list[Failure]:
    """One process. ``progress(total, already_done)`` returns a tqdm-like bar."""
    model = load_tokenizer(job.checkpoint, job.device)
    metadata = job_metadata(job, model, source)
    sink = make_sink(job, metadata)
    write_job_record(job, metadata)
    done = sink.done()
    pending = [item for item in items if item.id not in done]
    bar = progress(len(items), len(items) - len(pending))
    try:
        return CorpusEncoder(model, job.batch_seconds).encode(pending, sink, bar.update)
    finally:
        sink.close()  # what was encoded is kept, even when a later file stops the run
        bar.close()


def run_torchrun(job: TokenizeJob, items: list[TokenItem], source: str,
                 progress: Callable[[int, int], Any]) -> list[Failure]:
    """This process's share of a ``torchrun`` job; every rank returns the failures of all ranks."""
    import torch.distributed as dist

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    model = load_tokenizer(job.checkpoint, job.device)
    metadata = job_metadata(job, model, source)
    sink = make_sink(job, metadata, prefix=f"rank{rank:03d}-", index=False)
    if rank == 0:
        write_job_record(job, metadata)
    done = sink.done()
    if world > 1:
        dist.barrier()  # every rank has read the same finished set before anyone writes
    pending = [item for item in items if item.id not in done][rank::world]
    bar = progress(len(pending), 0) if rank == 0 else tqdm(disable=True)
    try:
        failures = CorpusEncoder(model, job.batch_seconds).encode(pending, sink, bar.update)
    finally:
        sink.close()
        bar.close()
    gathered: list[list[Failure]] = [failures]
    if world > 1:
        gathered = [[] for _ in range(world)]
        dist.all_gather_object(gathered, failures)
    if rank == 0 and job.format == "parquet":
        write_parquet_index(job.out, metadata)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return [f for part in gathered for f in part]


def run_ray(job: TokenizeJob, items: list[TokenItem], source: str, workers: int, items_per_shard: int,
            progress: Callable[[int, int], Any]) -> list[Failure]:
    """Ray Data over groups of ``items_per_shard`` items, ``workers`` actors with one model each.

    Connects to the cluster in ``RAY_ADDRESS`` when set (``ray start --head`` on a cluster), else
    starts a local one with ``workers`` CPUs. Output paths must be on storage every node sees.
    """
    ray = optional_import("ray", "ray", "tokenize --engine ray")
    optional_import("ray.data", "ray", "tokenize --engine ray")
    model = load_tokenizer(job.checkpoint, job.device)
    metadata = job_metadata(job, model, source)
    del model  # the driver only needed the rates; actors load their own copy
    done = make_sink(job, metadata, index=False).done()
    write_job_record(job, metadata)
    groups = [items[i: i + items_per_shard] for i in range(0, len(items), items_per_shard)]
    finished_groups = {m for m in (_ray_group(p) for p in parquet_shards(job.out)) if m is not None}
    todo = [(k, [item for item in group if item.id not in done]) for k, group in enumerate(groups)
            if k not in finished_groups]
    todo = [(k, group) for k, group in todo if group]
    bar = progress(len(items), len(items) - sum(len(g) for _, g in todo))
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), num_cpus=None if os.environ.get("RAY_ADDRESS") else workers,
                 include_dashboard=False, log_to_driver=False, configure_logging=False)
    failures: list[Failure] = []
    try:
        if todo:
            dataset = ray.data.from_items([{"group": k, "items": json.dumps([_item_json(i) for i in group])}
                                           for k, group in todo], override_num_blocks=len(todo))
            results = dataset.map_batches(_RayShardWriter, fn_constructor_kwargs={"job": job, "metadata": metadata},
                                          batch_size=1, concurrency=workers, num_cpus=1)
            for row in results.iter_rows():
                failures.extend(tuple(f) for f in json.loads(row["failures"]))
                bar.update(int(row["items"]))
    finally:
        bar.close()
    if job.format == "parquet":
        write_parquet_index(job.out, metadata)
    return failures


class _RayShardWriter:
    """A Ray actor: loads the model once, then encodes one group of items per call into its own file."""

    def __init__(self, job: TokenizeJob, metadata: dict[str, Any]) -> None:
        if job.threads:
            torch.set_num_threads(job.threads)
        # One file per group, written at close: the whole group appears atomically or not at all.
        self.job, self.metadata = dataclasses.replace(job, shard_bytes=math.inf), metadata
        self.encoder = CorpusEncoder(load_tokenizer(job.checkpoint, job.device), job.batch_seconds)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        group, items = int(batch["group"][0]), [TokenItem(**{**d, "path": Path(d["path"])})
                                                 for d in json.loads(str(batch["items"][0]))]
        sink = make_sink(self.job, self.metadata, prefix=f"ray{group:05d}-", index=False)
        failures = self.encoder.encode(items, sink)
        sink.close()
        return {"group": np.array([group]), "items": np.array([len(items)]),
                "failures": np.array([json.dumps(failures)])}


def _item_json(item: TokenItem) -> dict[str, str]:
    return {"id": item.id, "path": str(item.path), "speaker": item.speaker, "transcript": item.transcript}


def _ray_group(shard: Path) -> int | None:
    """The group number of a shard written by a Ray actor (prefix ``ray<group>-``), else None."""
    group = re.fullmatch(r"ray(\d{5})-", SHARD_PATTERN.match(shard.name)["prefix"])
    return int(group[1]) if group else None

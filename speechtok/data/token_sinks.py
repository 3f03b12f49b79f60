"""Where ``speechtok tokenize`` puts tokens: one ``.npy`` per utterance, or size-bounded Parquet shards.

Both are resumable in the same way: a sink says which utterance ids it already holds, and a rerun
encodes only the others. Everything a sink writes appears atomically, so a killed run loses at most
what was still in memory (the current Parquet shard's rows), never a file's integrity.

Parquet shards are what LM pipelines read: one row per utterance with ``id``, ``codes`` (a list of
``K`` lists of ``T'`` ints, or ``D`` lists of floats for continuous latents), ``num_tokens``,
``duration``, ``sample_rate`` (of the source file), ``speaker``, ``transcript`` and ``path``; the
file metadata (key ``speechtok``) records the tokenizer, its weights hash and rates. ``index.json``
lists the shards. They load with ``pyarrow.parquet.read_table`` or Hugging Face
``datasets.load_dataset("parquet", data_files=".../shard-*.parquet")``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import DataError
from ..extras import optional_import
from ..fileio import atomic_path, write_json_atomic

#: ``shard-<prefix><number>.parquet``: the prefix keeps writers apart (a torchrun rank, a Ray shard).
SHARD_PATTERN = re.compile(r"^shard-(?P<prefix>[\w-]*?)(?P<number>\d{5})\.parquet$")


@dataclass(frozen=True)
class TokenItem:
    """One utterance to tokenize: its id (the path below the corpus root, without suffix) and metadata."""

    id: str
    path: Path
    speaker: str = ""
    transcript: str = ""


class TokenSink(Protocol):
    def done(self) -> set[str]: ...

    def write(self, item: TokenItem, codes: np.ndarray, duration: float, sample_rate: int) -> None: ...

    def close(self) -> None: ...


class NpySink:
    """``OUT/<id>.npy`` per utterance: int32 ``[K, T']`` codes or float32 ``[D, T']`` latents."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def target(self, item: TokenItem) -> Path:
        return self.out / f"{item.id}.npy"

    def done(self) -> set[str]:
        return {p.relative_to(self.out).with_suffix("").as_posix() for p in self.out.rglob("*.npy")}

    def write(self, item: TokenItem, codes: np.ndarray, duration: float, sample_rate: int) -> None:
        with atomic_path(self.target(item)) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, codes)

    def close(self) -> None:
        pass


def _pyarrow() -> tuple[Any, Any]:
    return (optional_import("pyarrow", "parquet", "tokenize --format parquet"),
            optional_import("pyarrow.parquet", "parquet", "tokenize --format parquet"))


def parquet_shards(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("shard-*.parquet") if SHARD_PATTERN.match(p.name))


def write_parquet_index(out: Path, metadata: dict[str, Any]) -> dict[str, Any]:
    """``index.json``: every shard of the folder with its row count (written by one process)."""
    _, pq = _pyarrow()
    shards = [{"file": p.name, "rows": pq.read_metadata(p).num_rows} for p in parquet_shards(out)]
    index = {**metadata, "shards": shards, "rows": sum(s["rows"] for s in shards)}
    write_json_atomic(out / "index.json", index)
    return index


class ParquetSink:
    """Rows gathered in memory and written as ``shard-<prefix>NNNNN.parquet`` once they reach
    ``shard_bytes``. Every shard already in the folder counts as done, whoever wrote it."""

    def __init__(self, out: Path, metadata: dict[str, Any], shard_bytes: float = 256 << 20, *,
                 prefix: str = "", index: bool = True) -> None:
        self.pa, self.pq = _pyarrow()
        if shard_bytes <= 0:
            raise DataError(f"shard size must be positive, got {shard_bytes} bytes")
        self.out, self.metadata, self.shard_bytes, self.prefix, self.index = out, metadata, shard_bytes, prefix, index
        self.rows: list[dict[str, Any]] = []
        self.pending_bytes = 0
        for shard in parquet_shards(out):
            recorded = json.loads((self.pq.read_schema(shard).metadata or {}).get(b"speechtok", b"{}"))
            if recorded.get("weights_sha256") != metadata.get("weights_sha256"):
                raise DataError(f"{shard}: written by another tokenizer ({recorded.get('tokenizer')}); "
                                "use a new output folder")

    def done(self) -> set[str]:
        ids: set[str] = set()
        for shard in parquet_shards(self.out):
            ids.update(self.pq.read_table(shard, columns=["id"]).column("id").to_pylist())
        return ids

    def write(self, item: TokenItem, codes: np.ndarray, duration: float, sample_rate: int) -> None:
        self.rows.append({"id": item.id, "codes": codes.tolist(), "num_tokens": int(codes.shape[-1]),
                          "duration": float(duration), "sample_rate": int(sample_rate), "speaker": item.speaker,
                          "transcript": item.transcript, "path": str(item.path)})
        self.pending_bytes += codes.nbytes + 64 + len(item.transcript)
        if self.pending_bytes >= self.shard_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        mine = [SHARD_PATTERN.match(p.name) for p in parquet_shards(self.out)]
        number = 1 + max((int(m["number"]) for m in mine if m["prefix"] == self.prefix), default=-1)
        table = self.pa.Table.from_pylist(self.rows).replace_schema_metadata(
            {"speechtok": json.dumps(self.metadata, sort_keys=True)})
        with atomic_path(self.out / f"shard-{self.prefix}{number:05d}.parquet") as tmp:
            self.pq.write_table(table, tmp)
        self.rows, self.pending_bytes = [], 0
        if self.index:
            write_parquet_index(self.out, self.metadata)

    def close(self) -> None:
        self.flush()

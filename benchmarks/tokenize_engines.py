"""Tokenize one corpus with every engine and check they agree: local, Ray with 1 and 2 workers.

    python benchmarks/tokenize_engines.py [--manifest data/splits/train.tsv] [--files 500] [--out runs/engines]

Takes ``--files`` utterances spread evenly over the manifest, runs ``speechtok tokenize --format
parquet`` with each engine into a fresh folder, reads the shards back with pyarrow, asserts that every
engine wrote exactly the single-process codes (each utterance once), and prints a markdown table of
wall time and throughput (× real time). Throughput depends on what else the machine runs; compare
the rows of one table, not tables of different machines.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from speechtok.cli import main as cli
from speechtok.data.manifest import read_manifest, write_manifest


def codes_of(folder: Path) -> dict[str, list]:
    table = pq.read_table(sorted(folder.glob("shard-*.parquet")), columns=["id", "codes"])
    ids = table.column("id").to_pylist()
    if len(ids) != len(set(ids)):
        sys.exit(f"error: {folder} holds an utterance twice")
    return dict(zip(ids, table.column("codes").to_pylist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", default="data/splits/train.tsv")
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--checkpoint", default="sitok-default")
    parser.add_argument("--out", default="runs/engines")
    args = parser.parse_args()

    rows = read_manifest(args.manifest)
    step = max(1, len(rows) // args.files)
    chosen = rows[::step][: args.files]
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    manifest = write_manifest(out / "corpus.tsv", chosen)
    seconds = sum(r.seconds for r in chosen)
    runs = [("local", []), ("ray, 1 worker", ["--engine", "ray", "--workers", "1", "--items-per-shard", "50"]),
            ("ray, 2 workers", ["--engine", "ray", "--workers", "2", "--items-per-shard", "50"])]
    table, reference = [], None
    for name, extra in runs:
        folder = out / name.replace(", ", "-").replace(" ", "")
        start = time.perf_counter()
        code = cli(["tokenize", str(manifest), "-o", str(folder), "--checkpoint", args.checkpoint,
                    "--format", "parquet", *extra])
        wall = time.perf_counter() - start
        if code != 0:
            sys.exit(f"error: {name} exited {code}")
        codes = codes_of(folder)
        reference = reference or codes
        same = codes == reference
        table.append(f"| {name} | {len(codes)} | {wall:.1f} | {seconds / wall:.0f} | {'yes' if same else 'NO'} |")
        if not same:
            sys.exit(f"error: {name} wrote different codes from the single-process run")
    print(f"{len(chosen)} files, {seconds / 60:.1f} min of audio from {args.manifest}, {args.checkpoint}\n")
    print("| engine | utterances | wall s (incl. start-up) | × real time | codes equal to local |")
    print("|---|---|---|---|---|")
    print("\n".join(table))


if __name__ == "__main__":
    main()

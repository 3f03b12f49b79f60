"""Side-by-side CPU speed and memory of speechtok's tokenizers and peer codecs, in one command.

    python benchmarks/side_by_side.py [--threads 1 2] [--durations 1 10 60] [--systems ...]
                                      [--repeats 3] [--budget 60] [--quick] [-o docs/performance.md]

Systems: sitok-default (bundled checkpoint, its default decode: configured steps and CFG, then its
Vocos vocoder), holitok-small and holitok-base (presets with random weights: none is bundled), and
the peers Mimi (8 codebooks), EnCodec 24 kHz (6 kbps = 8 codebooks) and DAC 24 kHz (32 codebooks),
built from ``transformers`` configs with random weights (``pip install -c constraints.txt -e
".[bench]"``; nothing is downloaded: weights do not change the arithmetic). A peer whose package is
missing is listed as skipped with the reason.

Input is real speech (speechtok/assets, 16 kHz) looped and cut to each duration, batch 1; every
system resamples it inside its timed encode, as a user would call it (speechtok models do it in
``encode``; for the peers the script resamples with soxr, as speechtok does). ``x RT`` = audio seconds
/ wall seconds (higher is faster), the median of up to --repeats runs after one warm-up run on a 1 s
clip; the repeats of one phase stop early once they have taken --budget seconds, and a duration over
10 s is skipped when the one before predicts a single call over --budget (the table says so).

Peak memory: each (system, threads) pair runs in a fresh subprocess. Before each timed phase the
worker frees what it can (``gc.collect``, glibc ``malloc_trim``), reads its resident set (VmRSS) and
resets the kernel's high-water mark (``5 > /proc/self/clear_refs``); after the phase it reads VmHWM.
The figure is VmHWM - VmRSS: the working memory the phase added on top of the loaded model (Linux
only; elsewhere it is left blank). tracemalloc would miss torch's allocations.

Writes the table between ``<!-- side-by-side:begin -->`` and ``<!-- side-by-side:end -->`` in the
--doc file (created when absent); nothing outside the markers changes.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # time the checkout this script sits in, not another installed copy
from speechtok.fileio import atomic_path  # noqa: E402  (torch-free)
BEGIN, END = "<!-- side-by-side:begin -->", "<!-- side-by-side:end -->"
DOC = ROOT / "docs" / "performance.md"
DOC_INTRO = """# Performance

Speed and memory of speechtok's models on CPU, measured with the scripts in `benchmarks/`. Each
section says the command, the machine and its load; compare rows of one table, not tables of
different machines.
"""
#: The issue 16 statement's figures (x real time, 2 threads, 10 s of speech), the "before" column.
BEFORE = {"sitok-default": (68, 26), "holitok-base": (7.1, 0.20), "holitok-small": (82, 8.3),
          "mimi": (17.5, 14.6), "encodec-24k": (20.4, 16.7), "dac-24k": (1.7, 0.95)}
PEER_EXTRA = "bench"
ALWAYS_MEASURED = 10.0  # seconds: durations up to this are never skipped (the docs compare at 10 s)


@dataclass(frozen=True)
class Codec:
    """One system as a user calls it: audio ``[1, 1, T]`` at any rate -> codes -> audio."""

    encode: Callable[[Any, int], Any]
    decode: Callable[[Any], Any]
    params: int


@dataclass(frozen=True)
class System:
    name: str
    requires: str | None  # the module a peer needs; None for speechtok's own models
    build: Callable[[], Codec]
    about: str


def _params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def _sitok(source: str, *, preset: bool = False) -> Codec:
    from speechtok.models.sitok import SiTok

    model = SiTok.from_preset(source).eval() if preset else SiTok.from_pretrained(source)
    if preset:
        model.attach_vocoder("vocos-24k")
    return Codec(model.encode, model.decode, _params(model))


def _holitok(preset: str, *, bfloat16: bool = False) -> Codec:
    import torch

    from speechtok.models.holitok import HoliTok

    model = HoliTok.from_preset(preset).eval()
    dtype = torch.bfloat16 if bfloat16 else None
    return Codec(model.encode, lambda latents: model.decode(latents, dtype=dtype), _params(model))


def _resampled(wav: Any, rate: int, target: int) -> Any:
    """What a peer's user does first: soxr to the codec's rate (the resampler speechtok uses)."""
    import torch

    from speechtok.audio import resample

    return torch.from_numpy(resample(wav[0, 0].numpy(), rate, target))[None, None]


def _transformers() -> Any:
    from speechtok.extras import optional_import

    return optional_import("transformers", PEER_EXTRA, "the peer codecs (Mimi, EnCodec, DAC)")


def _mimi() -> Codec:
    tf = _transformers()
    model = tf.MimiModel(tf.MimiConfig()).eval()
    rate = model.config.sampling_rate
    return Codec(lambda wav, sr: model.encode(_resampled(wav, sr, rate), num_quantizers=8).audio_codes,
                 lambda codes: model.decode(codes).audio_values, _params(model))


def _encodec() -> Codec:
    tf = _transformers()
    model = tf.EncodecModel(tf.EncodecConfig()).eval()  # the defaults are encodec_24khz
    rate = model.config.sampling_rate
    return Codec(lambda wav, sr: model.encode(_resampled(wav, sr, rate), bandwidth=6.0),
                 lambda out: model.decode(out.audio_codes, out.audio_scales).audio_values, _params(model))


def _dac() -> Codec:
    tf = _transformers()  # descript/dac_24khz: hop 320 = 2*4*5*8, 32 codebooks of 1024
    model = tf.DacModel(tf.DacConfig(downsampling_ratios=[2, 4, 5, 8], n_codebooks=32, sampling_rate=24000)).eval()
    rate = model.config.sampling_rate
    return Codec(lambda wav, sr: model.encode(_resampled(wav, sr, rate)).audio_codes,
                 lambda codes: model.decode(audio_codes=codes).audio_values, _params(model))


SYSTEMS: dict[str, System] = {s.name: s for s in [
    System("sitok-default", None, lambda: _sitok("sitok-default"), "bundled checkpoint, default decode + vocos-24k"),
    System("holitok-small", None, lambda: _holitok("holitok-small"), "preset, random weights"),
    System("holitok-base", None, lambda: _holitok("holitok-base"), "preset (paper size), random weights"),
    System("holitok-small-istft", None, lambda: _holitok("holitok-small-istft"),
           "holitok-small with the iSTFT decoder head (a documented deviation), random weights"),
    System("holitok-base-bf16", None, lambda: _holitok("holitok-base", bfloat16=True),
           "holitok-base decoding in bfloat16 (`decode(latents, dtype=torch.bfloat16)`)"),
    System("mimi", "transformers", _mimi, "transformers MimiModel, 8 codebooks, random weights"),
    System("encodec-24k", "transformers", _encodec, "transformers EncodecModel 24 kHz, 6 kbps, random weights"),
    System("dac-24k", "transformers", _dac, "transformers DacModel 24 kHz, 32 codebooks, random weights"),
    # Tiny configs for the smoke test (not in the default list).
    System("sitok-tiny", None, lambda: _sitok("sitok-tiny", preset=True), "preset, random weights + vocos-24k"),
    System("holitok-tiny", None, lambda: _holitok("holitok-tiny"), "preset, random weights"),
]}
DEFAULT_SYSTEMS = ["sitok-default", "holitok-small", "holitok-base", "mimi", "encodec-24k", "dac-24k"]


def missing_requirement(system: System) -> str | None:
    """Why ``system`` cannot run here (its package is not installed), or None."""
    if system.requires and importlib.util.find_spec(system.requires) is None:
        return f"'{system.requires}' not installed (pip install -c constraints.txt -e \".[{PEER_EXTRA}]\")"
    return None


# ---- the worker: one fresh process per (system, threads) ------------------------------------------

def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _start_peak() -> int | None:
    """Free what the allocator holds, then reset the high-water mark; returns VmRSS (kB) or None."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return _status_kb("VmRSS")


def _peak_mb(start: int | None) -> float | None:
    peak = _status_kb("VmHWM")
    return None if start is None or peak is None else max(0, peak - start) / 1024


def _phase(fn: Callable[[], Any], repeats: int, budget: float) -> tuple[dict[str, Any], Any]:
    """Median wall and CPU seconds over up to ``repeats`` runs (stopping once they took ``budget`` s),
    the run count and the peak working memory (MB); and the last result."""
    start = _start_peak()
    wall: list[float] = []
    cpu: list[float] = []
    result = None
    while len(wall) < repeats and (not wall or sum(wall) < budget):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"s": statistics.median(wall), "cpu_s": statistics.median(cpu), "runs": len(wall),
            "mb": _peak_mb(start)}, result


def speech(seconds: float) -> tuple[Any, int]:
    """The bundled speech sample looped and cut to ``seconds``, ``[1, 1, T]`` at its own rate."""
    import soundfile as sf
    import torch

    from speechtok.assets import SAMPLE_SPEECH

    wav, rate = sf.read(str(SAMPLE_SPEECH), dtype="float32", always_2d=True)
    wav = torch.from_numpy(wav.mean(axis=1))
    n = int(round(seconds * rate))
    return wav.repeat(n // len(wav) + 1)[:n][None, None].contiguous(), rate


def worker(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Measure one system at one thread count over ascending durations; yields one row per duration."""
    import torch

    from speechtok.allocator import retain_freed_memory

    retain_freed_memory()  # as the speechtok command does; every system in this process gains from it
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    codec = SYSTEMS[spec["system"]].build()
    base = {"system": spec["system"], "threads": spec["threads"], "params": codec.params}
    clip, rate = speech(1.0)
    skip, previous, slowest = None, 0.0, 0.0
    for seconds in sorted(spec["durations"]):
        if not skip and previous and seconds > ALWAYS_MEASURED and slowest * seconds / previous > spec["budget"]:
            skip = (f"skipped: the {previous:g} s run predicts {slowest * seconds / previous:.0f} s a call "
                    f"(budget {spec['budget']:g} s)")
        if skip:
            yield {**base, "seconds": seconds, "skipped": skip}
            continue
        wav, rate = speech(seconds)
        with torch.inference_mode():
            codec.decode(codec.encode(clip, rate))  # warm-up: one-time initialisation, not timed
            enc, codes = _phase(lambda: codec.encode(wav, rate), spec["repeats"], spec["budget"])
            dec, _ = _phase(lambda: codec.decode(codes), spec["repeats"], spec["budget"])
        yield {**base, "seconds": seconds, **{f"encode_{k}": v for k, v in enc.items()},
               **{f"decode_{k}": v for k, v in dec.items()}}
        previous, slowest = seconds, max(enc["s"], dec["s"])


# ---- the parent: schedule workers, write the table ------------------------------------------------

def run_all(systems: list[str], threads: list[int], durations: list[float], repeats: int, budget: float,
            publish: Callable[[list[dict[str, Any]]], object]) -> list[dict[str, Any]]:
    """Every (system, threads) pair in a fresh worker process, in the order of ``threads`` then
    ``systems``; ``publish`` gets the rows so far after each pair (so an interrupted run keeps them)."""
    from tqdm import tqdm

    rows: list[dict[str, Any]] = []
    jobs = [(s, t) for t in threads for s in systems]
    bar = tqdm(total=len(jobs) * len(durations), unit="run")
    for name, n in jobs:
        bar.set_description(f"{name} x{n}")
        reason = missing_requirement(SYSTEMS[name])
        if reason:
            rows += [{"system": name, "threads": n, "seconds": s, "skipped": reason} for s in sorted(durations)]
            bar.update(len(durations))
            publish(rows)
            continue
        spec = {"system": name, "threads": n, "durations": durations, "repeats": repeats, "budget": budget}
        env = {**os.environ, "OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n)}
        proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        done = 0
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("{"):
                rows.append(json.loads(line))
                done += 1
                bar.update(1)
        err = proc.stderr.read()  # type: ignore[union-attr]
        if proc.wait() != 0:
            last = (err.strip().splitlines() or ["no output"])[-1]
            rows += [{"system": name, "threads": n, "seconds": s, "skipped": f"failed: {last}"}
                     for s in sorted(durations)[done:]]
            bar.update(len(durations) - done)
        publish(rows)
    bar.close()
    return rows


def _x(seconds: float, wall: float) -> str:
    ratio = seconds / wall
    return f"{ratio:.3g}" if ratio < 100 else f"{ratio:.0f}"


def _mb(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def machine() -> str:
    """CPU model, the vector extensions that matter for torch on CPU, and the software versions."""
    import torch

    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    wanted = ["avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8"]
    has = [f for f in wanted if f in flags]
    amx = "AMX" if any(f.startswith("amx") for f in has) else "no AMX"
    versions = f"torch {torch.__version__}"
    if importlib.util.find_spec("transformers"):
        import transformers

        versions += f", transformers {transformers.__version__}"
    listed = " ".join(has) or "none of " + ", ".join(wanted)
    return f"{model}, {os.cpu_count()} logical CPUs, flags: {listed} ({amx}); {versions}"


def render(rows: list[dict[str, Any]], *, command: str, threads: list[int], load: tuple[str, str],
           note: str = "") -> str:
    """The markdown section (without the markers)."""
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Side by side: speechtok and peer codecs (CPU)", "",
        f"Measured {date} on {machine()}; torch threads: {', '.join(map(str, threads))} "
        f"(`torch.set_num_threads`), batch 1. Load average (1 min) at the start / end: {load[0]} / {load[1]}.",
        "", f"    {command}", "",
        "x RT = seconds of audio / wall seconds (higher is faster), median of the timed runs (count in "
        "brackets) after a 1 s warm-up; each encode resamples the 16 kHz speech input itself. x RT/CPU = "
        "seconds of audio / CPU seconds of the process (all its threads): on a shared machine it is the "
        "steadier figure, and at 1 thread it estimates the wall-clock speed of an idle core. Peak MB = "
        "the most resident memory a phase added above the loaded model (VmHWM reset per phase, one fresh "
        "process per system and thread count). Peers (Mimi, EnCodec, DAC) run with random weights from "
        "`transformers` configs, as do the HoliTok presets; weights do not change the arithmetic. "
        "**The docs claim ratios between systems, not absolute seconds**, which depend on the machine "
        "and its load.", "",
    ]
    if note:
        lines += [note, ""]
    lines += ["| system | params | threads | audio | encode x RT | decode x RT | encode x RT/CPU | decode x RT/CPU "
              "| encode peak MB | decode peak MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        head = f"| {r['system']} | {r['params'] / 1e6:.1f} M" if "params" in r else f"| {r['system']} | –"
        head += f" | {r['threads']} | {r['seconds']:g} s"
        if "skipped" in r:
            lines.append(f"{head} | {r['skipped']} | | | | | |")
        else:
            lines.append(f"{head} | {_x(r['seconds'], r['encode_s'])} ({r['encode_runs']}) | "
                         f"{_x(r['seconds'], r['decode_s'])} ({r['decode_runs']}) | "
                         f"{_x(r['seconds'], r['encode_cpu_s'])} | {_x(r['seconds'], r['decode_cpu_s'])} | "
                         f"{_mb(r['encode_mb'])} | {_mb(r['decode_mb'])} |")
    named = dict.fromkeys(r["system"] for r in rows)
    lines += ["", "Systems: " + "; ".join(f"**{name}**: {SYSTEMS[name].about}" for name in named) + "."]
    at10 = {(r["system"], r["threads"]): r for r in rows if r["seconds"] == 10 and "encode_s" in r}
    if any(threads == 2 for _, threads in at10):
        lines += ["", "Before and now at 10 s (x RT). \"Before\" = the figures quoted in the issue 16 statement "
                  "(2 threads, 10 s, wall clock); \"now\" = this run's 2-thread wall-clock x RT and, the steadier "
                  "figure under load, its 1-thread x RT per CPU second.", "",
                  "| system | encode before | encode now | encode now, 1 thread /CPU | decode before | decode now "
                  "| decode now, 1 thread /CPU |", "|---|---|---|---|---|---|---|"]
        for name in dict.fromkeys(r["system"] for r in rows):
            two, one = at10.get((name, 2)), at10.get((name, 1))
            enc, dec = BEFORE.get(name, ("–", "–"))

            def cell(row: dict[str, Any] | None, key: str) -> str:
                return _x(10, row[key]) if row else "–"

            lines.append(f"| {name} | {enc} | {cell(two, 'encode_s')} | {cell(one, 'encode_cpu_s')} | {dec} | "
                         f"{cell(two, 'decode_s')} | {cell(one, 'decode_cpu_s')} |")
    return "\n".join(lines)


def doc_text(doc: Path) -> str:
    """``doc``'s text (the intro when absent), refused unless it holds no markers or one ordered pair."""
    from speechtok.errors import SpeechtokError

    text = doc.read_text() if doc.exists() else DOC_INTRO
    pairs = text.count(BEGIN)
    if pairs != text.count(END) or pairs > 1 or (pairs and text.index(END) < text.index(BEGIN)):
        raise SpeechtokError(f"{doc}: expected one '{BEGIN}' ... '{END}' pair")
    return text


def write_section(doc: Path, section: str) -> None:
    """Replace what lies between the markers in ``doc`` (appending them, or creating ``doc``, when
    absent), atomically; every byte outside the markers is kept."""
    text = doc_text(doc)
    block = f"{BEGIN}\n{section}\n{END}"
    if BEGIN in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with atomic_path(doc) as tmp:
        tmp.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--durations", type=float, nargs="+", default=[1.0, 10.0, 60.0], metavar="SECONDS")
    parser.add_argument("--systems", nargs="+", default=DEFAULT_SYSTEMS, choices=list(SYSTEMS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=60.0,
                        help="seconds: stop repeating a phase after this long; skip a longer duration when a "
                             "shorter one predicts a call over it")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 thread, 1 s, 1 run, 10 s budget")
    parser.add_argument("--note", default="", help="a line printed above the table (e.g. the load conditions)")
    parser.add_argument("-o", "--doc", type=Path, default=DOC)
    parser.add_argument("--save-rows", type=Path, help="also write the raw measurements here (JSON)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        for row in worker(json.loads(args.worker)):
            print(json.dumps(row), flush=True)
        return 0
    if args.quick:
        args.threads, args.durations, args.repeats, args.budget = [1], [1.0], 1, 10.0
    if min(args.threads) < 1 or min(args.durations) <= 0 or args.repeats < 1 or args.budget <= 0:
        parser.error("--threads and --repeats must be >= 1, --durations and --budget > 0")
    from speechtok.errors import SpeechtokError

    try:
        doc_text(args.doc)  # a broken doc is refused before the measurements, not after
    except (SpeechtokError, OSError) as exc:
        parser.error(str(exc))
    command = (f"python benchmarks/side_by_side.py --threads {' '.join(map(str, args.threads))} --durations "
               f"{' '.join(f'{d:g}' for d in args.durations)} --systems {' '.join(args.systems)} "
               f"--repeats {args.repeats} --budget {args.budget:g}")
    start_load = f"{os.getloadavg()[0]:.2f}"

    def publish(rows: list[dict[str, Any]]) -> str:
        if args.save_rows:
            with atomic_path(args.save_rows) as tmp:
                tmp.write_text(json.dumps(rows, indent=1) + "\n")
        section = render(rows, command=command, threads=args.threads,
                         load=(start_load, f"{os.getloadavg()[0]:.2f}"), note=args.note)
        write_section(args.doc, section)
        return section

    print(publish(run_all(args.systems, args.threads, args.durations, args.repeats, args.budget, publish)))
    print(f"\nwrote {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build the training data recipe: the real-speech split plus espeak-ng synthetic speech.

    python scripts/make_training_data.py [--minutes 60] [--seed 0] [--out data]

1. Runs the speaker-disjoint real-speech split (``scripts/make_splits.py``): data/splits/train.tsv
   and dev.tsv.
2. Synthesises ``--minutes`` of English speech with espeak-ng into data/synthetic/ (git-ignored):
   many voices (7 English accents × 11 voice variants), speaking rates 120–220 wpm and pitches
   20–80, each utterance with its exact transcript. Texts are Faker's en_US sentences, never a
   development transcript; the synthetic voices are not evaluation speakers.
3. Writes data/splits/train+synthetic.tsv and prints a table of hours, speakers, transcribed
   share and native sample rates per source (copied into docs/training.md).

Everything is seeded: the same espeak-ng and Faker versions give the same files.
"""
from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import soundfile as sf

from speechtok.data.manifest import Utterance, read_manifest, write_manifest

ROOT = Path(__file__).resolve().parents[1]
ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4")


def synthesise(out: Path, minutes: float, seed: int) -> list[Utterance]:
    try:
        from faker import Faker
    except ImportError:
        sys.exit("error: the synthetic text needs Faker: pip install 'speechtok[data]'")
    if shutil.which("espeak-ng") is None:
        sys.exit("error: espeak-ng not installed (apt-get install espeak-ng)")
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows, total, index = [], 0.0, 0
    while total < minutes * 60:
        voice = f"{rng.choice(ACCENTS)}+{rng.choice(VARIANTS)}"
        speed, pitch = rng.randint(120, 220), rng.randint(20, 80)
        text = " ".join(fake.sentences(nb=rng.randint(1, 3)))
        path = out / f"synth_{index:05d}.wav"
        if not path.is_file():
            tmp = path.with_suffix(".tmp.wav")
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(tmp), text],
                           check=True, capture_output=True)
            tmp.replace(path)
        seconds = sf.info(str(path)).duration
        rows.append(Utterance(path.resolve(), seconds, f"espeak-{voice}", text))
        total += seconds
        index += 1
    write_manifest(out / "manifest.tsv", rows)
    return rows


def source_table(rows: list[Utterance]) -> str:
    """Markdown: one line per source folder with hours, speakers, transcribed share and sample rates."""
    groups: dict[str, list[Utterance]] = defaultdict(list)
    for r in rows:
        groups[r.path.parent.name].append(r)
    lines = ["| source | utterances | hours | speakers | transcribed | sample rate (Hz) |",
             "|---|---|---|---|---|---|"]
    for name, items in sorted(groups.items()):
        rates = sorted({sf.info(str(r.path)).samplerate for r in items[:: max(1, len(items) // 50)]})
        lines.append(f"| {name} | {len(items)} | {sum(r.seconds for r in items) / 3600:.2f} |"
                     f" {len({r.speaker for r in items})} | {sum(1 for r in items if r.transcript) / len(items):.0%} |"
                     f" {', '.join(map(str, rates))} |")
    lines.append(f"| **all** | {len(rows)} | {sum(r.seconds for r in rows) / 3600:.2f} |"
                 f" {len({r.speaker for r in rows})} | {sum(1 for r in rows if r.transcript) / len(rows):.0%} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="synthetic speech to make (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "data"))
    args = parser.parse_args()
    out = Path(args.out)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_splits.py"), "--out", str(out / "splits")], check=True)
    train = read_manifest(out / "splits" / "train.tsv")
    dev = read_manifest(out / "splits" / "dev.tsv")
    synthetic = synthesise(out / "synthetic", args.minutes, args.seed)
    dev_texts = {r.transcript.lower() for r in dev if r.transcript}
    assert not any(r.transcript.lower() in dev_texts for r in synthetic), "a synthetic text repeats a dev transcript"
    assert not {r.speaker for r in train + synthetic} & {r.speaker for r in dev}, "speaker overlap with dev"
    path = write_manifest(out / "splits" / "train+synthetic.tsv", train + synthetic)
    print(f"{path}: {len(train) + len(synthetic)} utterances\n")
    print("training data:\n" + source_table(train + synthetic) + "\n")
    print("development data (evaluation only):\n" + source_table(dev))


if __name__ == "__main__":
    main()

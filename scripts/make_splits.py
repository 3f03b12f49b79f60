"""Build the development split of the real speech in ../shared/data (speaker-disjoint).

    python scripts/make_splits.py [--data ../shared/data] [--out data/splits]

train.tsv: 231 of the 251 LibriSpeech train-clean-100 speakers (untranscribed), Asterisk "Allison"
           prompts and the FSDD spoken digits (both transcribed: they feed the CTC head).
dev.tsv:   the 20 held-out LibriSpeech train-clean-100 speakers (untranscribed: dWER, STOI, PESQ,
           speaker similarity), LibriSpeech dev-clean speaker 84 (transcribed) and the LJ Speech
           clips (18 of 32 transcribed).
probe.tsv: 20 of train.tsv's LibriSpeech speakers (one file each, trained on): the same kind of audio
           as dev's 20 train-clean-100 files, but seen in training. A model that loses as many words
           here as on dev underfits; one that keeps them here and not on dev fails to generalise.
No speaker appears in both train and dev. The held-out (and probe) speakers are chosen by a hash of the
speaker id, so the split is stable whatever order the files are listed in.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from speechtok.data.manifest import read_manifest, write_manifest

HELD_OUT_LIBRISPEECH_SPEAKERS = 20
PROBE_SPEAKERS = 20  # the next 20 by the same ranking, all in train.tsv


def _rank(speaker: str) -> str:
    return hashlib.sha256(speaker.encode()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data" / "splits"))
    args = parser.parse_args()
    data, out = Path(args.data), Path(args.out)

    libri = read_manifest(data / "librispeech_train_clean_100_251spk_untranscribed" / "manifest.tsv")
    speakers = sorted({r.speaker for r in libri}, key=_rank)
    held_out = set(speakers[:HELD_OUT_LIBRISPEECH_SPEAKERS])
    train = [r for r in libri if r.speaker not in held_out]
    dev = [r for r in libri if r.speaker in held_out]
    probed = set(speakers[HELD_OUT_LIBRISPEECH_SPEAKERS:HELD_OUT_LIBRISPEECH_SPEAKERS + PROBE_SPEAKERS])
    probe = [r for r in libri if r.speaker in probed]
    train += read_manifest(data / "asterisk_en_allison_8k" / "manifest.tsv")
    train += read_manifest(data / "fsdd_digits_6spk_8k" / "manifest.tsv")
    dev += read_manifest(data / "librispeech_dev_clean_spk84" / "manifest.tsv")
    dev += read_manifest(data / "ljspeech_32utt" / "manifest.tsv")

    overlap = {r.speaker for r in train} & {r.speaker for r in dev}
    assert not overlap, f"speaker overlap between train and dev: {overlap}"
    for name, rows in (("train", train), ("dev", dev), ("probe", probe)):
        path = write_manifest(out / f"{name}.tsv", rows)
        minutes = sum(r.seconds for r in rows) / 60
        labelled = sum(1 for r in rows if r.transcript)
        print(f"{path}: {len(rows)} utts, {minutes:.1f} min, {len({r.speaker for r in rows})} speakers, "
              f"{labelled} transcribed")


if __name__ == "__main__":
    main()

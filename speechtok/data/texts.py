"""Sentences for synthetic speech, with every evaluation sentence kept out.

Training on a sentence the evaluation later reads back would flatter every WER number, so the
pool is the LJ Speech sentence list minus anything an evaluation set speaks: the transcripts of
the development manifest, every ``ljspeech_32utt`` file (its untranscribed files included, by LJ
id) and the ``dctts_lj_reader_44k`` readings of those same sentences. Sentences are compared after
:func:`normalize`, so case and punctuation differences do not let a sentence slip through.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .manifest import read_manifest

#: Shared folders whose files are evaluation material wherever a split uses them (by LJ id).
EVAL_SENTENCE_FOLDERS = ("ljspeech_32utt",)
#: Sentences no training voice may speak because TTS is judged on them (beside the dev manifest):
#: the last 50 LJ Speech sentences (LJ050-0229 … LJ050-0278, public domain).
HELDOUT_SENTENCES = "tts_heldout.tsv"


def normalize(text: str) -> str:
    """Lower case, letters, digits and apostrophes only, single spaces: the identity used for exclusion."""
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split())


@dataclass(frozen=True)
class Sentence:
    id: str
    text: str


def read_sentences(path: str | os.PathLike[str]) -> list[Sentence]:
    """Read an ``id  text`` TSV with a header line (the format of ``texts/ljspeech_sentences.tsv``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: sentence file not found")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    sentences = [Sentence(r[0].strip(), " ".join(r[1].split())) for r in rows[1:] if len(r) >= 2 and r[1].strip()]
    if not sentences:
        raise DataError(f"{path}: no sentences (expected a header and 'id<TAB>text' rows)")
    return sentences


def read_texts(path: str | os.PathLike[str]) -> list[Sentence]:
    """Sentences from any text file a user has: an ``id  text`` TSV, a manifest (its transcripts; id:
    the file's stem, e.g. an LJ Speech clip's sentence id, kept for rows without a transcript so an
    exclusion list can name clips by id alone) or plain text, one sentence per line (no ids)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: text file not found")
    try:
        with open(path, encoding="utf-8") as handle:  # the header decides the reader; only plain text is read here
            first = handle.readline().rstrip("\r\n")
            header = first.split("\t")
            if header[:2] == ["id", "text"]:
                return read_sentences(path)
            if "transcript" in header:
                return [Sentence(r.path.stem, r.transcript) for r in read_manifest(path)]
            if len(header) > 1:
                raise DataError(f"{path}: a TSV needs an 'id<TAB>text' header or a manifest's columns,"
                                f" got {first[:60]!r}")
            handle.seek(0)
            return [Sentence("", " ".join(line.split())) for line in handle if line.strip()]
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None


@dataclass(frozen=True)
class Exclusion:
    """What must never be spoken in training: LJ ids and normalised sentences."""

    ids: frozenset[str]
    texts: frozenset[str]

    def excludes(self, sentence_id: str, text: str) -> bool:
        return sentence_id in self.ids or normalize(text) in self.texts

    @classmethod
    def of(cls, sentences: list[Sentence]) -> Exclusion:
        """Exclude these sentences, by id (where they have one) and by text."""
        return cls(frozenset(s.id for s in sentences if s.id),
                   frozenset(normalize(s.text) for s in sentences) - {""})


def evaluation_exclusion(dev_manifest: str | os.PathLike[str], shared_data: str | os.PathLike[str]) -> Exclusion:
    """Collect the evaluation sentences: dev transcripts, the held-out TTS sentences beside the dev
    manifest (:data:`HELDOUT_SENTENCES`), plus the LJ ids of every evaluation folder.

    A development file whose stem is an LJ id (``LJ001-0003``) excludes that sentence even when the
    manifest gives no transcript, because the sentence list still holds its text.
    """
    dev = read_manifest(dev_manifest)
    ids = {r.path.stem for r in dev if r.path.stem.startswith("LJ")}
    texts = {normalize(r.transcript) for r in dev if r.transcript}
    heldout = Path(dev_manifest).parent / HELDOUT_SENTENCES
    if heldout.is_file():
        for sentence in read_sentences(heldout):
            ids.add(sentence.id)
            texts.add(normalize(sentence.text))
    for folder in EVAL_SENTENCE_FOLDERS:
        manifest = Path(shared_data) / folder / "manifest.tsv"
        if manifest.is_file():
            rows = read_manifest(manifest)
            ids |= {r.path.stem for r in rows}
            texts |= {normalize(r.transcript) for r in rows if r.transcript}
    return Exclusion(frozenset(ids), frozenset(texts - {""}))


def text_pool(sentences: list[Sentence], exclusion: Exclusion, max_chars: int = 240) -> list[Sentence]:
    """The sentences synthetic voices may read: not evaluation material, not too long for one TTS call."""
    pool = [s for s in sentences if not exclusion.excludes(s.id, s.text) and len(s.text) <= max_chars]
    if not pool:
        raise DataError("no training sentences left after excluding the evaluation sentences")
    return pool

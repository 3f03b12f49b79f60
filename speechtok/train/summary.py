"""What a trained checkpoint records about its training: the data (hours, utterances, voices), the
recipe, the final metrics, and the run it was fine-tuned from. ``speechtok info`` prints it and
``scripts/bundle_checkpoint.py`` keeps it, so a bundled model says what speech it has seen even when
its last run was a short fine-tune on a small set."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import LoadedCheckpoint
from ..data.engine_config import source_of
from ..data.manifest import read_manifest
from .plots import read_metrics
from .state import TRAINER_FILE, read_trainer_state

FINAL_METRICS = {"sitok": ("loss", "flow", "ctc", "vq", "codebook_usage", "perplexity"),
                 "vocos": ("loss", "mel", "adv", "fm", "disc"),
                 "holitok": ("loss", "mel", "kl", "ctc", "speaker_acc"),
                 "ardit": ("loss", "tts", "eos", "asr", "asr_accuracy")}


def data_summary(manifest: str, min_seconds: float = 0.0) -> dict[str, Any]:
    """Hours, utterances and voices of a manifest (the utterances of at least ``min_seconds``, as the
    trainer reads it); only its name when it is no longer on disk."""
    if not Path(manifest).is_file():
        return {"manifest": Path(manifest).name}
    rows = [r for r in read_manifest(manifest) if r.seconds >= min_seconds]
    return {
        "manifest": Path(manifest).name,
        **({"min_seconds": min_seconds} if min_seconds else {}),
        "hours": round(sum(r.seconds for r in rows) / 3600, 3),
        "utterances": len(rows),
        "speakers": len({r.speaker for r in rows}),
        "transcribed_utterances": sum(1 for r in rows if r.transcript),
        "sources": sorted({source_of(r.path) for r in rows}),
    }


def training_summary(checkpoint_dir: Path, kind: str) -> dict[str, Any]:
    """The summary of a training checkpoint (``runs/NAME/checkpoints/step_N``)."""
    trainer = read_trainer_state(checkpoint_dir)
    spec = trainer["spec"]
    metrics = read_metrics(checkpoint_dir.parent.parent / "metrics.jsonl")
    upto = [r for r in metrics if r["step"] <= trainer["step"]]
    last_train = next((r for r in reversed(upto) if "loss" in r), {})
    last_valid = next((r for r in reversed(upto) if any(k.startswith("valid_") for k in r)), {})
    length = "max_seconds" if kind == "sitok" else "segment_seconds"
    summary = {
        "steps": trainer["step"],
        "train_data": data_summary(spec["train_manifest"], spec["train"].get("min_seconds", 0.0)),
        "valid_data": data_summary(spec["valid_manifest"]) if spec.get("valid_manifest") else None,
        "recipe": {k: spec["train"][k] for k in ("lr", "warmup_steps", "batch_seconds", length, "steps")}
        | ({"source_repeats": spec["train"]["source_repeats"]} if spec["train"].get("source_repeats") else {})
        | ({"objective": spec["objective"]} if spec.get("objective") else {}),  # e.g. the AR+DiT's TTS share
        "final_train_metrics": {k: round(last_train[k], 4) for k in FINAL_METRICS.get(kind, ()) if k in last_train},
        "final_valid_metrics": {k: round(v, 4) for k, v in last_valid.items() if k != "step"},
    }
    if trainer.get("init"):
        summary["initialised_from"] = trainer["init"]
    return summary


def init_summary(loaded: LoadedCheckpoint) -> dict[str, Any]:
    """What a run records of its ``--init`` checkpoint: where it came from and how that was trained."""
    if (loaded.directory / TRAINER_FILE).is_file():
        training = training_summary(loaded.directory, loaded.kind)
    else:
        training = loaded.info.get("training")
    return {"checkpoint": str(loaded.directory), **({"training": training} if training else {})}


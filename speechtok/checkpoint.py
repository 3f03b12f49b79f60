"""Inference checkpoints: ``config.json`` + ``model.safetensors``, pinned to each other by hashes.

``config.json`` records the model kind, its full config, the config's sha256 and the weights file's
sha256; the safetensors header carries the config hash too. Loading refuses a checkpoint whose
weights do not match their recorded hash (corrupt or tampered) or whose weights were written for a
different config (wrong architecture). No pickle is ever loaded.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .bundled import CONFIG_FILE, resolve
from .config import config_hash, dict_hash, to_dict
from .errors import CheckpointError
from .fileio import atomic_path, sha256_file, write_json_atomic

FORMAT = "speechtok-checkpoint-v1"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class LoadedCheckpoint:
    directory: Path
    meta: dict[str, Any]  # the verified config.json: kind, config, hashes, weights record, info
    state: dict[str, torch.Tensor]

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    @property
    def config(self) -> dict[str, Any]:
        return self.meta["config"]

    @property
    def info(self) -> dict[str, Any]:
        return self.meta.get("info", {})


def sort_safetensors_header(path: str | os.PathLike[str]) -> None:
    """Rewrite a safetensors file's JSON header, in place, with its keys sorted.

    safetensors writes the metadata from a hash map whose order changes from process to process, so
    the same weights exported twice got two file hashes, and a model pinned to its tokenizer's weights
    hash (AR+DiT) refused a re-export of the very weights it was trained on. Sorting keeps the length
    (same compact JSON, other order), so the tensor data is not touched."""
    with open(path, "r+b") as handle:
        size = int.from_bytes(handle.read(8), "little")
        raw = handle.read(size)
        header = json.loads(raw)
        text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:  # cannot happen for the compact header safetensors writes
            raise CheckpointError(f"{path}: unexpected safetensors header layout")
        handle.seek(8)
        handle.write(text + b" " * (size - len(text)))


def save_checkpoint(directory: str | os.PathLike[str], kind: str, config: Any, state_dict: dict[str, torch.Tensor],
                    *, dtype: torch.dtype = torch.float32, info: dict[str, Any] | None = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    digest = config_hash(config)
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in state_dict.items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "kind": kind, "config_sha256": digest})
        sort_safetensors_header(tmp)
    n_params = sum(v.numel() for v in tensors.values())
    write_json_atomic(directory / CONFIG_FILE, {
        "format": FORMAT,
        "kind": kind,
        "config": to_dict(config),
        "config_sha256": digest,
        "weights": {"file": WEIGHTS_FILE, "sha256": sha256_file(directory / WEIGHTS_FILE),
                    "dtype": str(dtype).removeprefix("torch."), "numel": n_params},
        "info": info or {},
    })
    return directory


def load_checkpoint(name_or_dir: str | os.PathLike[str], *, expected_kind: str | None) -> LoadedCheckpoint:
    """Read and verify a checkpoint; ``expected_kind=None`` accepts any model kind."""
    directory = resolve(name_or_dir)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{directory}: missing {CONFIG_FILE}")
    try:
        meta = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path}: not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{config_path}: not a speechtok checkpoint (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if expected_kind is not None and meta.get("kind") != expected_kind:
        raise CheckpointError(f"{directory}: is a {meta.get('kind')!r} checkpoint, expected {expected_kind!r}")
    weights = directory / meta["weights"]["file"]
    if not weights.is_file():
        raise CheckpointError(f"{directory}: missing weights file {weights.name}")
    actual = sha256_file(weights)
    if actual != meta["weights"]["sha256"]:
        raise CheckpointError(
            f"{weights}: sha256 mismatch (recorded {meta['weights']['sha256'][:12]}…, file {actual[:12]}…): corrupt or modified")
    recorded_config = meta.get("config_sha256")
    if dict_hash(meta["config"]) != recorded_config:
        raise CheckpointError(f"{config_path}: config does not match its recorded hash: edited by hand?")
    try:
        with safe_open(str(weights), framework="pt") as handle:
            header = handle.metadata() or {}
            state = {k: handle.get_tensor(k) for k in handle.keys()}
    except Exception as exc:
        raise CheckpointError(f"{weights}: cannot read safetensors ({str(exc).splitlines()[0][:120]})") from None
    if header.get("config_sha256") != recorded_config:
        raise CheckpointError(f"{weights}: weights were written for a different architecture than {CONFIG_FILE}")
    return LoadedCheckpoint(directory, meta, state)


def average_checkpoints(checkpoints: list[LoadedCheckpoint]) -> LoadedCheckpoint:
    """The first checkpoint with its floating-point weights replaced by the mean over all of them
    (computed in fp32, stored in the first's dtypes): checkpoint averaging, which smooths the noise of
    the last steps of a run for free (as ESPnet and fairseq average their last checkpoints). They must
    be of one kind with the same tensors; other tensors (integer buffers) must agree."""
    first = checkpoints[0]
    for other in checkpoints[1:]:
        if other.kind != first.kind:
            raise CheckpointError(f"{other.directory}: a {other.kind!r} checkpoint cannot be averaged with a"
                                  f" {first.kind!r} one ({first.directory})")
        shapes = {k: tuple(v.shape) for k, v in other.state.items()}
        if shapes != {k: tuple(v.shape) for k, v in first.state.items()}:
            raise CheckpointError(f"{other.directory}: its tensors differ from {first.directory}'s: not the same architecture")
    state = {}
    for key, value in first.state.items():
        if value.is_floating_point():
            state[key] = (sum(c.state[key].float() for c in checkpoints) / len(checkpoints)).to(value.dtype)
        elif all(torch.equal(c.state[key], value) for c in checkpoints[1:]):
            state[key] = value
        else:
            raise CheckpointError(f"{key}: a non-float tensor that differs between the checkpoints cannot be averaged")
    return LoadedCheckpoint(first.directory, first.meta, state)


def load_state(model: nn.Module, loaded: LoadedCheckpoint, may_lack: tuple[str, ...] = (),
               may_drop: tuple[str, ...] = ()) -> None:
    """Strictly load weights, casting to the model's dtypes; a mismatch is a CheckpointError.

    The modules ``may_lack`` (modules a fine-tuning run adds) may be absent from the checkpoint: they
    keep their initialisation; one the checkpoint has must load whole (a trained part grown by a layer
    would otherwise keep a random one). Parameters under ``may_drop`` (modules a fine-tuning run
    switched off or replaces) may be in the checkpoint: they are left out."""
    own = model.state_dict()
    state = {k: v for k, v in loaded.state.items() if not k.startswith(tuple(f"{m}." for m in may_drop))}
    absent = tuple(f"{m}." for m in may_lack if not any(k.startswith(f"{m}.") for k in state))
    missing = sorted(k for k in set(own) - set(state) if not k.startswith(absent))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{loaded.directory}: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise CheckpointError(f"{loaded.directory}: {key} has shape {list(value.shape)}, model expects {list(own[key].shape)}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=not may_lack)

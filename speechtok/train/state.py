"""Resumable training checkpoints without pickle.

A training checkpoint is a directory holding an inference checkpoint (``config.json`` +
``model.safetensors``, so ``from_pretrained`` and ``speechtok info`` work on it), the optimizer
state (``optimizer.safetensors`` + ``optimizer.json``), the random generators
(``rng.safetensors``), any auxiliary module (e.g. ``discriminator.safetensors`` + its optimizer) and ``trainer.json`` (step, data position, configs). It is written into a
temporary directory and renamed into place, so a crash never leaves a half-written checkpoint.
Full (unsharded) state dicts are gathered on rank 0, which works the same for DDP and FSDP.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from ..checkpoint import save_checkpoint
from ..errors import CheckpointError
from ..fileio import write_json_atomic

TRAINER_FILE = "trainer.json"
LATEST_FILE = "latest"


def gather_states(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Full model and optimizer state dicts on CPU (complete on rank 0; collective under FSDP)."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options), get_optimizer_state_dict(model, optimizer, options=options)


def save_training_state(run_dir: Path, step: int, kind: str, model_config: Any,
                        states: dict[str, tuple[dict, dict]], trainer: dict[str, Any], keep: int) -> Path:
    """Rank 0 only. ``states`` maps each trained module to its (weights, optimizer) state dicts;
    ``"model"`` becomes the inference checkpoint, others ``NAME.safetensors`` beside it.
    Returns the checkpoint directory ``run_dir/checkpoints/step_XXXXXXX``."""
    root = run_dir / "checkpoints"
    final = root / f"step_{step:07d}"
    tmp = root / f".step_{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for name, (module_state, optim_state) in states.items():
        if name == "model":
            save_checkpoint(tmp, kind, model_config, module_state, info={"step": step, "run": str(run_dir)})
        else:
            save_file({k: v.contiguous() for k, v in module_state.items()}, str(tmp / f"{name}.safetensors"))
        tensors, groups = _flatten_optimizer(optim_state)
        save_file(tensors, str(tmp / f"{_optimizer_prefix(name)}.safetensors"))
        write_json_atomic(tmp / f"{_optimizer_prefix(name)}.json", {"param_groups": groups})
    save_file({"torch": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    numpy_state = np.random.get_state()
    trainer = dict(trainer, step=step, modules=sorted(states),
                   python_rng=_jsonable(random.getstate()),
                   numpy_rng=[numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]])
    write_json_atomic(tmp / TRAINER_FILE, trainer)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    write_json_atomic(root / LATEST_FILE, {"checkpoint": final.name})
    for old in sorted(root.glob("step_*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _optimizer_prefix(name: str) -> str:
    return "optimizer" if name == "model" else f"{name}_optimizer"


def find_checkpoint(path: str | os.PathLike[str]) -> Path:
    """Accept a checkpoint directory or a run directory (then its latest checkpoint)."""
    path = Path(path)
    if (path / TRAINER_FILE).is_file():
        return path
    latest = path / "checkpoints" / LATEST_FILE
    if latest.is_file():
        return path / "checkpoints" / json.loads(latest.read_text())["checkpoint"]
    raise CheckpointError(f"{path}: no training checkpoint here (expected {TRAINER_FILE} or checkpoints/{LATEST_FILE})")


def read_trainer_state(checkpoint_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((checkpoint_dir / TRAINER_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{checkpoint_dir / TRAINER_FILE}: unreadable ({exc})") from None


def restore(checkpoint_dir: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
            model_state: dict) -> None:
    """Load every module's weights and optimizer, and the RNG states, on every rank.

    ``modules`` are the (possibly wrapped) trained modules; ``model_state`` the verified weights of
    ``"model"`` (the others are read from ``NAME.safetensors``)."""
    options = StateDictOptions(full_state_dict=True)
    for name, module in modules.items():
        if name == "model":
            weights = model_state
        else:
            path = checkpoint_dir / f"{name}.safetensors"
            if not path.is_file():
                raise CheckpointError(f"{checkpoint_dir}: no {path.name}; was it written by another recipe?")
            weights = load_file(str(path))
        set_model_state_dict(module, weights, options=options)
        prefix = _optimizer_prefix(name)
        groups = json.loads((checkpoint_dir / f"{prefix}.json").read_text())["param_groups"]
        optim_state = _unflatten_optimizer(load_file(str(checkpoint_dir / f"{prefix}.safetensors")), groups)
        set_optimizer_state_dict(module, optimizers[name], optim_state, options=options)
    torch.set_rng_state(load_file(str(checkpoint_dir / "rng.safetensors"))["torch"])
    trainer = read_trainer_state(checkpoint_dir)
    random.setstate(_tupled(trainer["python_rng"]))
    kind, keys, pos, has_gauss, gauss = trainer["numpy_rng"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    tensors = {}
    for name, slots in state["state"].items():
        for slot, value in slots.items():
            tensors[f"{name}\t{slot}"] = torch.as_tensor(value).contiguous()
    return tensors, state["param_groups"]


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    state: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        name, slot = key.split("\t")
        state.setdefault(name, {})[slot] = value
    return {"state": state, "param_groups": groups}


def _jsonable(value: Any) -> Any:
    return [_jsonable(v) for v in value] if isinstance(value, (tuple, list)) else value


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value

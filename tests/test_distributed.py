"""Data-parallel training with 2 CPU processes (gloo): replicas must stay bit-identical."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Rarely (seen once in ~20 runs, FSDP only), a gloo worker aborts at interpreter exit with
# "terminate called without an active exception", a teardown race inside torch. One retry on
# exactly that signature keeps CI reliable; every assertion below still needs a clean run.
TEARDOWN_ABORT = "terminate called without an active exception"


def _train_two_processes(out_dir: Path, manifest: Path, strategy: str, family: str,
                         tokenizer: str) -> subprocess.CompletedProcess:
    worker = Path(__file__).with_name("ddp_worker.py")
    # The checkout's own speechtok, not whichever one is installed, as in the in-process tests.
    here = Path(__file__).resolve().parent
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(here), str(here.parent)]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(worker), str(manifest), str(out_dir), strategy, family, tokenizer]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(("family", "strategy"), [("sitok", "ddp"), ("sitok", "fsdp"), ("sitok-rvq", "ddp"),
                                                  ("holitok", "ddp"), ("ardit", "ddp")])
def test_two_process_training_keeps_replicas_identical(tmp_path, real_manifest, family, strategy):
    tokenizer = ""
    if family == "ardit":
        import torch

        from speechtok.models.holitok import HoliTok

        torch.manual_seed(0)
        tokenizer = str(HoliTok.from_preset("holitok-tiny").save_pretrained(tmp_path / "tokenizer"))
    run_dir = tmp_path / "run"
    result = _train_two_processes(run_dir, real_manifest, strategy, family, tokenizer)
    if result.returncode != 0 and TEARDOWN_ABORT in result.stderr:
        run_dir = tmp_path / "retry"
        result = _train_two_processes(run_dir, real_manifest, strategy, family, tokenizer)
    assert result.returncode == 0, result.stderr[-3000:]
    replicas = json.loads((run_dir / "replicas.json").read_text())
    assert len(replicas) == 2
    assert replicas[0]["hash"] == replicas[1]["hash"]  # parameters, buffers and auxiliary modules agree
    assert replicas[0]["first_batch"] != replicas[1]["first_batch"]  # each rank trained on its own shard
    checkpoint = run_dir / "checkpoints" / "step_0000003"
    assert (checkpoint / "model.safetensors").is_file() and (checkpoint / "optimizer.safetensors").is_file()
    trainer = json.loads((checkpoint / "trainer.json").read_text())
    assert trainer["world_size"] == 2 and trainer["strategy"] == strategy

"""scripts/gpu_corpus_job.sh's lease tree: `lease-begin` leaves only light files tracked, `lease-end` returns
to the branch it came from and refuses, changing nothing, whenever switching back would lose work."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_corpus_job.sh"
pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=repo, capture_output=True, text=True)


def _job(repo: Path, mode: str) -> subprocess.CompletedProcess:
    return _run(repo, "bash", "scripts/gpu_corpus_job.sh", mode)


def _tracked(repo: Path) -> set[str]:
    return set(_run(repo, "git", "ls-files").stdout.split())


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    """A repository with the script, code, the vocoder and the heavy bundles, on branch `work`."""
    files = {"scripts/gpu_corpus_job.sh": SCRIPT.read_text(), "speechtok/code.py": "x = 1\n",
             "speechtok/checkpoints/vocos-24k/config.json": "{}", "checkpoints/old/config.json": "{}",
             **{f"speechtok/checkpoints/{name}/config.json": "{}" for name in ("sitok-default", "holitok-default",
                                                                              "ardit-default")}}
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    for command in (["git", "init", "-q", "-b", "work"], ["git", "config", "user.name", "t"],
                    ["git", "config", "user.email", "t@t"], ["git", "add", "-A"], ["git", "commit", "-qm", "base"]):
        assert _run(tmp_path, *command).returncode == 0
    return tmp_path


def test_lease_tree_keeps_the_bundles_out_and_returns(repo):
    before = _tracked(repo)
    assert _job(repo, "lease-begin").returncode == 0
    assert _run(repo, "git", "symbolic-ref", "--short", "HEAD").stdout.strip() == "gpu-lease"
    assert _tracked(repo) == {"scripts/gpu_corpus_job.sh", "speechtok/code.py",
                              "speechtok/checkpoints/vocos-24k/config.json"}
    assert (repo / "speechtok/checkpoints/sitok-default/config.json").is_file()  # still here, to be carried
    assert _run(repo, "git", "status", "--porcelain").stdout == ""  # untracked and ignored: they travel only if carried
    assert _job(repo, "lease-begin").returncode == 2  # not twice

    assert _job(repo, "lease-end").returncode == 0
    assert _run(repo, "git", "symbolic-ref", "--short", "HEAD").stdout.strip() == "work"
    assert _tracked(repo) == before and _run(repo, "git", "status", "--porcelain").stdout == ""
    assert "gpu-lease" not in _run(repo, "git", "branch").stdout
    assert "/checkpoints/" not in (repo / ".git/info/exclude").read_text()
    assert _job(repo, "lease-end").returncode == 2  # not on the lease branch


@pytest.mark.parametrize("change", ["edit code", "commit", "edit bundle"])
def test_lease_end_refuses_to_lose_work(repo, change):
    assert _job(repo, "lease-begin").returncode == 0
    if change == "edit code":
        (repo / "speechtok/code.py").write_text("x = 2\n")
    elif change == "commit":
        _run(repo, "git", "commit", "-q", "--allow-empty", "-m", "on the lease branch")
    else:  # ignored on the lease branch: switching back would overwrite it without a word
        (repo / "speechtok/checkpoints/sitok-default/config.json").write_text('{"new": 1}')
    ended = _job(repo, "lease-end")
    assert ended.returncode == 2 and len(ended.stderr.strip().splitlines()) == 1
    assert _run(repo, "git", "symbolic-ref", "--short", "HEAD").stdout.strip() == "gpu-lease"  # nothing moved
    if change == "edit bundle":
        assert (repo / "speechtok/checkpoints/sitok-default/config.json").read_text() == '{"new": 1}'


def test_lease_begin_refuses_uncommitted_changes(repo):
    (repo / "speechtok/code.py").write_text("x = 3\n")
    began = _job(repo, "lease-begin")
    assert began.returncode == 2 and "commit or stash" in began.stderr
    assert _run(repo, "git", "symbolic-ref", "--short", "HEAD").stdout.strip() == "work"

"""Output files: checked before any work, written atomically (complete or not at all), with the
permissions any other program would give them."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import stat
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from .errors import DataError

if TYPE_CHECKING:
    import numpy as np


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (``os.umask`` is a global swap)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _final_mode(target: Path) -> int:
    """An overwritten file keeps its mode; a new one gets 0666 minus the umask (0644 under umask 022),
    not the 0600 of a temporary file, so teammates and servers can read what speechtok writes."""
    try:
        return stat.S_IMODE(target.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success.

    The temporary file lives in the same directory so the final ``os.replace`` is atomic on POSIX.
    On any exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _final_mode(target))
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json_atomic(target: str | os.PathLike[str], data: Any) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_npy(path: str | os.PathLike[str], what: str) -> np.ndarray:
    """Load a ``.npy`` array without pickle; a missing or unreadable file is a one-line DataError."""
    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found")
    try:
        return np.load(path, allow_pickle=False)
    except Exception:
        raise DataError(f"{path}: not a readable .npy {what} file") from None


def check_output(path: str | os.PathLike[str], *, inputs: Iterable[str | os.PathLike[str]] = (),
                 suffixes: Iterable[str] = (), what: str = "output") -> Path:
    """Refuse, before any model work, an output that could not be written or would destroy an input.

    Checks that ``path`` is not a directory, is not one of ``inputs`` (same file after resolving links),
    has one of ``suffixes`` (when given), and that a file can really be created where it goes: the
    nearest existing ancestor must be a writable directory (probed by creating a temporary file, since
    ``os.access`` says yes to root even in ``/proc``). Raises a one-line :class:`DataError`.
    """
    path = Path(path)
    if path.is_dir() or str(path).endswith(os.sep):
        raise DataError(f"{path}: {what} path is a directory; give a file name")
    for source in inputs:
        if Path(source).exists() and path.exists() and os.path.samefile(source, path):
            raise DataError(f"{path}: {what} is the input file {source}; refusing to overwrite it")
    suffixes = tuple(suffixes)
    if suffixes and path.suffix.lower() not in suffixes:
        raise DataError(f"{path}: {what} must end in {' or '.join(suffixes)}")
    check_output_dir(path.parent, what=what)
    return path


def check_output_dir(directory: str | os.PathLike[str], *, what: str = "output") -> Path:
    """Refuse an output folder that exists as a file or cannot be created/written (see :func:`check_output`)."""
    directory = Path(directory)
    ancestor = directory
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise DataError(f"{directory}: cannot create the {what} there: {ancestor} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".speechtok-probe.", dir=ancestor)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DataError(f"{directory}: cannot write the {what} there ({ancestor}: {exc.strerror})") from None
    return directory


LOCK_FILE = ".speechtok.lock"


@contextlib.contextmanager
def exclusive_lock(directory: str | os.PathLike[str], holder: str) -> Iterator[Path]:
    """Hold ``directory/.speechtok.lock`` while a job writes into ``directory``.

    A second job on the same folder fails at once with a one-line :class:`DataError` naming the holder
    (command, host, pid, start time) instead of redoing the same work beside it. A lock left by a
    killed job on this host (its pid no longer runs) is stale: it is taken over. Locks of other hosts
    are respected; delete the file by hand if that host is gone.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    me = {"holder": holder, "host": socket.gethostname(), "pid": os.getpid(),
          "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_umask())
        except FileExistsError:
            other = _read_lock(path)
            if other is not None and not _is_stale(other):
                raise DataError(f"{directory}: in use by {other.get('holder', '?')} (pid {other.get('pid')} on"
                                f" {other.get('host')}, since {other.get('since')}); wait for it or remove {path}"
                                " if that job is gone") from None
            path.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(fd, "w") as handle:
            json.dump(me, handle)
        break
    else:
        raise DataError(f"{path}: could not take the lock (another job keeps taking it)")
    try:
        yield path
    finally:
        if _read_lock(path) == me:
            path.unlink(missing_ok=True)


def _read_lock(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # vanished, or half-written by a job killed while taking it: treated as stale
    return data if isinstance(data, dict) else None


def _is_stale(lock: dict[str, Any]) -> bool:
    if lock.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(lock["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, TypeError, ValueError):
        return False
    return False

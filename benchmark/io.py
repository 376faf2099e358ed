"""Files that survive kills: atomic writes (a killed job never leaves a half-written result that
looks complete), reads that discard what is unreadable, and per-job locks that die with their holder."""
from __future__ import annotations

import fcntl
import json
import os
import pickle
import socket
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, TypeVar

from benchmark.errors import Busy

T = TypeVar("T")


def umask() -> int:
    """The process's umask, read without changing it where the kernel reports it (Linux 4.7+):
    setting it to read it back would, for that moment, apply to files other threads create."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o077)  # the fallback's moment of a narrower mask errs on the private side
    os.umask(mask)
    return mask


def ordinary_mode(directory: bool = False) -> int:
    """The mode open() (0o666) or mkdir() (0o777) would give under the user's umask: a temporary
    file or folder is private (0o600, 0o700), and renamed into place it would stay so, unreadable
    to the colleagues the user's umask lets read the rest of the folder."""
    return (0o777 if directory else 0o666) & ~umask()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary sibling of `path`, give it the mode an ordinary write would
    have, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, ordinary_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: Path, data: object) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


# What a truncated or overwritten file raises when read back: torch.load, np.load, json, safetensors.
UNREADABLE = (OSError, ValueError, EOFError, KeyError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile)


def read_or_discard(path: Path, read: Callable[[Path], T], what: str) -> T | None:
    """read(path), or None when `path` is absent or unreadable; an unreadable file is deleted with a
    message, so a corrupt cache or checkpoint is recomputed, never trusted. `read` raises ValueError
    for a file it can parse but whose content does not fit."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return read(path)
    except UNREADABLE as error:
        print(f"{path}: unreadable {what} ({type(error).__name__}: {error}); discarded, recomputing", flush=True)
        path.unlink(missing_ok=True)
        return None


@contextmanager
def exclusive(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the block. The kernel releases it when the holder's
    process ends, however it ends (SIGKILL included), so no stale lock outlives a killed job."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise Busy(f"{what} is being run by {holder} (lock {path}); wait for it or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold an object (a summary, a cache entry); ValueError otherwise."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data

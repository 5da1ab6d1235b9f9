"""One writer per output: an exclusive lock held while a verb writes an artifact.

``with lock.hold(target, what):`` takes ``fcntl.flock`` on ``.<name>[.<tag>].lock`` beside
``target`` (a manifest, a run folder, a render folder or one of its shards). A second process
asking for the same lock is refused at once with a UsageError (exit 2) naming the holder's pid.
The kernel drops an flock when its process dies, so a crashed or killed writer never leaves a
stale lock: at worst an unlocked, harmless ``.lock`` file that the next writer reuses. On a
normal exit the file is removed while still locked; a waiter that opened it just before then
sees that the path no longer names its file and tries again, so two writers never both win.

The descriptor is opened close-on-exec (Python's default), so child programs do not hold it.
"""

import contextlib
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from p2phd.core.cli import UsageError


def lock_path(target: str | os.PathLike, tag: str = "") -> Path:
    """The lock file of ``target``: hidden, in the same folder, so it needs no other place."""
    target = Path(target)
    return target.parent / f".{target.name}{'.' + tag if tag else ''}.lock"


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return "?"
    return text if text.isdigit() else "?"


def acquire(target: str | os.PathLike, what: str = "", tag: str = "") -> tuple[int, Path]:
    """Lock ``target`` for this process: returns (fd, lock file). Refuses if already locked."""
    path = lock_path(target, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            raise UsageError(
                f"{what + ' ' if what else ''}{target}: is being written by another process "
                f"(pid {pid}); wait for it to finish or write elsewhere"
            ) from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = -1
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)  # the holder removed the file between our open and flock: try again
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd, path


def release(fd: int, path: Path) -> None:
    """Remove the lock file (still locked, so no one can take the old one) and unlock."""
    try:
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            path.unlink()
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


@contextmanager
def hold(target: str | os.PathLike, what: str = "", tag: str = "") -> Iterator[Path]:
    """Hold the lock of ``target`` for the block (released on any exit, also by a crash)."""
    fd, path = acquire(target, what, tag)
    try:
        yield path
    finally:
        release(fd, path)


def hold_part(
    target: str | os.PathLike, what: str, shard: tuple[int, int] | None, assembles: bool
) -> contextlib.ExitStack:
    """The locks of one writer of a sharded output (render folder, feature manifest).

    Shards of one output run side by side, so each holds its own ``shard-I-of-N`` lock; whoever
    assembles the whole output (an unsharded run, a merge, rank 0 under msrun) also holds the
    output's own lock, which refuses a second unsharded writer or a second job's rank 0.
    """
    stack = contextlib.ExitStack()
    with contextlib.ExitStack() as taking:  # a refused second lock releases the first
        if shard is not None:
            taking.enter_context(hold(target, what, "shard-{}-of-{}".format(*shard)))
        if shard is None or assembles:
            taking.enter_context(hold(target, what))
        stack.push(taking.pop_all())
    return stack

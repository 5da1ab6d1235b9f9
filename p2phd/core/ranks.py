"""One verb on several workers (msrun): status files, rank 0 waiting for the others, progress.

render and precompute split their rows by rank (rows r, r+N, ...) and need no collective:
every rank writes its own files, and rank 0 assembles the whole output once all of them are on
disk. The files are the protocol (MindSpore's Barrier does not exist on the CPU backend, and a
collective would hang on a dead peer instead of failing):

- each rank keeps ``<folder>/rank-<r>.json`` up to date: ``{"state": "running", "beat": n}``
  rewritten every few seconds by a thread, then ``"done"``, or ``"failed"`` with the error;
- rank 0, its own share done, polls until ``ready()`` (the outputs of every rank exist), and fails
  naming the rank when one reports ``failed`` or shows no sign of life (its file unchanged) for
  ``P2PHD_RANK_TIMEOUT`` seconds (default 300). On one node msrun itself kills the other workers
  when one exits non-zero; across nodes this timeout is what ends rank 0's wait.

Rank 0 deletes the other ranks' status files when it starts: one left by an earlier run must not
fail this one. A rank that finished before then needs none (its outputs exist), one that failed
before then is reported by the timeout.
"""

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from p2phd.core.cli import UsageError, log
from p2phd.core.runtime import Place

BEAT_SECONDS = 2.0
POLL_SECONDS = 1.0


def parse_shard(spec: str) -> tuple[int, int]:
    """``--shard I/N`` of render and precompute: rows I, I+N, I+2N, ... (what rank I of N takes)."""
    i, sep, n = spec.partition("/")
    if not sep or not i.strip().isdigit() or not n.strip().isdigit() or not 0 <= int(i) < int(n):
        raise UsageError(f"--shard must be I/N with 0 <= I < N (e.g. 0/2), got {spec!r}")
    return int(i), int(n)


def timeout_seconds() -> float:
    return float(os.environ.get("P2PHD_RANK_TIMEOUT", "300"))


def status_path(folder: Path, rank: int) -> Path:
    return folder / f"rank-{rank}.json"


def _write(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def read_status(folder: Path, rank: int) -> dict[str, Any] | None:
    try:
        return json.loads(status_path(folder, rank).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None  # absent, or caught between two writes on a storage without atomic rename


@contextmanager
def reporting(folder: Path, place: Place, verb: str) -> Iterator[None]:
    """Keep this rank's status file beating while the block runs; record how it ended.

    An error leaving the block is raised again with the rank in its message (``rank 1/2
    failed: OSError: ...``; a UsageError stays one, exit 2), so the worker's log and msrun's
    console say which worker failed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    if place.rank == 0:
        for p in folder.glob("rank-*.json"):
            if p.name != status_path(folder, 0).name:
                p.unlink(missing_ok=True)
    path, stop = status_path(folder, place.rank), threading.Event()
    base = {"rank": place.rank, "world": place.world, "pid": os.getpid(), "verb": verb}
    _write(path, {**base, "state": "running", "beat": 0})

    def beat() -> None:
        n = 0
        while not stop.wait(BEAT_SECONDS):
            n += 1
            _write(path, {**base, "state": "running", "beat": n})

    log(f"{verb}: {place} (local rank {place.local_rank}, pid {os.getpid()}) started")
    thread = threading.Thread(target=beat, name="rank-status", daemon=True)
    thread.start()
    try:
        yield
    except BaseException as exc:
        stop.set()
        thread.join()
        _write(path, {**base, "state": "failed", "error": f"{type(exc).__name__}: {exc}"})
        if isinstance(exc, UsageError):
            raise UsageError(f"{place}: {exc}") from exc
        if isinstance(exc, Exception):
            raise RuntimeError(f"{place} failed: {type(exc).__name__}: {exc}") from exc
        raise
    stop.set()
    thread.join()
    _write(path, {**base, "state": "done"})


def wait_for_ranks(
    folder: Path,
    place: Place,
    ready: Callable[[], bool],
    what: Callable[[], str],
    verb: str,
    timeout: float | None = None,
) -> None:
    """Rank 0: return once ``ready()``; raise naming a rank that failed or went silent.

    ``what()`` describes what is still missing (logged every ~30 s while waiting).
    """
    timeout = timeout_seconds() if timeout is None else timeout
    last: dict[int, tuple[str, float]] = {}  # rank -> (file content, when it last changed)
    start = told = time.monotonic()
    while not ready():
        now = time.monotonic()
        for r in range(1, place.world):
            try:
                text = status_path(folder, r).read_text()
            except FileNotFoundError:
                text = ""
            if text != last.get(r, (None, 0.0))[0]:
                last[r] = (text, now)
            doc = read_status(folder, r) or {}
            if doc.get("state") == "failed":
                raise RuntimeError(f"rank {r}/{place.world} failed: {doc.get('error', '?')}")
            if doc.get("state") != "done" and now - last[r][1] > timeout:
                seen = "no status file" if not text else "its status file stopped changing"
                raise RuntimeError(
                    f"rank {r}/{place.world} gave no sign of life for {timeout:.0f} s ({seen}: "
                    f"killed, or never started?) while {what()}"
                )
        if ready():  # a rank may have finished while we read the status files
            break
        if now - told >= 30:
            log(f"{verb}: {place} waiting {now - start:.0f} s: {what()}")
            told = now
        time.sleep(POLL_SECONDS)


# ---------------------------------------------------------------------------------------------
# progress: one line per rank


def progress_bar(place: Place, total: int, desc: str, unit: str = "img") -> Any:
    """core.bars' bar on stderr; under msrun plain lines naming the rank (msrun tails every
    worker's log to the console: whole lines from two ranks stay readable where their
    carriage-return bars would overwrite each other)."""
    from p2phd.core import bars

    if not place.distributed:
        return bars.bar(total, desc, unit)
    return bars.bar(total, f"{desc} {place}", unit, plain=True)

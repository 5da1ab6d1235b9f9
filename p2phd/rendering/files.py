"""The render output folder: file names, the settings sidecar, atomic PNGs and the writer pool.

Layout of ``<out>/`` (one folder per run and split):

- ``<name>_synthesized.png`` (``<name>_synthesized_v<k>.png`` with ``--variants K`` > 1),
  ``<name>_label.png`` (colourised label map) and ``<name>_real.png`` (when the split has photos);
- ``render-settings.json``: what the PNGs were rendered with (checkpoint, clusters and dataset
  hashes, architecture, seed, style...). A rerun compares it with its own settings and refuses to
  mix renders of another checkpoint or other options into one folder;
- ``render.h5`` and ``index.html`` (complete renders), ``render-shard-<I>-of-<N>.h5`` (shards).

Every PNG is written to a hidden temporary name carrying the writer's host and pid and renamed
into place, so a file that exists is complete and a killed render leaves at most stale
temporaries, which later runs on that host delete once their process is gone. A sample is done
when all of its files exist.
"""

import json
import os
import re
import socket
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from p2phd.core.cli import UsageError, write_json, writing

# The PNG names render writes; --overwrite removes only these (never other pictures in --out).
_OURS = re.compile(r"^.+_(synthesized(_v\d+)?|label|real)\.png$")
SETTINGS_FILE = "render-settings.json"
SETTINGS_SCHEMA = "p2phd.render-settings/1"
MANIFEST_FILE = "render.h5"
PAGE_FILE = "index.html"
PNG_LEVEL = 6  # PIL's default zlib level: lossless either way, level only trades size for time
# Temporaries are tagged with host and pid: shards on several machines may share one folder, and
# only a writer on this host can be known to be dead.
_HOST = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "host"
_TMP_RE = re.compile(r"^\.(?P<final>.+)\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.tmp$")


def shard_manifest_name(index: int, count: int) -> str:
    return f"render-shard-{index}-of-{count}.h5"


def synthesized_names(name: str, variants: int) -> list[str]:
    if variants == 1:
        return [f"{name}_synthesized.png"]
    return [f"{name}_synthesized_v{k}.png" for k in range(variants)]


def sample_files(name: str, variants: int, has_photo: bool) -> dict[str, Any]:
    """The files of one sample: {'synthesized': [...], 'label': str, 'real': str or ''}."""
    return {
        "synthesized": synthesized_names(name, variants),
        "label": f"{name}_label.png",
        "real": f"{name}_real.png" if has_photo else "",
    }


def all_files(files: dict[str, Any]) -> list[str]:
    return [*files["synthesized"], files["label"], *([files["real"]] if files["real"] else [])]


def existing(out: Path) -> set[str]:
    """Names of the files in the output folder (one listdir instead of a stat per file)."""
    try:
        return set(os.listdir(out))
    except FileNotFoundError:
        return set()


def is_done(files: dict[str, Any], present: set[str]) -> bool:
    return all(f in present for f in all_files(files))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(out: Path) -> int:
    """Delete temporaries of writers that no longer run (killed renders); returns how many."""
    removed = 0
    for entry in existing(out):
        m = _TMP_RE.match(entry)
        if m and m["host"] == _HOST and not _pid_alive(int(m["pid"])):
            (out / entry).unlink(missing_ok=True)
            removed += 1
    return removed


def tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.tmp")


def save_png(array: np.ndarray, path: Path) -> None:
    """Lossless PNG written beside ``path`` under a host+pid-tagged hidden name, then renamed."""
    tmp = tmp_name(path)
    try:
        with writing(path):
            Image.fromarray(array).save(tmp, format="PNG", compress_level=PNG_LEVEL)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# settings sidecar


def read_settings(out: Path) -> dict[str, Any] | None:
    path = out / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, OSError):
        raise UsageError(
            f"{path}: damaged render settings; pass --overwrite to start over"
        ) from None


_UNCOMPARED = ("paths", "batch_size", "engine")


def settings_key(settings: dict[str, Any]) -> dict[str, Any]:
    """The part of the settings that decides the pixels (paths may move, hashes may not).

    --batch_size and the engine are recorded but not compared: another batch size or engine
    changes at most a few pixels by 1/255 (float rounding), which should not force re-rendering a
    whole split. The precision is compared (bf16 moves pixels by levels); settings written
    before it was recorded were fp32.
    """
    key = {k: v for k, v in settings.items() if k not in _UNCOMPARED}
    return {"precision": "fp32", **key}


def check_settings(out: Path, settings: dict[str, Any], overwrite: bool) -> bool:
    """True if the folder holds renders of other settings that --overwrite will discard.

    Raises UsageError when it does and --overwrite was not given; nothing is written here.
    """
    old = read_settings(out)
    if old is None:
        clash = any(_OURS.match(f) for f in existing(out))
        reason = "PNGs but no render-settings.json"
    else:
        clash = settings_key(old) != settings_key(settings)
        diff = sorted(
            k
            for k in set(old) | set(settings)
            if k not in _UNCOMPARED and settings_key(old).get(k) != settings_key(settings).get(k)
        )
        reason = f"renders made with other {', '.join(diff) or 'settings'}"
    if clash and not overwrite:
        raise UsageError(
            f"{out}: holds {reason}; pass --overwrite to replace them or --out to render elsewhere"
        )
    return clash


def discard_outputs(out: Path) -> None:
    """--overwrite: remove what render writes (PNGs, page, manifests, settings), nothing else."""
    for entry in existing(out):
        if (
            _OURS.match(entry)
            or entry in (SETTINGS_FILE, PAGE_FILE)
            or (entry.startswith("render") and entry.endswith(".h5"))
        ):
            (out / entry).unlink(missing_ok=True)


def write_settings(out: Path, settings: dict[str, Any]) -> None:
    # Shards may start together in one folder: a pid-tagged temporary keeps their writes apart
    # (the contents are identical anyway).
    path = out / SETTINGS_FILE
    tmp = tmp_name(path)
    write_json(tmp, settings)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# overlapped writing


class Writer:
    """Runs write jobs on threads so inference never waits for PNG encoding or the disk.

    ``threads == 0`` runs each job at once in the caller (the benchmark's "no overlap" case).
    At most ``max_pending`` jobs wait at a time, which bounds the memory held by images in
    flight; errors of a job surface in ``submit`` or ``close``.
    """

    def __init__(self, threads: int, max_pending: int = 8) -> None:
        self.pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="render-writer") if threads else None
        )
        self.pending: deque[Future] = deque()
        self.max_pending = max(1, max_pending)

    def submit(self, job: Callable[..., None], *args: Any) -> None:
        if self.pool is None:
            job(*args)
            return
        while len(self.pending) >= self.max_pending or (self.pending and self.pending[0].done()):
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(job, *args))

    def close(self) -> None:
        """Wait for every job; re-raise the first error."""
        if self.pool is None:
            return
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def missing_samples(
    names: Iterable[tuple[int, str]], variants: int, has_photo: bool, present: set[str]
) -> list[int]:
    """Rows (of the given (row, name) pairs) whose files are not all on disk."""
    return [
        row for row, name in names if not is_done(sample_files(name, variants, has_photo), present)
    ]

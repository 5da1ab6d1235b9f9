"""The run's generator exported to ONNX once, for the ONNX engines of ``--engine auto``.

``ensure(run_dir, checkpoint_sha, size, device_target)`` -> (file, sidecar): the export
``<run>/engine-cache/G-<checkpoint sha256, 16 hex>-fp32-opset<OPSET>-w<WRITER>.onnx`` (+ its
``.json`` sidecar, ``deploy.sidecar``), written by ``deploy.export.export`` when missing. The
name holds what decides the file's content: the weights (the checkpoint's hash) and the export
settings (float32 weights and output, the opset, the version of p2phd's ONNX writer), so a
retrained run or a new writer makes a new file and an old one is never used for other weights.

Safe when N shards (separate processes) start at once: each takes an exclusive ``flock`` on
``.<name>.lock`` in the cache folder and waits for it; the first exports (bin/export writes under
a temporary name with its pid and renames, sidecar first); the others then find the file and use
it. A file is used only after its sidecar's SHA-256 matches it and names this checkpoint; a
damaged one is exported again.
"""

import fcntl
import os
from pathlib import Path
from typing import Any

from p2phd.core.cli import UsageError, log
from p2phd.deploy.sidecar import OPSET

DIR = "engine-cache"
# version of what onnx_graph/onnx_ops write for the same weights: bump it when they change, so
# a cached file of an earlier p2phd is not used
WRITER = 1


def path_for(run_dir: Path, checkpoint_sha: str) -> Path:
    return Path(run_dir) / DIR / f"G-{checkpoint_sha[:16]}-fp32-opset{OPSET}-w{WRITER}.onnx"


def available(run_dir: Path, checkpoint_sha: str) -> bool:
    """The export is there, or the run folder takes the cache folder."""
    path = path_for(run_dir, checkpoint_sha)
    if path.is_file():
        return True
    folder = path.parent if path.parent.is_dir() else Path(run_dir)
    return os.access(folder, os.W_OK)


def _valid(path: Path, checkpoint_sha: str, verb: str) -> dict[str, Any] | None:
    """The sidecar of a complete export of this checkpoint, else None."""
    from p2phd.deploy import sidecar

    if not path.is_file():
        return None
    try:
        side = sidecar.read(path, "ONNX")
        sidecar.verify(path, side)
    except UsageError as exc:
        log(f"{verb}: {exc}; exporting again")
        return None
    return side if side["run"]["checkpoint_sha256"] == checkpoint_sha else None


def ensure(
    run_dir: Path,
    checkpoint_sha: str,
    size: tuple[int, int],
    device_target: str = "CPU",
    verb: str = "render",
) -> tuple[Path, dict[str, Any]]:
    """The cached export of the run's G.ckpt (exported now if missing); see module doc."""
    path = path_for(run_dir, checkpoint_sha)
    path.parent.mkdir(exist_ok=True)
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"{verb}: waiting for another process exporting {path}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        side = _valid(path, checkpoint_sha, verb)
        if side is None:
            _export(Path(run_dir), size, path, device_target, verb)
            side = _valid(path, checkpoint_sha, verb)
            if side is None:  # G.ckpt changed while exporting (training still writing it?)
                raise RuntimeError(f"{path}: exported from another G.ckpt than hashed; rerun")
        return path, side
    finally:
        os.close(fd)  # releases the flock


def _export(run_dir: Path, size: tuple[int, int], out: Path, device_target: str, verb: str) -> None:
    from p2phd.core import runs
    from p2phd.deploy import export

    o = export.ExportOptions(
        run=str(run_dir), size=f"{size[0]}x{size[1]}", format="ONNX", device_target=device_target
    )
    doc = runs.read_options(run_dir)
    arch = runs.arch_from_dict(doc["options"])
    ckpt = runs.trained_snapshot(run_dir)
    log(f"{verb}: exporting {run_dir}'s generator to ONNX once ({out})")
    export.export(o, run_dir, doc, arch, ckpt, size, out, [verb, "--engine", "auto"])

"""The run folder (`outputs/<name>/`) as other verbs see it: options and the inference snapshot.

`train` writes `options.json` before its first step and `G.ckpt` (generator, plus the encoder in
feature modes) as it goes; `render` and `precompute` rebuild the networks from the options alone,
so users never repeat --netG/--ngf/--label_nc at render time (a classic pix2pixHD mistake).

Full layout (train writes everything, rank 0 only):

    options.json            {"schema": "p2phd.run/1", "options", "dataset": {path, sha256}, ...}
    G.ckpt                  netG.* (+ netE.* when E trains), meta epoch, step
    G_epoch<EEE>.ckpt       the same every --save_epoch_freq epochs
    state/latest            name of the newest full state, e.g. "step-00001000"
    state/step-<8 digits>/  state.ckpt (netG/netD/netE + optG/optD Adam state), progress.json,
                            pool.npz (with --pool_size); the newest --keep are kept
    stats.jsonl             one JSON line per --print_freq images
    web/index.html          label | synthesized | real per epoch (web/images/*.jpg)
"""

import dataclasses
import datetime as _dt
import json
from pathlib import Path
from typing import Any

from p2phd.core.cli import (
    UsageError,
    WriteError,
    atomic_path,
    disk_full,
    read_json,
    write_json,
    writing,
)
from p2phd.core.options import DataOptions, ModelOptions
from p2phd.core.paths import OPTIONS_FILE

RUN_SCHEMA = "p2phd.run/1"
SNAPSHOT_FILE = "G.ckpt"


@dataclasses.dataclass
class ArchOptions(DataOptions, ModelOptions):
    """The architecture-defining subset of a run's options (enough to rebuild G, E and D)."""

    no_ganFeat_loss: bool = False


def arch_from_dict(d: dict[str, Any]) -> ArchOptions:
    names = {f.name for f in dataclasses.fields(ArchOptions)}
    return ArchOptions(**{k: v for k, v in d.items() if k in names})


def write_options(run_dir: str | Path, options: dict[str, Any], dataset: dict[str, str]) -> Path:
    from p2phd.core.runtime import versions

    path = Path(run_dir) / OPTIONS_FILE
    write_json(
        path,
        {
            "schema": RUN_SCHEMA,
            "options": options,
            "dataset": dataset,
            "versions": versions(),
            "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        },
    )
    return path


def read_options(run_dir: str | Path) -> dict[str, Any]:
    """The run's options.json, checked; raises UsageError if the folder is not a p2phd run."""
    path = Path(run_dir) / OPTIONS_FILE
    if not path.is_file():
        raise UsageError(f"{run_dir}: not a p2phd run folder (no {OPTIONS_FILE})")
    doc = read_json(path, RUN_SCHEMA, "run options file")
    return doc


def snapshot_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / SNAPSHOT_FILE


def trained_snapshot(run_dir: str | Path) -> Path:
    """The run's G.ckpt; UsageError when the run has none yet (render, precompute, export)."""
    path = snapshot_path(run_dir)
    if not path.is_file():
        raise UsageError(
            f"{run_dir}: no generator checkpoint, no {SNAPSHOT_FILE} (train this run first)"
        )
    return path


def load_inference(run_dir: str | Path, max_instances: int = 0):
    """Rebuild G (and E in feature modes) from a run and load its snapshot.

    Returns (G, E or None, ArchOptions, meta). Raises UsageError when the snapshot is missing or
    does not fit the architecture the options describe.
    """
    from p2phd.core import checkpoint
    from p2phd.nets import build_encoder, build_generator

    doc = read_options(run_dir)
    arch = arch_from_dict(doc["options"])
    path = trained_snapshot(run_dir)
    cells = {"netG": build_generator(arch)}
    if arch.use_features() and not doc["options"].get("load_features"):
        pool_segments = arch.label_nc if arch.label_feat else max_instances
        cells["netE"] = build_encoder(arch, max(1, pool_segments))
    report = checkpoint.load(path, cells)
    if report.missing or report.mismatched:
        bad = (report.missing + report.mismatched)[:3]
        raise UsageError(f"{path}: does not match the run's architecture (e.g. {', '.join(bad)})")
    for cell in cells.values():
        cell.set_train(False)
    return cells["netG"], cells.get("netE"), arch, checkpoint.read_meta(path)


# -- full training state (written by train, rank 0 only) --------------------------------------
#
# state/<tag>/state.ckpt   nets + both optimisers (p2phd.checkpoint format: netG.*, netD.*,
#                          netE.*, optG.moment1.netG.*, optG.global_step, optD.*, ...)
# state/<tag>/progress.json  {"epoch", "epoch_step", "step", "images", "fixed_global", "lr"}:
#                          the next step to run is step+1, in `epoch` after `epoch_step` batches
# state/<tag>/pool.npz     the image pool's contents (only with --pool_size)
# state/latest             the <tag> of the newest complete state (tags: step-<8 digits>)
#
# A state folder is written as state/.tmp-<tag> and renamed, then `latest` is replaced, so a
# kill at any moment leaves the previous state usable. The newest `keep` states are kept.

STATE_DIR = "state"
LATEST = "latest"


def state_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / STATE_DIR


def latest_state(run_dir: str | Path) -> Path | None:
    """Folder of the newest complete training state, or None."""
    pointer = state_dir(run_dir) / LATEST
    if not pointer.is_file():
        return None
    folder = state_dir(run_dir) / pointer.read_text().strip()
    return folder if (folder / "progress.json").is_file() else None


def read_progress(folder: str | Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "progress.json").read_text())


def write_state(
    run_dir: str | Path, progress: dict[str, Any], save_ckpt, pool: dict | None, keep: int
) -> Path:
    """Write one state atomically; `save_ckpt(path)` writes the checkpoint file."""
    import os
    import shutil

    import numpy as np

    root = state_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    tag = f"step-{int(progress['step']):08d}"
    tmp = root / f".tmp-{tag}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    final = root / tag
    ok = False
    try:
        save_ckpt(tmp / "state.ckpt")
        with writing(tmp / "pool.npz"):
            if pool:
                np.savez(tmp / "pool.npz", **pool)
        write_json(tmp / "progress.json", progress)
        ok = True
    except WriteError as exc:  # a full disk: the previous state stays the latest
        raise disk_full(final) from exc
    finally:
        if not ok:
            shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    with atomic_path(root / LATEST) as t:
        t.write_text(tag + "\n")
    _prune(root, tag, keep)
    return final


def _prune(root: Path, latest: str, keep: int) -> None:
    import shutil

    tags = sorted(p.name for p in root.glob("step-*") if p.is_dir())
    for tag in tags[: max(0, len(tags) - max(1, keep))]:
        if tag != latest:
            shutil.rmtree(root / tag, ignore_errors=True)
    for junk in root.glob(".tmp-*"):
        shutil.rmtree(junk, ignore_errors=True)


def read_pool(folder: str | Path) -> dict | None:
    import numpy as np

    path = Path(folder) / "pool.npz"
    if not path.is_file():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}

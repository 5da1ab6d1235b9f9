"""Saving and resuming a training run: the full state under `state/`, the inference snapshot
`G.ckpt` and the per-epoch `G_epoch<EEE>.ckpt` (layout: p2phd.core.runs).

The state holds G, D and E, both optimisers, the image pool and the progress counters. No RNG
state is needed: data order, crops and flips are functions of (seed, epoch, index).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from p2phd.core import checkpoint, cli, runs


def resume(trainer: Any, state: Path) -> dict[str, Any]:
    """Load a saved state into the trainer; returns its progress record."""
    prog = runs.read_progress(state)
    trainer.set_phase(bool(prog["fixed_global"]))
    report = checkpoint.load(state / "state.ckpt", trainer.state_cells())
    if not report.complete:
        bad = (report.missing + report.mismatched)[0]
        raise cli.UsageError(f"{state}: training state does not fit this run ({bad})")
    pool = runs.read_pool(state)
    if pool:
        trainer.pool.load(pool)
    return prog


def save_state(run_dir: Path, o: Any, trainer: Any, progress: dict[str, Any]) -> None:
    """The full state (kept: the last --keep) and the inference snapshot G.ckpt."""
    step = progress["step"]
    runs.write_state(
        run_dir,
        progress,
        lambda p: checkpoint.save(p, trainer.state_cells(), {"step": step}),
        trainer.pool.state() if o.pool_size else None,
        o.keep,
    )
    epoch = progress["epoch"] if progress["epoch_step"] else progress["epoch"] - 1
    checkpoint.save(
        runs.snapshot_path(run_dir), trainer.inference_cells(), {"epoch": epoch, "step": step}
    )


def save_epoch_snapshot(run_dir: Path, trainer: Any, epoch: int, step: int) -> None:
    checkpoint.save(
        run_dir / f"G_epoch{epoch:03d}.ckpt",
        trainer.inference_cells(),
        {"epoch": epoch, "step": step},
    )

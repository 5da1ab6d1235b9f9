"""bin/render started by msrun: every rank renders its share, rank 0 writes the page and manifest.

Rank r of N renders rows r, r+N, ... (the ``--shard r/N`` rule) on the device of its local rank,
into the one output folder (storage every node sees). Rank 0 alone discards earlier renders
(``--overwrite``) and, its own share done, waits until every sample of the split is on disk
(``core.ranks``), then writes ``index.html`` and ``render.h5`` exactly as ``--merge`` does. The
others wait only for rank 0 to have taken over a folder it is replacing. A rerun renders only the
samples still missing, whichever rank they belong to.
"""

import dataclasses
import time
from collections.abc import Callable

from p2phd.core import ranks
from p2phd.core.cli import UsageError, emit, log
from p2phd.core.runtime import Place
from p2phd.rendering import files as rf
from p2phd.rendering.plan import Plan

STATUS_DIR = ".ranks"  # inside the output folder: rank-<r>.json status files


def _missing(p: Plan, rows: list[int]) -> list[int]:
    present = rf.existing(p.out)
    return rf.missing_samples(rows, p.files, present)


def _take_folder(p: Plan, place: Place) -> None:
    """Rank 0 discards renders of other settings and writes ours; the others wait for that."""
    overwrite = rf.check_settings(p.out, p.settings, p.o.overwrite)
    if place.rank == 0:
        p.out.mkdir(parents=True, exist_ok=True)
        if overwrite:
            log(f"render: --overwrite: discarding the earlier renders in {p.out}")
            rf.discard_outputs(p.out)
        rf.write_settings(p.out, p.settings)
        rf.remove_stale_temporaries(p.out)
        return
    if not overwrite:  # same settings, or a new folder: writing them again changes no byte
        p.out.mkdir(parents=True, exist_ok=True)
        rf.write_settings(p.out, p.settings)
        return
    deadline = time.monotonic() + ranks.timeout_seconds()
    while rf.settings_key(rf.read_settings(p.out) or {}) != rf.settings_key(p.settings):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{p.out}: rank 0 did not replace the earlier renders in time")
        time.sleep(ranks.POLL_SECONDS)


def run(p: Plan, place: Place, argv: list[str] | None, finish: Callable[..., None]) -> int:
    """Render this rank's rows; rank 0 then waits and writes it all with ``finish`` (render's)."""
    if p.o.shard or p.o.merge:
        raise UsageError(
            f"under msrun each rank renders its own shard ({place}) and rank 0 merges: "
            "do not pass --shard or --merge"
        )
    mine = dataclasses.replace(p, rows=p.rows[place.rank :: place.world])
    if p.o.dry_run:
        log(f"would render {len(_missing(mine, mine.rows))} of {len(mine.rows)} samples ({place})")
        return 0
    _take_folder(p, place)
    style_cache: dict[int, list[str]] = {}
    with ranks.reporting(p.out / STATUS_DIR, place, "render"):
        todo = _missing(mine, mine.rows)
        log(f"render: {place}: {len(todo)} of {len(mine.rows)} samples to render into {p.out}")
        if todo:
            from p2phd.rendering.loop import render_samples

            st = render_samples(mine, todo, style_cache)
            log(f"render: {place}: {st['images']} images in {st['seconds']:.1f} s")
        if place.rank != 0:
            return 0
        ranks.wait_for_ranks(
            p.out / STATUS_DIR,
            place,
            ready=lambda: not _missing(p, p.rows),
            what=lambda: f"{len(_missing(p, p.rows))} of {len(p.rows)} samples still missing",
            verb="render",
        )
        finish(p, style_cache, argv)
    emit(p.out)
    return 0

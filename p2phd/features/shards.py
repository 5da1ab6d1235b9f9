"""bin/precompute in shards: ``--shard I/N``, ``--merge``, and every rank of msrun at once.

A shard file ``<out stem>.shard-I-of-N.h5`` is a feature manifest in the making that holds rows
I, I+N, ... (maps plus their ``pending`` object rows, as ``FeatureWriter`` keeps them). It is
written through ``<shard>.tmp`` like the whole manifest, so a killed shard resumes and a shard
file that exists is complete. It counts only if written with the same options, encoder and
dataset (otherwise it is encoded again). ``merge`` copies every sample, in the dataset's order,
from the shard that holds it into one ``FeatureWriter``: the result is row for row the manifest a
single process writes. Under msrun rank r writes shard r of N and rank 0, once all shard files
exist, merges them and deletes them.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py

from p2phd.core import manifest, ranks
from p2phd.core.cli import UsageError, log
from p2phd.core.runtime import Place
from p2phd.data.dataset import Dataset
from p2phd.features.feature_manifest import (
    KIND,
    ROW_COLUMNS,
    FeatureWriter,
    discard_damaged_tmp,
)


@dataclass
class Job:
    """What precompute resolved: the output, inputs, the manifest's options and attributes, and
    how to load the encoder and encode rows (kept here as callables: precompute imports us)."""

    out: Path
    ds: Dataset
    ckpt: Path
    ckpt_sha: str
    options: dict[str, Any]  # precompute.resume_key: the same for every shard and the merge
    attrs: dict[str, Any]  # the feature manifest's root attributes
    load_encoder: Callable[[], Any]
    encode: Callable[[Any, FeatureWriter, list[int]], None]  # (encoder, writer, rows)

    @property
    def inputs(self) -> list[dict[str, str]]:
        return [
            manifest.input_record(self.ckpt, self.ckpt_sha),
            manifest.input_record(self.ds.path, self.ds.sha256()),
        ]

    @property
    def identity(self) -> dict[str, str]:
        return {
            "options": json.dumps(self.options, sort_keys=True, default=str),
            "encoder_sha256": self.ckpt_sha,
            "dataset_sha256": self.ds.sha256(),
        }


def shard_path(out: Path, index: int, count: int) -> Path:
    return out.with_name(f"{out.stem}.shard-{index}-of-{count}{out.suffix}")


def status_dir(out: Path) -> Path:
    return out.with_name(f".{out.name}.ranks")


def is_current(path: Path, identity: dict[str, str]) -> bool:
    """The shard file exists, is readable and was written with these options and inputs."""
    try:
        with h5py.File(path, "r") as f:
            return all(str(f.attrs.get(k, "")) == v for k, v in identity.items())
    except OSError:  # absent, or not a whole HDF5 file
        return False


def write_shard(job: Job, shard: tuple[int, int]) -> Path:
    """Encode rows I, I+N, ... into the shard file (resuming its temporary); returns its path."""
    path = shard_path(job.out, *shard)
    rows = list(range(len(job.ds)))[shard[0] :: shard[1]]
    if is_current(path, job.identity):
        log(f"precompute: {path.name} is complete ({len(rows)} samples)")
        return path
    path.unlink(missing_ok=True)  # written with other options or inputs
    discard_damaged_tmp(path)
    enc = job.load_encoder()
    with manifest.create(path, KIND, "precompute", job.options, job.inputs, resume=True) as f:
        w = FeatureWriter(f, job.ds.names, job.attrs)
        job.encode(enc, w, rows)
    return path


def find_shards(out: Path) -> list[Path]:
    """The shard files of ``out`` on disk: all N of one count, or a one-line error."""
    pattern = re.compile(rf"^{re.escape(out.stem)}\.shard-(\d+)-of-(\d+){re.escape(out.suffix)}$")
    found = {
        (int(m[1]), int(m[2]))
        for p in out.parent.glob(f"{out.stem}.shard-*")
        if (m := pattern.match(p.name))
    }
    counts = {n for _, n in found}
    if len(counts) != 1:
        what = "no shard files" if not counts else f"shards of several counts {sorted(counts)}"
        raise UsageError(f"{out}: --merge found {what} ({out.stem}.shard-I-of-N{out.suffix})")
    n = counts.pop()
    missing = [i for i in range(n) if (i, n) not in found]
    if missing:
        raise UsageError(
            f"{out}: shard {missing[0]}/{n} is not written yet ({len(missing)} of {n} missing); "
            f"run --shard {missing[0]}/{n} first"
        )
    return [shard_path(out, i, n) for i in range(n)]


def merge(job: Job, argv: list[str] | None, paths: list[Path] | None = None) -> None:
    """Write the whole feature manifest from the shard files, then delete them."""
    paths = paths or find_shards(job.out)
    stale = [p for p in paths if not is_current(p, job.identity)]
    if stale:
        raise UsageError(
            f"{stale[0]}: written with other options, encoder or dataset; encode that shard again"
        )
    files = [h5py.File(p, "r") for p in paths]
    try:
        with manifest.create(job.out, KIND, "precompute", job.options, job.inputs, argv=argv) as f:
            w = FeatureWriter(f, job.ds.names, job.attrs)
            for i in range(len(job.ds)):  # the dataset's order: row for row a single run's file
                src, key = files[i % len(files)], f"{i:06d}"
                rows = {c: src["pending"][key][c][()] for c in ROW_COLUMNS[1:]}
                w.add(i, src["maps"][key][()], rows)
            w.finish()
    finally:
        for h in files:
            h.close()
    for p in paths:
        p.unlink()
    log(f"precompute: merged {len(paths)} shards into {job.out}")


def run(job: Job, shard: str, place: Place, argv: list[str] | None) -> Path | None:
    """``--shard I/N`` alone, or this rank's shard under msrun (rank 0 then merges all).

    Returns the path to print: the shard file, the merged manifest (rank 0), or None.
    """
    if place.distributed and shard:
        raise UsageError(f"under msrun the rank chooses the shard ({place}): drop --shard")
    if not place.distributed:
        return write_shard(job, ranks.parse_shard(shard))
    folder = status_dir(job.out)
    paths = [shard_path(job.out, r, place.world) for r in range(place.world)]
    with ranks.reporting(folder, place, "precompute"):
        write_shard(job, (place.rank, place.world))
        if place.rank != 0:
            return None
        ranks.wait_for_ranks(
            folder,
            place,
            ready=lambda: all(is_current(p, job.identity) for p in paths),
            what=lambda: (
                f"{sum(not is_current(p, job.identity) for p in paths)} shard files not written yet"
            ),
            verb="precompute",
        )
        merge(job, argv, paths)
    return job.out

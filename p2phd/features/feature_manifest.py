"""The feature manifest ``p2phd.features/1``: written by ``precompute``, read by ``train --load_features``
and by ``cluster``.

Root attributes (besides manifest.py's common ones): ``feat_num``, ``label_nc``, ``label_feat``,
``size`` (H, W of the maps when all samples share one, else (0, 0)), ``encoder_size`` (H, W the
encoder ran at, likewise), ``encoder_checkpoint``, ``encoder_sha256``, ``dataset``,
``dataset_sha256``, ``run`` (run folder), ``run_name``, ``num_samples``.

Datasets:
- ``names`` (N,) utf-8: sample names, the dataset manifest's order;
- ``map_size`` (N, 2) int32: (H, W) of each map;
- ``maps/<i:06d>``: (feat_num, H, W) float32 instance-averaged encoder features. NVIDIA stores
  8-bit PNGs ((x+1)/2*255, truncated); we keep float32, so the 1024p run sees exactly what the
  encoder produced;
- ``rows/``: one row per object (instance; label region in label_feat mode) as equal-length
  columns ``sample`` (int32 row of names), ``instance`` (int32 raw id), ``label`` (int32 class:
  majority label of its pixels), ``feature`` (float32, feat_num), ``area`` (float32 fraction of
  the image's pixels at the encoder's resolution). NVIDIA's area column is num/(h*w//32) with a
  threshold 0.5, i.e. instances above ~1/64 of the image; ours is num/(h*w), threshold 1/64.

While ``precompute`` runs, finished samples live in ``<out>.tmp`` (a map plus ``pending/<i>``
rows, marked complete last), so a killed run resumes; ``finish`` gathers the rows table.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from p2phd.core import manifest
from p2phd.core.cli import UsageError

KIND = "features"
ROW_COLUMNS = ("sample", "instance", "label", "feature", "area")
_STR = h5py.string_dtype("utf-8")


def _common_size(sizes: np.ndarray) -> list[int]:
    if len(sizes) and (sizes == sizes[0]).all():
        return [int(sizes[0][0]), int(sizes[0][1])]
    return [0, 0]


class FeatureWriter:
    """Fills an open (temporary) feature manifest sample by sample; resumable.

    ``attrs`` are the root attributes; when the file already holds samples written with other
    inputs (``identity`` keys differ) it is cleared first.
    """

    IDENTITY = ("feat_num", "encoder_sha256", "dataset_sha256", "label_feat")

    def __init__(self, f: h5py.File, names: Sequence[str], attrs: dict[str, Any]) -> None:
        self.f, self.names = f, list(names)
        stale = any(k in f.attrs and _plain(f.attrs[k]) != _plain(attrs[k]) for k in self.IDENTITY)
        if stale:
            for key in list(f.keys()):
                del f[key]
        f.attrs.update(attrs)
        self.maps = f.require_group("maps")
        self.pending = f.require_group("pending")

    def done(self, i: int) -> bool:
        key = f"{i:06d}"
        return key in self.maps and bool(self.maps[key].attrs.get("complete", False))

    def _drop(self, i: int) -> None:
        key = f"{i:06d}"
        for group in (self.maps, self.pending):
            if key in group:
                del group[key]

    def add(self, i: int, fmap: np.ndarray, rows: dict[str, np.ndarray]) -> None:
        """Store sample i: its (feat_num,H,W) map and its rows (instance, label, feature, area)."""
        self._drop(i)  # a half-written sample from a killed run
        key = f"{i:06d}"
        g = self.pending.create_group(key)
        g.create_dataset("instance", data=np.asarray(rows["instance"], np.int32))
        g.create_dataset("label", data=np.asarray(rows["label"], np.int32))
        g.create_dataset(
            "feature",
            data=np.asarray(rows["feature"], np.float32).reshape(len(rows["instance"]), -1),
        )
        g.create_dataset("area", data=np.asarray(rows["area"], np.float32))
        fmap = np.ascontiguousarray(fmap, np.float32)
        ds = self.maps.create_dataset(
            key, data=fmap, chunks=fmap.shape, compression="gzip", compression_opts=4, shuffle=True
        )
        ds.attrs["complete"] = True  # last: marks the sample as whole
        self.f.flush()

    def finish(self) -> None:
        """Gather the rows table and the sizes; the manifest is complete after this."""
        f, n = self.f, len(self.names)
        missing = [i for i in range(n) if not self.done(i)]
        if missing:
            raise RuntimeError(f"feature manifest incomplete: {len(missing)} samples not written")
        cols: dict[str, list[np.ndarray]] = {c: [] for c in ROW_COLUMNS}
        sizes = np.zeros((n, 2), np.int32)
        for i in range(n):
            g = self.pending[f"{i:06d}"]
            cols["sample"].append(np.full(len(g["instance"]), i, np.int32))
            for c in ROW_COLUMNS[1:]:
                cols[c].append(g[c][()])
            sizes[i] = self.maps[f"{i:06d}"].shape[1:]
        feat_num = int(f.attrs["feat_num"])
        rows = f.create_group("rows")
        for c in ROW_COLUMNS:
            parts = cols[c] or [np.zeros((0, feat_num) if c == "feature" else 0)]
            rows.create_dataset(
                c,
                data=np.concatenate(parts).astype(
                    np.float32 if c in ("feature", "area") else np.int32
                ),
            )
        del f["pending"]
        f.create_dataset("names", data=self.names, dtype=_STR)
        f.create_dataset("map_size", data=sizes)
        f.attrs["size"] = _common_size(sizes)
        f.attrs["num_samples"] = n


def discard_damaged_tmp(out: Path) -> None:
    """A kill during an HDF5 write can leave ``<out>.tmp`` unreadable; start afresh then."""
    from p2phd.core.cli import log

    tmp = manifest.tmp_path(out)
    if not tmp.exists():
        return
    try:
        with h5py.File(tmp, "r") as f:
            for ds in f.get("maps", {}).values():
                ds.attrs.get("complete")
            return
    except Exception:  # noqa: BLE001 - any damage means: do not resume from it
        log(f"precompute: {tmp} is damaged (killed mid-write?), starting afresh")
        tmp.unlink()


def write_feature_manifest(
    path: str | os.PathLike,
    names: Sequence[str],
    maps: Sequence[np.ndarray],
    rows: Sequence[dict[str, np.ndarray]],
    *,
    feat_num: int,
    label_nc: int,
    label_feat: bool = False,
    options: dict[str, Any] | None = None,
    **attrs: Any,
) -> Path:
    """Write a whole feature manifest at once (tests and small tools); ``rows[i]`` per sample."""
    base = {
        "feat_num": int(feat_num),
        "label_nc": int(label_nc),
        "label_feat": bool(label_feat),
        "encoder_checkpoint": "",
        "encoder_sha256": "",
        "dataset": "",
        "dataset_sha256": "",
        "run": "",
        "run_name": "",
        "encoder_size": [0, 0],
    }
    base.update(attrs)
    with manifest.create(path, KIND, "precompute", options or {}) as f:
        w = FeatureWriter(f, names, base)
        for i, (fmap, r) in enumerate(zip(maps, rows, strict=True)):
            w.add(i, fmap, r)
        w.finish()
    return Path(path)


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


class FeatureManifest(manifest.ManifestReader):
    """Read-only view of a feature manifest. Safe to use after fork (reopens in the child)."""

    kind = KIND

    def _load(self, f: h5py.File) -> None:
        missing = [k for k in ("names", "maps", "rows", "map_size") if k not in f]
        missing += [k for k in ("feat_num", "size", "label_nc") if k not in f.attrs]
        if missing:
            raise UsageError(
                f"{self.path}: incomplete feature manifest (missing {', '.join(missing)})"
            )
        self.names: list[str] = list(f["names"].asstr()[()])
        self.map_sizes: np.ndarray = f["map_size"][()]
        self._index = {n: i for i, n in enumerate(self.names)}

    feat_num = property(lambda self: int(self.attrs["feat_num"]))
    label_nc = property(lambda self: int(self.attrs["label_nc"]))
    label_feat = property(lambda self: bool(self.attrs.get("label_feat", False)))

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) shared by all maps, or (0, 0) when sizes differ (see ``map_sizes``)."""
        h, w = (int(v) for v in self.attrs["size"])
        return h, w

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise UsageError(f"{self.path}: no features for sample {name!r}") from None

    def map(self, name: str) -> np.ndarray:
        """(feat_num, H, W) float32 feature map of a sample, by name."""
        return self._file()["maps"][f"{self.index(name):06d}"][()]

    def rows(self) -> dict[str, np.ndarray]:
        """The per-object table: sample, instance, label, feature (R, feat_num), area."""
        g = self._file()["rows"]
        return {c: g[c][()] for c in ROW_COLUMNS}

    def __repr__(self) -> str:
        return f"FeatureManifest({str(self.path)!r}, n={len(self)}, feat_num={self.feat_num}, size={self.size})"

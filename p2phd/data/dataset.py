"""The dataset manifest ``p2phd.dataset/1``: written once by ``prepare``, read by training/rendering.

Layout (docs/internals.md is the contract): root attributes ``dataset``, ``split``, ``label_nc``,
``input_nc``, ``has_instance``, ``has_photo``, ``load_size``, ``num_samples``, ``max_instances``;
row datasets ``names``, ``label_path``, ``inst_path``, ``photo_path``, ``orig_size``, ``size``;
images ``label/<i:06d>`` (uint8 HxW, or HxWx3 when label_nc is 0), ``inst/<i:06d>`` (int32 HxW),
``photo/<i:06d>`` (uint8 HxWx3), each one gzip-compressed chunk.

Images can be compressed away from the writer (``encode`` in joblib workers) and handed over as
``Encoded`` payloads, which the writer stores with ``write_direct_chunk``: compression is most of
the cost of writing, and the parent process is the only one allowed to touch the HDF5 file.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from p2phd.core import manifest
from p2phd.core.cli import UsageError

KIND = "dataset"
SPLITS = ("train", "val", "test")
GZIP_LEVEL = 4
_STR = h5py.string_dtype("utf-8")


@dataclass(frozen=True)
class Encoded:
    """One image as the bytes of its single HDF5 chunk (shuffle+deflate already applied)."""

    shape: tuple[int, ...]
    dtype: str
    payload: bytes
    shuffled: bool
    level: int


def encode(arr: np.ndarray, level: int = GZIP_LEVEL) -> Encoded:
    """Compress an image exactly as HDF5's shuffle (for >1-byte types) + deflate filters would."""
    arr = np.ascontiguousarray(arr)
    shuffled = arr.itemsize > 1
    if shuffled:  # HDF5's shuffle filter: all first bytes, then all second bytes, ...
        data = np.ascontiguousarray(arr.view(np.uint8).reshape(-1, arr.itemsize).T).data
    else:
        data = arr.data  # no copy
    return Encoded(tuple(arr.shape), arr.dtype.str, zlib.compress(data, level), shuffled, level)


@dataclass
class Record:
    """One sample for the writer: arrays (or their ``Encoded`` form) plus provenance."""

    name: str
    label: np.ndarray | Encoded
    inst: np.ndarray | Encoded | None = None
    photo: np.ndarray | Encoded | None = None
    label_path: str = ""
    inst_path: str = ""
    photo_path: str = ""
    orig_size: tuple[int, int] = (0, 0)
    num_instances: int | None = None  # distinct instance ids; computed from inst when None


@dataclass
class Sample:
    """One stored sample, arrays exactly as stored (see the module docstring for dtypes)."""

    name: str
    label: np.ndarray
    inst: np.ndarray | None
    photo: np.ndarray | None


def _shape_of(x: np.ndarray | Encoded) -> tuple[int, ...]:
    return tuple(x.shape)


class DatasetWriter:
    """Fills an open (temporary) manifest file row by row; call ``finish()`` before closing.

    Rows must be added in strictly increasing name order (names are sorted and unique).
    """

    def __init__(
        self,
        f: h5py.File,
        *,
        dataset: str,
        split: str,
        label_nc: int,
        has_instance: bool,
        has_photo: bool,
        load_size: int,
        level: int = GZIP_LEVEL,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.f, self.level = f, level
        self.label_nc, self.has_instance, self.has_photo = label_nc, has_instance, has_photo
        f.attrs.update(
            {
                "dataset": dataset,
                "split": split,
                "label_nc": int(label_nc),
                "input_nc": 1 if label_nc > 0 else 3,
                "has_instance": bool(has_instance),
                "has_photo": bool(has_photo),
                "load_size": int(load_size),
            }
        )
        self._rows: list[Record] = []
        self._sizes: list[tuple[int, int]] = []
        self._max_instances = 0
        for group in ("label", "inst", "photo"):
            if self._wants(group):
                f.require_group(group)

    def _wants(self, group: str) -> bool:
        return {"label": True, "inst": self.has_instance, "photo": self.has_photo}[group]

    def _check(self, r: Record) -> tuple[int, int]:
        if self._rows and r.name <= self._rows[-1].name:
            raise ValueError(
                f"names must be added sorted and unique: {r.name!r} after {self._rows[-1].name!r}"
            )
        want_label = (2,) if self.label_nc > 0 else (3,)
        if len(_shape_of(r.label)) != want_label[0]:
            raise ValueError(f"{r.name}: label has shape {_shape_of(r.label)}")
        hw = _shape_of(r.label)[:2]
        for group in ("inst", "photo"):
            arr = getattr(r, group)
            if (arr is not None) != self._wants(group):
                raise ValueError(
                    f"{r.name}: {group} {'missing' if arr is None else 'not expected'}"
                )
            if arr is not None and _shape_of(arr)[:2] != hw:
                raise ValueError(
                    f"{r.name}: {group} size {_shape_of(arr)[:2]} differs from label {hw}"
                )
        return hw  # type: ignore[return-value]

    def add(self, r: Record) -> int:
        """Store one sample; returns its row index."""
        hw = self._check(r)
        i = len(self._rows)
        dtypes = {"label": np.uint8, "inst": np.int32, "photo": np.uint8}
        for group in ("label", "inst", "photo"):
            arr = getattr(r, group)
            if arr is not None:
                self._store(f"{group}/{i:06d}", arr, np.dtype(dtypes[group]))
        if r.inst is not None:
            n = r.num_instances
            if n is None:
                n = len(np.unique(r.inst)) if isinstance(r.inst, np.ndarray) else 0
            self._max_instances = max(self._max_instances, int(n))
        # Keep only provenance in memory, not the pixels.
        self._rows.append(
            Record(
                r.name,
                np.empty(0),
                None,
                None,
                r.label_path,
                r.inst_path,
                r.photo_path,
                tuple(r.orig_size),
            )
        )
        self._sizes.append(hw)
        return i

    def _store(self, key: str, arr: np.ndarray | Encoded, dtype: np.dtype) -> None:
        if isinstance(arr, np.ndarray):
            if arr.dtype != dtype:
                raise ValueError(f"{key}: dtype {arr.dtype}, expected {dtype}")
            arr = encode(arr, self.level)
        if np.dtype(arr.dtype) != dtype:
            raise ValueError(f"{key}: dtype {arr.dtype}, expected {dtype}")
        ds = self.f.create_dataset(
            key,
            shape=arr.shape,
            dtype=dtype,
            chunks=arr.shape,
            compression="gzip",
            compression_opts=arr.level,
            shuffle=arr.shuffled,
        )
        ds.id.write_direct_chunk((0,) * len(arr.shape), arr.payload)

    def finish(self) -> None:
        """Write the row tables and the counts; the manifest is complete after this."""
        rows, f = self._rows, self.f
        f.create_dataset("names", data=[r.name for r in rows], dtype=_STR)
        for col in ("label_path", "inst_path", "photo_path"):
            f.create_dataset(col, data=[getattr(r, col) for r in rows], dtype=_STR)
        f.create_dataset(
            "orig_size", data=np.array([r.orig_size for r in rows], np.int32).reshape(-1, 2)
        )
        f.create_dataset("size", data=np.array(self._sizes, np.int32).reshape(-1, 2))
        f.attrs["num_samples"] = len(rows)
        f.attrs["max_instances"] = self._max_instances if self.has_instance else 0


def write_dataset(
    path: str | os.PathLike,
    records: Iterable[Record],
    *,
    dataset: str,
    split: str,
    label_nc: int,
    has_instance: bool,
    has_photo: bool,
    load_size: int,
    options: dict[str, Any] | None = None,
    inputs: Sequence[dict[str, str]] = (),
    argv: Sequence[str] | None = None,
    verb: str = "prepare",
) -> Path:
    """Write a whole dataset manifest atomically (handy for tests and small tools)."""
    with manifest.create(path, KIND, verb, options or {}, inputs, argv=argv) as f:
        w = DatasetWriter(
            f,
            dataset=dataset,
            split=split,
            label_nc=label_nc,
            has_instance=has_instance,
            has_photo=has_photo,
            load_size=load_size,
        )
        for r in records:
            w.add(r)
        w.finish()
    return Path(path)


_REQUIRED = (
    "dataset",
    "split",
    "label_nc",
    "input_nc",
    "has_instance",
    "has_photo",
    "load_size",
    "num_samples",
    "max_instances",
)


class Dataset(manifest.ManifestReader):
    """Read-only view of a dataset manifest. Safe to use after fork (reopens in the child)."""

    kind = KIND

    def _load(self, f: h5py.File) -> None:
        missing = [k for k in _REQUIRED if k not in self.attrs] + [
            k for k in ("names", "size", "orig_size") if k not in f
        ]
        if missing:
            raise UsageError(
                f"{self.path}: incomplete dataset manifest (missing {', '.join(missing)})"
            )
        for k in ("label_nc", "input_nc", "load_size", "num_samples", "max_instances"):
            self.attrs[k] = int(self.attrs[k])
        for k in ("has_instance", "has_photo"):
            self.attrs[k] = bool(self.attrs[k])
        self.names: list[str] = list(f["names"].asstr()[()])
        self.sizes: np.ndarray = f["size"][()]
        self.orig_sizes: np.ndarray = f["orig_size"][()]
        if len(self.names) != self.attrs["num_samples"]:
            raise UsageError(
                f"{self.path}: {len(self.names)} names but num_samples {self.attrs['num_samples']}"
            )

    # Root attributes as properties (the names the options use).
    label_nc = property(lambda self: self.attrs["label_nc"])
    input_nc = property(lambda self: self.attrs["input_nc"])
    has_instance = property(lambda self: self.attrs["has_instance"])
    has_photo = property(lambda self: self.attrs["has_photo"])
    split = property(lambda self: self.attrs["split"])
    load_size = property(lambda self: self.attrs["load_size"])
    max_instances = property(lambda self: self.attrs["max_instances"])
    dataset = property(lambda self: self.attrs["dataset"])

    def __len__(self) -> int:
        return len(self.names)

    def sample(self, i: int) -> Sample:
        n = len(self.names)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range ({n} samples)")
        i %= n
        f, key = self._file(), f"{i:06d}"
        return Sample(
            name=self.names[i],
            label=f["label"][key][()],
            inst=f["inst"][key][()] if self.has_instance else None,
            photo=f["photo"][key][()] if self.has_photo else None,
        )

    __getitem__ = sample

    def __iter__(self) -> Iterator[Sample]:
        return (self.sample(i) for i in range(len(self)))

    def paths(self, i: int) -> dict[str, str]:
        """Source files of sample i ('' when absent)."""
        f = self._file()
        return {k: f[k].asstr()[i] for k in ("label_path", "inst_path", "photo_path")}

    def __repr__(self) -> str:
        return (
            f"Dataset({str(self.path)!r}, split={self.split!r}, n={len(self)}, "
            f"label_nc={self.label_nc}, load_size={self.load_size})"
        )


__all__ = [
    "Dataset",
    "DatasetWriter",
    "Encoded",
    "Record",
    "Sample",
    "encode",
    "write_dataset",
    "KIND",
    "SPLITS",
]

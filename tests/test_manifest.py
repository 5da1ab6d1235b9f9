"""Manifest conventions and the dataset reader: provenance, atomicity, refusals, Dataset API."""

import json
import multiprocessing
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from p2phd.core import manifest
from p2phd.core.cli import UsageError
from p2phd.data.dataset import Dataset, DatasetWriter, Record, encode, write_dataset


def _records(n: int = 3, h: int = 8, w: int = 16) -> list[Record]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        label = rng.integers(0, 35, (h, w), dtype=np.uint8)
        inst = (label.astype(np.int32) * 1000 + rng.integers(0, 4, (h, w))).astype(np.int32)
        photo = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out.append(
            Record(
                f"s{i}",
                label,
                inst,
                photo,
                f"/l{i}.png",
                f"/i{i}.png",
                f"/p{i}.png",
                (2 * h, 2 * w),
            )
        )
    return out


def _write(path: Path, records: list[Record] | None = None) -> Path:
    return write_dataset(
        path,
        records or _records(),
        dataset="unit",
        split="train",
        label_nc=35,
        has_instance=True,
        has_photo=True,
        load_size=16,
        options={"load_size": 16},
        inputs=[{"path": "/src", "sha256": "ab"}],
    )


def test_roundtrip_attrs_and_arrays(tmp_path: Path) -> None:
    recs = _records()
    path = _write(tmp_path / "d.h5", recs)
    assert not Path(str(path) + ".tmp").exists()
    with h5py.File(path, "r") as f:
        attrs = manifest.read_attrs(f)
        for key in ("schema", "created_by", "argv", "options", "created_at", "versions", "inputs"):
            assert key in attrs, key
        assert attrs["schema"] == "p2phd.dataset/1" and attrs["options"] == {"load_size": 16}
        assert (
            attrs["inputs"] == [{"path": "/src", "sha256": "ab"}] and "numpy" in attrs["versions"]
        )
        ds = f["inst/000001"]
        assert ds.chunks == ds.shape and ds.compression == "gzip" and ds.dtype == np.int32
        assert f["names"].asstr()[()].tolist() == ["s0", "s1", "s2"]
    with Dataset(path) as d:
        assert len(d) == 3 and d.names == ["s0", "s1", "s2"] and d.dataset == "unit"
        assert d.max_instances == max(len(np.unique(r.inst)) for r in recs)
        assert d.orig_sizes.tolist() == [[16, 32]] * 3 and d.sizes.tolist() == [[8, 16]] * 3
        for i, r in enumerate(recs):
            s = d[i]
            np.testing.assert_array_equal(s.label, r.label)
            np.testing.assert_array_equal(s.inst, r.inst)
            np.testing.assert_array_equal(s.photo, r.photo)
        assert d.sample(-1).name == "s2"
        with pytest.raises(IndexError):
            d.sample(3)
        assert d.paths(2) == {
            "label_path": "/l2.png",
            "inst_path": "/i2.png",
            "photo_path": "/p2.png",
        }
        assert d.sha256() == manifest.sha256_file(path)


def test_encoded_payloads_equal_plain_arrays(tmp_path: Path) -> None:
    """Workers hand over pre-compressed chunks; they must read back bit-identical."""
    plain = _records()
    enc = [
        Record(
            r.name,
            encode(r.label),
            encode(r.inst),
            encode(r.photo, 1),
            orig_size=r.orig_size,
            num_instances=len(np.unique(r.inst)),
        )
        for r in plain
    ]
    with (
        Dataset(_write(tmp_path / "a.h5", plain)) as a,
        Dataset(_write(tmp_path / "b.h5", enc)) as b,
    ):
        assert a.max_instances == b.max_instances
        for i in range(len(a)):
            for x, y in zip(vars(a[i]).values(), vars(b[i]).values(), strict=True):
                np.testing.assert_array_equal(x, y)


def test_writer_refuses_bad_rows(tmp_path: Path) -> None:
    r = _records(2)
    with pytest.raises(ValueError, match="sorted and unique"):
        _write(tmp_path / "x.h5", [r[1], r[0]])
    bad = Record("a", r[0].label, r[0].inst[:4], r[0].photo)
    with pytest.raises(ValueError, match="differs"):
        _write(tmp_path / "x.h5", [bad])
    with pytest.raises(ValueError, match="dtype"):
        _write(tmp_path / "x.h5", [Record("a", r[0].label, r[0].inst.astype(np.int64), r[0].photo)])
    with pytest.raises(ValueError, match="photo missing"):
        _write(tmp_path / "x.h5", [Record("a", r[0].label, r[0].inst, None)])
    assert list(tmp_path.iterdir()) == []  # atomic: nothing left by the failed writes


def test_create_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "m.h5"
    with pytest.raises(RuntimeError), manifest.create(target, "dataset", "test", {}) as f:
        f.create_dataset("x", data=[1])
        assert Path(str(target) + ".tmp").exists() and not target.exists()
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_reader_refuses_wrong_kind(tmp_path: Path) -> None:
    with manifest.create(tmp_path / "f.h5", "features", "precompute", {}):
        pass
    with pytest.raises(UsageError, match="is a features manifest, expected a dataset manifest"):
        Dataset(tmp_path / "f.h5")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(UsageError, match="not a p2phd manifest"):
        Dataset(tmp_path / "plain.h5")
    with pytest.raises(UsageError, match="no such manifest"):
        Dataset(tmp_path / "missing.h5")


def test_reader_refuses_newer_schema(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.h5")
    with h5py.File(path, "a") as f:
        f.attrs["schema"] = "p2phd.dataset/2"
    with pytest.raises(UsageError, match="schema version 2 is newer than this p2phd reads"):
        Dataset(path)


def test_reader_refuses_truncated_or_incomplete(tmp_path: Path) -> None:
    path = _write(tmp_path / "d.h5")
    cut = tmp_path / "cut.h5"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError, match="truncated or damaged") as exc:
        Dataset(cut)
    assert "\n" not in str(exc.value) and str(cut) in str(exc.value)
    inc = tmp_path / "inc.h5"
    shutil.copy(path, inc)
    with h5py.File(inc, "a") as f:
        del f["names"]
    with pytest.raises(UsageError, match="incomplete dataset manifest"):
        Dataset(inc)


_FORKED: list[Dataset] = []


def _child_reads() -> list[int]:
    ds = _FORKED[0]  # inherited through fork with its parent's open handle
    return [int(ds.sample(i).label.sum()) for i in range(len(ds))]


def test_reader_works_after_fork(tmp_path: Path) -> None:
    _FORKED[:] = [Dataset(_write(tmp_path / "d.h5"))]
    expected = _child_reads()
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_child_reads) == expected
    assert _child_reads() == expected
    _FORKED.pop().close()


def test_dataset_without_instances_or_photos(tmp_path: Path) -> None:
    path = tmp_path / "l.h5"
    with manifest.create(path, "dataset", "test", {}) as f:
        w = DatasetWriter(
            f,
            dataset="u",
            split="test",
            label_nc=0,
            has_instance=False,
            has_photo=False,
            load_size=0,
        )
        w.add(Record("a", np.zeros((4, 8, 3), np.uint8)))
        w.finish()
    with Dataset(path) as d:
        assert (d.input_nc, d.max_instances, d.has_instance, d.has_photo) == (3, 0, False, False)
        s = d[0]
        assert s.inst is None and s.photo is None and s.label.shape == (4, 8, 3)
        assert json.loads(json.dumps(d.attrs, default=str))["split"] == "test"

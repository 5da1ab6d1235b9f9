"""bin/prepare: layouts, pairing, resizing rule, bad inputs (exit 2, file named, nothing left)."""

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SAMPLE_SIZE, TINY_H, TINY_TEST, TINY_TRAIN, TINY_W, tiny_frame
from PIL import Image

from p2phd.core.cli import run_verb
from p2phd.data import prepare
from p2phd.data.dataset import Dataset
from p2phd.data.sources import sample_name, target_size


def run_prepare(*args: str) -> int:
    return run_verb(prepare.main, list(args))


def nearest_index(src: int, dst: int) -> np.ndarray:
    """PIL's NEAREST rule: destination pixel x samples source pixel floor((x + 0.5) * src / dst)."""
    return ((np.arange(dst) + 0.5) * src / dst).astype(int)


# ---------------------------------------------------------------- tiny data (always runs)


def test_tiny_arrays_match_the_pngs(tiny_manifest: Path, tiny_cityscapes: Path) -> None:
    with Dataset(tiny_manifest) as ds:
        assert ds.names == sorted(TINY_TRAIN)
        assert (ds.split, ds.label_nc, ds.input_nc, ds.has_instance, ds.has_photo) == (
            "train",
            35,
            1,
            True,
            True,
        )
        assert ds.attrs["load_size"] == 0 and ds.attrs["dataset"] == "tiny_cityscapes"
        expected_max = 0
        for i, name in enumerate(ds.names):
            label, inst, photo = tiny_frame(TINY_TRAIN.index(name))
            s = ds.sample(i)
            assert s.name == name
            assert (
                s.label.dtype == np.uint8 and s.inst.dtype == np.int32 and s.photo.dtype == np.uint8
            )
            np.testing.assert_array_equal(s.label, label)
            np.testing.assert_array_equal(s.inst, inst)
            np.testing.assert_array_equal(s.photo, photo)
            assert s.inst.max() >= 24000  # labelId*1000+k survives (16-bit PNG -> int32)
            assert ds.sizes[i].tolist() == ds.orig_sizes[i].tolist() == [TINY_H, TINY_W]
            paths = ds.paths(i)
            assert Path(paths["label_path"]).name == f"{name}_gtFine_labelIds.png"
            assert Path(paths["label_path"]).parent == (tiny_cityscapes / "train_label").resolve()
            assert Path(paths["inst_path"]).name == f"{name}_gtFine_instanceIds.png"
            assert Path(paths["photo_path"]).name == f"{name}_leftImg8bit.png"
            expected_max = max(expected_max, len(np.unique(inst)))
        assert ds.max_instances == expected_max


def test_test_phase_has_no_photos_and_resizes(tiny_cityscapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.h5"
    assert (
        run_prepare(
            "--dataroot",
            str(tiny_cityscapes),
            "--phase",
            "test",
            "--load_size",
            "64",
            "--jobs",
            "1",
            "--out",
            str(out),
        )
        == 0
    )
    with Dataset(out) as ds:
        assert ds.names == TINY_TEST and not ds.has_photo and ds.split == "test"
        s = ds.sample(0)
        assert s.photo is None and s.label.shape == (32, 64)
        label, inst, _ = tiny_frame(100)
        rows, cols = nearest_index(TINY_H, 32), nearest_index(TINY_W, 64)
        np.testing.assert_array_equal(s.label, label[rows][:, cols])
        np.testing.assert_array_equal(s.inst, inst[rows][:, cols])


def test_target_size_is_scale_width() -> None:
    assert target_size(2048, 1024, 1024) == (1024, 512)
    assert target_size(2048, 1024, 0) == (2048, 1024)
    assert target_size(128, 72, 100) == (100, 56)  # h = int(load * h / w), as pix2pixHD
    assert target_size(100, 50, 100) == (100, 50)


def test_pairing_is_by_name() -> None:
    assert sample_name(Path("aachen_000001_000019_gtFine_labelIds.png")) == "aachen_000001_000019"
    assert sample_name(Path("aachen_000001_000019_leftImg8bit.png")) == "aachen_000001_000019"
    assert sample_name(Path("0007.jpg")) == "0007"


def test_pairs_by_name_not_sort_order(tiny_cityscapes: Path, tmp_path: Path) -> None:
    # Photos renamed to a plain stem sort differently from the labels; pairing must still hold.
    for i, name in enumerate(TINY_TRAIN):
        for sub, suffix in (
            ("train_label", "_gtFine_labelIds"),
            ("train_inst", "_gtFine_instanceIds"),
            ("train_img", "_leftImg8bit"),
        ):
            src = tiny_cityscapes / sub / f"{name}{suffix}.png"
            src.rename(src.with_name(f"{'zab'[i] if sub == 'train_img' else 'abz'[i]}{i}.png"))
    out = tmp_path / "o.h5"
    assert (
        run_prepare(
            "--dataroot", str(tiny_cityscapes), "--out", str(out), "--load_size", "0", "--jobs", "1"
        )
        == 2
    )  # names z0/a0 differ: unpaired
    for i in range(3):
        (tiny_cityscapes / "train_img" / f"{'zab'[i]}{i}.png").rename(
            tiny_cityscapes / "train_img" / f"{'abz'[i]}{i}.png"
        )
    assert (
        run_prepare(
            "--dataroot", str(tiny_cityscapes), "--out", str(out), "--load_size", "0", "--jobs", "1"
        )
        == 0
    )
    with Dataset(out) as ds:
        assert ds.names == ["a0", "b1", "z2"]
        for i, name in enumerate(ds.names):
            label, _, photo = tiny_frame("abz".index(name[0]))
            np.testing.assert_array_equal(ds.sample(i).label, label)
            np.testing.assert_array_equal(ds.sample(i).photo, photo)


def test_label_nc_0_ab_layout(tmp_path: Path) -> None:
    root = tmp_path / "facades"
    (root / "train_A").mkdir(parents=True)
    (root / "train_B").mkdir()
    rng = np.random.default_rng(1)
    a = {n: rng.integers(0, 256, (40, 80, 3), dtype=np.uint8) for n in ("x1", "x2")}
    for n, arr in a.items():
        Image.fromarray(arr).save(root / "train_A" / f"{n}.png")
        Image.fromarray(255 - arr).save(root / "train_B" / f"{n}.png")
    out = tmp_path / "ab.h5"
    assert (
        run_prepare(
            "--dataroot",
            str(root),
            "--label_nc",
            "0",
            "--no_instance",
            "--load_size",
            "40",
            "--jobs",
            "1",
            "--out",
            str(out),
        )
        == 0
    )
    with Dataset(out) as ds:
        assert (ds.label_nc, ds.input_nc, ds.has_instance, ds.max_instances) == (0, 3, False, 0)
        s = ds.sample(1)
        assert s.inst is None and s.label.shape == (20, 40, 3) and s.photo.shape == (20, 40, 3)
        want = np.asarray(Image.fromarray(a["x2"]).resize((40, 20), Image.BICUBIC))
        np.testing.assert_array_equal(s.label, want)


def test_jobs_2_equals_jobs_1_and_dry_run_writes_nothing(
    tiny_cityscapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    outs = [tmp_path / "j1.h5", tmp_path / "j2.h5"]
    for jobs, out in zip(("1", "2"), outs, strict=True):
        assert (
            run_prepare(
                "--dataroot",
                str(tiny_cityscapes),
                "--load_size",
                "96",
                "--jobs",
                jobs,
                "--out",
                str(out),
            )
            == 0
        )
    with Dataset(outs[0]) as a, Dataset(outs[1]) as b:
        assert a.names == b.names
        for i in range(len(a)):
            for x, y in zip(vars(a.sample(i)).values(), vars(b.sample(i)).values(), strict=True):
                np.testing.assert_array_equal(x, y)
    capsys.readouterr()
    dry = tmp_path / "dry.h5"
    assert run_prepare("--dataroot", str(tiny_cityscapes), "--out", str(dry), "--dry-run") == 0
    cap = capsys.readouterr()
    assert cap.out == "" and "would write" in cap.err and '"load_size": 1024' in cap.err
    assert not dry.exists() and not Path(str(dry) + ".tmp").exists()


def test_bin_prepare_stdout_is_the_path(tiny_cityscapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "m" / "x.h5"
    proc = subprocess.run(
        [
            str(REPO / "bin" / "prepare"),
            "--data_root",
            str(tiny_cityscapes),
            "--load_size",
            "64",
            "--jobs",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{out}\n"
    # stderr is a pipe, not a terminal: progress as whole plain lines (core.bars), the last one
    # when the work ends; no carriage-return redraws or bar characters in a log file
    assert re.search(r"^prepare: 3/3 img \[", proc.stderr, re.M), proc.stderr
    assert "\r" not in proc.stderr and "\u2588" not in proc.stderr
    assert out.is_file()


def test_default_output_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # manifests/ of the working directory (tests/test_install.py)
    o = prepare.PrepareOptions(dataroot="/data/cityscapes", phase="val", load_size=512)
    assert prepare.resolve_out(o, Path("/data/cityscapes")) == (
        "cityscapes",
        Path("manifests") / "cityscapes-val-512.h5",
    )
    assert prepare.default_out("x", "train", 0).name == "x-train-orig.h5"


# ---------------------------------------------------------------- bad inputs: exit 2, file named


def _png(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr).save(path)


LABEL0 = f"train_label/{TINY_TRAIN[0]}_gtFine_labelIds.png"
INST0 = f"train_inst/{TINY_TRAIN[0]}_gtFine_instanceIds.png"
PHOTO0 = f"train_img/{TINY_TRAIN[0]}_leftImg8bit.png"


def _truncate(root: Path) -> str:
    p = root / PHOTO0
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])  # header intact: caught while decoding in a worker
    return PHOTO0


BAD_INPUTS = {
    "missing photo": (lambda r: (r / PHOTO0).unlink() or LABEL0, [], "no photo"),
    "missing instance map": (lambda r: (r / INST0).unlink() or LABEL0, [], "--no_instance"),
    "photo without label": (
        lambda r: (r / LABEL0).unlink() or (r / INST0).unlink() or PHOTO0,
        [],
        "no label map",
    ),
    "corrupt file": (
        lambda r: (r / INST0).write_bytes(b"not a png at all") and INST0,
        [],
        "not an image",
    ),
    "truncated png": (_truncate, [], "cannot decode"),
    "non-image file": (
        lambda r: (r / "train_label" / "notes.txt").write_text("hi") and "train_label/notes.txt",
        [],
        "not an image file",
    ),
    "size differs": (
        lambda r: _png(r / PHOTO0, np.zeros((TINY_H, TINY_W + 2, 3), np.uint8)) or PHOTO0,
        [],
        "differs",
    ),
    # the first sample in name order is the first reported
    "label >= label_nc": (
        lambda r: f"{min(TINY_TRAIN)}_gtFine_labelIds.png",
        ["--label_nc", "20"],
        "values 23, 24, 26 outside 0..19",
    ),
    "label value 40": (
        lambda r: _png(r / LABEL0, np.full((TINY_H, TINY_W), 40, np.uint8)) or LABEL0,
        [],
        "values 40 outside 0..34",
    ),
    "rgb label": (
        lambda r: _png(r / LABEL0, np.zeros((TINY_H, TINY_W, 3), np.uint8)) or LABEL0,
        [],
        "mode RGB",
    ),
    "rgb instance map": (
        lambda r: _png(r / INST0, np.zeros((TINY_H, TINY_W, 3), np.uint8)) or INST0,
        [],
        "instance map has mode RGB",
    ),
    "grey photo": (
        lambda r: _png(r / PHOTO0, np.zeros((TINY_H, TINY_W), np.uint8)) or PHOTO0,
        [],
        "mode L, expected RGB",
    ),
    "duplicate name": (
        lambda r: (
            _png(r / "train_label" / f"{TINY_TRAIN[0]}_x.png", np.zeros((TINY_H, TINY_W), np.uint8))
            or LABEL0
        ),
        [],
        "same sample name",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_exits_2_naming_the_file(
    case: str, tiny_cityscapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    damage, extra, words = BAD_INPUTS[case]
    named = damage(tiny_cityscapes)
    out_dir = tmp_path / "out"
    rc = run_prepare(
        "--dataroot",
        str(tiny_cityscapes),
        "--load_size",
        "0",
        "--jobs",
        "1",
        "--out",
        str(out_dir / "x.h5"),
        *extra,
    )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert rc == 2, err
    assert Path(named).name in err and words in err, err
    assert not out_dir.exists() or list(out_dir.iterdir()) == [], "something was left behind"


def test_usage_errors(tiny_cityscapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_prepare("--load_size", "0") == 2
    assert "--dataroot is required" in capsys.readouterr().err
    assert run_prepare("--dataroot", str(tmp_path / "nowhere")) == 2
    assert "no such folder" in capsys.readouterr().err
    assert run_prepare("--dataroot", str(tiny_cityscapes), "--phase", "val") == 2
    assert "val_label" in capsys.readouterr().err
    cs = tmp_path / "cs"
    (cs / "gtFine" / "test" / "berlin").mkdir(parents=True)
    assert run_prepare("--dataroot", str(cs), "--phase", "test", "--cityscapes_split", "test") == 2
    assert "Cityscapes test labels are withheld" in capsys.readouterr().err


# ------------------------------------- the sample (real when present, else the generated stand-in)


def _as_raw_cityscapes(sample: Path, dest: Path) -> Path:
    """Rebuild the sample as a raw Cityscapes tree (symlinks): train frames, test = val frames."""
    for phase, split in (("train", "train"), ("test", "val")):
        for sub, top in (
            (f"{phase}_label", "gtFine"),
            (f"{phase}_inst", "gtFine"),
            (f"{phase}_img", "leftImg8bit"),
        ):
            for p in sorted((sample / sub).glob("*.png")) if (sample / sub).is_dir() else []:
                city = p.name.split("_")[0]
                (dest / top / split / city).mkdir(parents=True, exist_ok=True)
                os.symlink(p, dest / top / split / city / p.name)
    # Cityscapes also ships color maps and polygons beside the ids: they must be ignored.
    first = next((dest / "gtFine" / "train").glob("*/*_labelIds.png"))
    (first.parent / first.name.replace("labelIds.png", "color.png")).write_bytes(b"x")
    (first.parent / first.name.replace("labelIds.png", "polygons.json")).write_text("{}")
    return dest


@pytest.fixture(scope="module")
def sample_manifests(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    from conftest import sample_dir

    tmp = tmp_path_factory.mktemp("sample")
    raw = _as_raw_cityscapes(sample_dir(), tmp / "cityscapes")
    out = {}
    for layout, root in (("pix2pixhd", sample_dir()), ("raw", raw)):
        for phase in ("train", "test"):
            out[layout, phase] = tmp / f"{layout}-{phase}.h5"
            assert (
                run_prepare(
                    "--dataroot",
                    str(root),
                    "--phase",
                    phase,
                    "--load_size",
                    "256",
                    "--jobs",
                    "2",
                    "--out",
                    str(out[layout, phase]),
                )
                == 0
            )
    return out


@pytest.mark.parametrize("phase", ["train", "test"])
def test_sample_matches_pngs_in_both_layouts(
    phase: str, sample_root: Path, sample_manifests: dict[tuple[str, str], Path]
) -> None:
    w, h = SAMPLE_SIZE  # the real sample's 2048x1024, or the generated stand-in's
    with (
        Dataset(sample_manifests["pix2pixhd", phase]) as a,
        Dataset(sample_manifests["raw", phase]) as b,
    ):
        assert a.names == b.names and len(a) == (8 if phase == "train" else 15)
        assert a.has_photo == b.has_photo == (phase == "train") and a.has_instance
        assert a.max_instances == b.max_instances > 0
        for i, name in enumerate(a.names):
            sa, sb = a.sample(i), b.sample(i)
            for key in ("label", "inst", "photo"):
                x, y = getattr(sa, key), getattr(sb, key)
                assert (x is None) == (y is None) and (x is None or np.array_equal(x, y)), (
                    name,
                    key,
                )
            assert a.orig_sizes[i].tolist() == [h, w] and a.sizes[i].tolist() == [128, 256]
            label_png = Image.open(sample_root / f"{phase}_label" / f"{name}_gtFine_labelIds.png")
            inst_png = np.asarray(
                Image.open(sample_root / f"{phase}_inst" / f"{name}_gtFine_instanceIds.png")
            )
            rows, cols = nearest_index(h, 128), nearest_index(w, 256)
            np.testing.assert_array_equal(sa.label, np.asarray(label_png)[rows][:, cols])
            np.testing.assert_array_equal(sa.inst, inst_png.astype(np.int32)[rows][:, cols])
            if phase == "train":
                photo = Image.open(sample_root / "train_img" / f"{name}_leftImg8bit.png")
                np.testing.assert_array_equal(
                    sa.photo, np.asarray(photo.resize((256, 128), Image.BICUBIC))
                )

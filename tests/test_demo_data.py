"""The demo dataset generator: raw Cityscapes layout, valid ids, class-dependent photos, determinism."""

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from p2phd.data import demo as demo_data

ROOT = Path(__file__).resolve().parents[1]


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.png"))
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    return demo_data.generate(
        tmp_path_factory.mktemp("d") / "cs", n_train=4, n_test=2, width=128, height=64, seed=3
    )


def test_layout_names_and_modes(tree: Path) -> None:
    photos = sorted(tree.glob("leftImg8bit/*/*/*_leftImg8bit.png"))
    assert len(photos) == 6
    assert {p.parts[-3] for p in photos} == {"train", "val"}
    for p in photos:
        split, city = p.parts[-3], p.parts[-2]
        stem = p.name[: -len("_leftImg8bit.png")]
        assert stem.startswith(city + "_") and len(stem.split("_")) == 3
        gt = tree / "gtFine" / split / city
        label = Image.open(gt / f"{stem}_gtFine_labelIds.png")
        inst = Image.open(gt / f"{stem}_gtFine_instanceIds.png")
        img = Image.open(p)
        assert img.mode == "RGB" and label.mode == "L" and inst.mode.startswith("I")
        assert img.size == label.size == inst.size == (128, 64)
    assert not list(tree.parent.glob("*.partial"))


def test_ids_follow_cityscapes(tree: Path) -> None:
    things_seen = 0
    for lp in tree.glob("gtFine/*/*/*_labelIds.png"):
        label = np.asarray(Image.open(lp)).astype(np.int64)
        inst = np.asarray(Image.open(str(lp).replace("labelIds", "instanceIds"))).astype(np.int64)
        assert label.max() < 35
        thing = inst >= 1000
        # things: labelId*1000+k with a thing class; stuff: the label id itself
        assert np.array_equal(inst[thing] // 1000, label[thing])
        assert np.isin(label[thing], list(demo_data.THING_CLASSES)).all()
        assert np.array_equal(inst[~thing], label[~thing])
        assert not np.isin(label[~thing], list(demo_data.THING_CLASSES)).any()
        things_seen += len(np.unique(inst[thing]))
    assert things_seen >= 6 * 3  # every frame has at least 2 cars and a person


def test_photo_depends_on_class(tree: Path) -> None:
    """Road, sky, building and vegetation pixels have clearly different mean colours."""
    means: dict[int, list[np.ndarray]] = {}
    for lp in tree.glob("gtFine/train/*/*_labelIds.png"):
        label = np.asarray(Image.open(lp))
        stem = lp.name.replace("_gtFine_labelIds.png", "")
        img = np.asarray(Image.open(next(tree.glob(f"leftImg8bit/train/*/{stem}_leftImg8bit.png"))))
        for cls in (demo_data.ROAD, demo_data.SKY, demo_data.BUILDING):
            if (label == cls).any():
                means.setdefault(cls, []).append(img[label == cls].astype(float).mean(0))
    avg = {c: np.mean(v, 0) for c, v in means.items()}
    assert len(avg) == 3
    cs = list(avg)
    for i in range(len(cs)):
        for j in range(i + 1, len(cs)):
            assert np.abs(avg[cs[i]] - avg[cs[j]]).max() > 30, (cs[i], cs[j])


def test_deterministic_and_seeded(tmp_path: Path, tree: Path) -> None:
    again = demo_data.generate(
        tmp_path / "again", n_train=4, n_test=2, width=128, height=64, seed=3
    )
    other = demo_data.generate(
        tmp_path / "other", n_train=4, n_test=2, width=128, height=64, seed=4
    )
    assert _digest(again) == _digest(tree)
    assert _digest(other) != _digest(tree)


def test_refuses_foreign_folder_and_replaces_own(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep")
    with pytest.raises(ValueError, match="not a demo dataset"):
        demo_data.generate(foreign, n_train=1, n_test=0, width=32, height=16)
    assert (foreign / "precious.txt").read_text() == "keep"
    out = demo_data.generate(tmp_path / "d", n_train=2, n_test=0, width=32, height=16)
    demo_data.generate(out, n_train=1, n_test=0, width=32, height=16)
    assert len(list(out.glob("leftImg8bit/train/*/*.png"))) == 1


def test_command_line(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "p2phd.demo_data",
            str(out),
            "--n_train",
            "2",
            "--n_test",
            "1",
            "--width",
            "64",
            "--height",
            "32",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out)
    assert len(list(out.glob("gtFine/val/*/*_labelIds.png"))) == 1
    bad = subprocess.run(
        [sys.executable, "-m", "p2phd.demo_data", str(out), "--width", "4"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "error:" in bad.stderr

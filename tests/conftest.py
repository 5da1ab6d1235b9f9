"""Shared fixtures: the real Cityscapes sample (skipped when absent) and tiny synthetic datasets.

- ``sample_root``: Path to ../shared/data/cityscapes-sample (pix2pixHD layout, 8 train frames
  with photos, 15 test frames without). Tests using it are skipped only when it is absent.
- ``tiny_cityscapes``: a tiny dataset made in the test, pix2pixHD layout, Cityscapes file names:
  ``train_label``/``train_inst``/``train_img`` (3 frames) and ``test_label``/``test_inst``
  (2 frames), 128x64 (W x H). Labels are Cityscapes labelIds (uint8 PNG, 0..33); instance maps
  are 16-bit PNGs with labelId*1000+k for "thing" classes (24..33) and the labelId elsewhere;
  photos are RGB.
- ``tiny_manifest``: ``tiny_cityscapes``'s train split prepared at its original size
  (``--load_size 0``, one job): a ready dataset manifest Path.
"""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SAMPLE = (REPO / ".." / "shared" / "data" / "cityscapes-sample").resolve()
TINY_W, TINY_H = 128, 64
TINY_TRAIN = ["tinyville_000000_000019", "tinyville_000001_000019", "bigtown_000002_000042"]
TINY_TEST = ["tinyville_000100_000019", "tinyville_000101_000019"]


@pytest.fixture
def sample_root() -> Path:
    if not (SAMPLE / "train_label").is_dir():
        pytest.skip(f"Cityscapes sample not found at {SAMPLE}")
    return SAMPLE


def tiny_frame(
    seed: int, w: int = TINY_W, h: int = TINY_H
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label uint8 HxW, instance ids int32 HxW, photo uint8 HxWx3) of one synthetic frame."""
    rng = np.random.default_rng(seed)
    label = np.full((h, w), 7, np.uint8)  # road
    label[: h // 3] = 23  # sky
    label[h // 3 : h // 2] = 11  # building
    label[:2] = 0  # unlabeled border rows, as Cityscapes has (ego vehicle etc.)
    inst = label.astype(np.int32)
    for k in range(int(rng.integers(2, 5))):  # cars (26) and persons (24): thing classes
        cls = 26 if k % 2 == 0 else 24
        y, x = int(rng.integers(h // 2, h - 8)), int(rng.integers(0, w - 12))
        label[y : y + 8, x : x + 12] = cls
        inst[y : y + 8, x : x + 12] = cls * 1000 + k
    palette = rng.integers(0, 256, (34, 3))
    photo = np.clip(palette[label] + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)
    return label, inst, photo


def write_frame(root: Path, phase: str, name: str, seed: int, photo: bool = True) -> None:
    label, inst, img = tiny_frame(seed)
    for folder in (f"{phase}_label", f"{phase}_inst", f"{phase}_img"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    Image.fromarray(label).save(root / f"{phase}_label" / f"{name}_gtFine_labelIds.png")
    Image.fromarray(inst.astype(np.uint16)).save(
        root / f"{phase}_inst" / f"{name}_gtFine_instanceIds.png"
    )
    if photo:
        Image.fromarray(img).save(root / f"{phase}_img" / f"{name}_leftImg8bit.png")


@pytest.fixture
def tiny_cityscapes(tmp_path: Path) -> Path:
    root = tmp_path / "tiny_cityscapes"
    for i, name in enumerate(TINY_TRAIN):
        write_frame(root, "train", name, seed=i)
    for i, name in enumerate(TINY_TEST):
        write_frame(root, "test", name, seed=100 + i, photo=False)
    (root / "test_img").rmdir()
    return root


@pytest.fixture
def tiny_manifest(tiny_cityscapes: Path, tmp_path: Path) -> Path:
    from p2phd.data import prepare

    out = tmp_path / "manifests" / "tiny-train-orig.h5"
    rc = prepare.main(
        ["--dataroot", str(tiny_cityscapes), "--load_size", "0", "--jobs", "1", "--out", str(out)]
    )
    assert rc == 0 and out.is_file()
    return out

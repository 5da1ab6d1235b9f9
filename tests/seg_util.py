"""Shared set-up of the segmentation tests (test_segmentation.py, test_seg_onnx.py): fyu/drn's
fixture files, tiny Cityscapes-like manifests and render folders as bin/render leaves them."""

import hashlib
from pathlib import Path

import numpy as np
from conftest import REAL_SAMPLE
from PIL import Image

from p2phd.core.cli import run_verb
from p2phd.metrics import evaluate

FIX = Path(__file__).resolve().parent / "fixtures" / "drn"
D105 = FIX / "drn_d105_tiny.pth"
C26 = FIX / "drn_c26_tiny.pth"
PHOTO = REAL_SAMPLE / "train_img" / "aachen_000000_000019_leftImg8bit.png"


def load_reference() -> dict[str, np.ndarray]:
    """fyu/drn's numbers for the fixtures (README.md there)."""
    with np.load(FIX / "reference.npz") as z:
        return dict(z)


def reference_photo(ref: dict[str, np.ndarray]) -> np.ndarray:
    """The sample photo at 128x64, as the fixture script resized it (checked by its sha256)."""
    with Image.open(PHOTO) as im:
        photo = np.asarray(im.convert("RGB").resize((128, 64), Image.BICUBIC))
    assert hashlib.sha256(photo.tobytes()).hexdigest() == str(ref["photo_sha256"]), (
        "not the pixels the fixture was made from (another PIL resize?)"
    )
    return photo


def rel(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def check_against_fyu(logits, pred, ref, key: str) -> None:
    want = ref[f"logits_{key}"]
    assert logits.shape == want.shape
    # Both sides are float32 with other summation orders (oneDNN, MLAS or OpenVINO's kernels vs
    # torch's); each is float64_distance (3.8e-6 for the D-105 fixture, 7e-7 for C-26, measured
    # by the fixture script against the same network in float64) from the exact result, so they
    # differ by at most about twice that: 1e-5 holds with margin, and a wrong layer gives > 1e-2.
    assert float(ref[f"float64_distance_{key}"]) < 5e-6
    assert rel(logits, want) <= 1e-5, rel(logits, want)
    # The argmax: equal wherever fyu/drn's top two logits are further apart than float32
    # rounding could move them (here: every pixel).
    top2 = np.sort(want, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 1e-4
    assert clear.mean() > 0.99
    assert np.array_equal(pred[clear], ref[f"pred_{key}"][clear])
    assert len(np.unique(pred)) > 3  # not a constant map


def scene(rng: np.random.Generator, h: int = 64, w: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Cityscapes labelIds (sky, building, vegetation, road, a car, some void) and a photo
    painted from them with noise."""
    label = np.full((h, w), 23, np.uint8)
    label[h // 4 :, : w // 2] = 11
    label[h // 4 :, w // 2 :] = 21
    label[h // 2 :] = 7
    x = int(rng.integers(0, w // 2))
    label[h // 2 : 3 * h // 4, x : x + w // 4] = 26
    label[-4:, :8] = 0
    colours = {23: (70, 130, 180), 11: (70, 70, 70), 21: (107, 142, 35), 7: (128, 64, 128),
               26: (0, 0, 142), 0: (0, 0, 0)}  # fmt: skip
    photo = np.zeros((h, w, 3), np.float64)
    for lid, c in colours.items():
        photo[label == lid] = c
    photo += rng.normal(0, 12, photo.shape)
    return label, np.clip(photo, 0, 255).astype(np.uint8)


def make_manifest(path: Path, label_nc: int = 35, labels_as_images: bool = False) -> Path:
    from p2phd.data.dataset import Record, write_dataset

    rng = np.random.default_rng(5)
    records = []
    for i in range(3):
        label, photo = scene(rng)
        if labels_as_images:
            label = photo.copy()
        records.append(Record(f"town_{i:06d}_000019", label, photo=photo, orig_size=(64, 128)))
    return write_dataset(
        path, records, dataset="tiny", split="test", label_nc=label_nc, has_instance=False,
        has_photo=True, load_size=0,
    )  # fmt: skip


def make_render(out: Path, manifest: Path, size: tuple[int, int] | None = None) -> Path:
    """A render folder as bin/render leaves it: 'synthesized' = the photo, noised (resized
    BICUBIC to ``size`` (H, W) when given)."""
    from p2phd.data.dataset import Dataset
    from p2phd.rendering import files as rf
    from p2phd.rendering.page import write_manifest, write_page

    out.mkdir(parents=True)
    rng = np.random.default_rng(9)
    records = []
    with Dataset(manifest) as ds:
        for r in range(len(ds)):
            s = ds.sample(r)
            img = np.clip(s.photo + rng.normal(0, 10, s.photo.shape), 0, 255).astype(np.uint8)
            if size is not None:
                img = np.asarray(Image.fromarray(img).resize(size[::-1], Image.BICUBIC))
            files = rf.sample_files(s.name, 1, True)
            rf.save_png(img, out / files["synthesized"][0])
            rf.save_png(s.photo, out / files["real"])
            rf.save_png(np.zeros((8, 8, 3), np.uint8), out / files["label"])
            records.append(
                {
                    "row": r,
                    "name": s.name,
                    "files": files,
                    "size": list(img.shape[:2]),
                    "seeds": [-1],
                    "variants": [0],
                    "styles": [""],
                }  # fmt: skip
            )
        attrs = {"dataset": str(manifest.resolve()), "dataset_sha256": ds.sha256(), "split": "test"}
    write_manifest(out / "render.h5", records, attrs, {}, [], None)
    write_page(out / "index.html", records, {"run": "fake", "split": "test"})
    return out


def evaluate_cli(capsys, *args) -> tuple[int, str, str]:
    rc = run_verb(evaluate.main, [str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err

"""bin/evaluate: FID (and KID) of a render folder against the real photos of the same samples,
and its segmentation score (mIoU, pixel accuracy) against the label maps it was rendered from.

``bin/evaluate RENDER_DIR|- [--real MANIFEST] [--inception FILE] [--kid] [--batch_size 8]
[--seg FILE [--seg_real] [--seg_size 256x512|native] [--seg_map FILE]] [--out FILE]``

- What is computed: the FID unless only ``--seg`` is given (``--seg`` alone: the segmentation
  score without the Inception file; ``--seg`` with ``--inception``: both, the row of the
  published tables; neither: the FID with ``pt_inception-2015-12-05-6726825d.pth``, as before).
- Segmentation (p2phd.metrics.segmentation): fyu/drn's DRNSeg (DRN-D-105 or another variant,
  read from the file) segments every synthesized PNG (and with ``--seg_real`` the real photos)
  at ``--seg_size``; the predictions are scored against the dataset manifest's label maps
  (Cityscapes labelIds -> 19 trainIds, or ``--seg_map``).

- Fake images: the ``<name>_synthesized.png`` files that the folder's ``render.h5`` lists
  (the first variant with ``--variants``; with ``--layout cityscapes`` the tree's
  ``leftImg8bit`` photos it lists), decoded as they are.
- Real images: the photos of the same sample names in the dataset manifest ``render.h5``
  names (or ``--real`` another manifest with photos), each resized with PIL BICUBIC to its
  synthesized PNG's size when the sizes differ (prepare's photo resampling), so both sets go
  into the network at the same size. The network then resizes everything to 299x299 as
  pytorch-fid does (bilinear, half-pixel centres), so the FID is the one pytorch-fid gives
  for these two folders of PNGs.
- FID: pytorch-fid's FID Inception and Fréchet distance (p2phd.metrics.inception, .fid);
  ``--kid``: KID mean and std over random subsets.
- Writes ``metrics.json`` (``p2phd.metrics/1``) into the render folder (or ``--out``),
  atomically, adds the numbers to the folder's ``index.html`` and prints the json's path.
- Cache: the real photos' features are stored in ``<manifest>.fid-<key>.npz`` beside the
  manifest (or in ``--cache_dir``), keyed by the manifest's and the Inception file's sha256,
  the sample names and the sizes, so a second evaluation of the split runs only the renders.
"""

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from p2phd.core import manifest
from p2phd.core.cli import (
    UsageError,
    atomic_path,
    emit,
    log,
    log_dry_run,
    options_dict,
    parse_options,
    resolve_input,
    write_json,
)
from p2phd.core.options import RuntimeOptions, flat_options, opt, positional
from p2phd.metrics import DRN_WEIGHTS_NAME, FID_WEIGHTS_NAME
from p2phd.metrics.segmentation import DEFAULT_SIZE as DEFAULT_SEG_SIZE
from p2phd.metrics.segmentation import ENGINES as SEG_ENGINES
from p2phd.metrics.segmentation import parse_size as parse_seg_size

SCHEMA = "p2phd.metrics/1"
CACHE_SCHEMA = "p2phd.fid-cache/1"
METRICS_FILE = "metrics.json"
REAL_RESIZE = "PIL BICUBIC to the synthesized size"


@flat_options
class EvaluateOptions(RuntimeOptions):
    render: str = positional(
        "render", "render folder (holding render.h5), or - to read it from stdin"
    )
    real: str = opt("", "dataset manifest with the real photos; '' = the one render.h5 names")
    inception: str = opt(
        "",
        f"pytorch-fid's FID Inception weights (.pth); '' = {FID_WEIGHTS_NAME}, and no FID "
        "when --seg is given without --inception",
    )
    kid: bool = opt(False, "also compute KID (mean and std over random subsets)")
    kid_subsets: int = opt(100, "KID: number of random subsets")
    kid_subset_size: int = opt(1000, "KID: images per subset (at most the number of images)")
    batch_size: int = opt(8, "images per Inception call")
    out: str = opt("", "metrics file; '' = RENDER/metrics.json")
    cache_dir: str = opt("", "folder of the real photos' feature cache; '' = beside the manifest")
    no_cache: bool = opt(False, "neither read nor write the real photos' feature cache")
    seg: str = opt(
        "",
        f"fyu/drn DRNSeg weights (.pth, e.g. {DRN_WEIGHTS_NAME}): also score the renders by "
        "segmentation (mean IoU, pixel accuracy, per-class IoU); '' = no segmentation score",
    )
    seg_real: bool = opt(False, "--seg: also segment the real photos (the upper-bound row)")
    seg_size: str = opt(
        DEFAULT_SEG_SIZE,
        "--seg: H x W in pixels that images (BICUBIC) and label maps (NEAREST) are resized to "
        "(the papers' 512x256), multiples of 8; native = each PNG's own size",
        metavar="HxW",
    )
    seg_map: str = opt(
        "", "--seg: JSON label id -> segmenter class; '' = Cityscapes labelIds -> trainIds"
    )
    seg_batch_size: int = opt(1, "--seg: images per segmentation call")
    seg_engine: str = opt(
        "auto",
        "--seg: what runs the DRN: mindspore, or onnxruntime / openvino (an ONNX graph written "
        "from p2phd's DRN Cells); auto = onnxruntime with --device_target CPU, else mindspore",
        choices=SEG_ENGINES,
    )

    def validate(self) -> None:
        if not self.render:
            raise UsageError("missing the render folder (RENDER, or - to read it from stdin)")
        for name in ("batch_size", "kid_subsets", "kid_subset_size", "seg_batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")
        given = {"seg_real": self.seg_real, "seg_map": self.seg_map}
        given["seg_engine"] = self.seg_engine != "auto"
        for name, on in given.items():
            if on and not self.seg:
                raise UsageError(f"--{name} needs --seg FILE (the segmentation network)")
        if self.kid and not self.wants_fid():
            raise UsageError("--kid needs the Inception: pass --inception FILE with --seg")
        parse_seg_size(self.seg_size)

    def wants_fid(self) -> bool:
        return bool(self.inception) or not self.seg

    def inception_file(self) -> str:
        return self.inception or FID_WEIGHTS_NAME


@dataclass
class Pairs:
    """The images to compare: one row per sample present in both sets."""

    folder: Path
    render_h5: Path
    real: Any  # p2phd.data.dataset.Dataset
    names: list[str]
    fake_files: list[Path]
    sizes: list[tuple[int, int]]  # (H, W) of each synthesized PNG
    real_rows: list[int]


def find_pairs(folder: Path, real_arg: str, photos: bool = True, fid: bool = True) -> Pairs:
    """Check the render folder and the real manifest (with photos when ``photos``; 2 images
    when ``fid``); UsageError names what is wrong."""
    from p2phd.data.dataset import Dataset
    from p2phd.rendering.page import read_manifest

    if not folder.is_dir():
        raise UsageError(f"{folder}: no such render folder")
    h5 = folder / "render.h5"
    if not h5.is_file():
        raise UsageError(f"{folder}: no render.h5 (not a finished render; run bin/render)")
    render = read_manifest(h5)
    real_path = Path(real_arg or render["attrs"].get("dataset", ""))
    if not real_arg and not real_path.is_file():
        raise UsageError(f"{h5}: its dataset manifest {real_path} is gone; pass --real MANIFEST")
    real = Dataset(real_path)
    if photos and not real.has_photo:
        real.close()
        raise UsageError(f"{real_path}: the {real.split} split has no photos to compare with")
    index = {n: i for i, n in enumerate(real.names)}
    rows = render["rows"]
    absent = [r["name"] for r in rows if r["name"] not in index]
    if absent:
        real.close()
        raise UsageError(
            f"{folder}: {len(absent)} of {len(rows)} rendered samples are not in {real_path} "
            f"(e.g. {absent[0]})"
        )
    if len(rows) < (2 if fid else 1):
        real.close()
        raise UsageError(
            f"{folder}: {len(rows)} rendered image(s); {'FID needs at least 2' if fid else 'none'}"
        )
    files = [folder / r["synthesized"][0] for r in rows]
    for f in files:
        if not f.is_file():
            real.close()
            raise UsageError(f"{f}: listed in render.h5 but missing")
    return Pairs(
        folder=folder,
        render_h5=h5,
        real=real,
        names=[r["name"] for r in rows],
        fake_files=files,
        sizes=[tuple(r["size"]) for r in rows],
        real_rows=[index[r["name"]] for r in rows],
    )


def read_png(path: Path, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        img = np.asarray(im.convert("RGB"))
    if img.shape[:2] != tuple(size):
        raise UsageError(
            f"{path}: {img.shape[1]}x{img.shape[0]} but render.h5 says {size[1]}x{size[0]}"
        )
    return img


def real_image(p: Pairs, i: int) -> np.ndarray:
    """The real photo of pair i at the synthesized image's size (BICUBIC when they differ)."""
    from PIL import Image

    photo = p.real.sample(p.real_rows[i]).photo
    h, w = p.sizes[i]
    if photo.shape[:2] == (h, w):
        return photo
    return np.asarray(Image.fromarray(photo).resize((w, h), Image.BICUBIC))


# ---------------------------------------------------------------------------------------------
# real features, cached


def cache_path(p: Pairs, inception_sha: str, cache_dir: str) -> Path:
    key = {
        "manifest_sha256": p.real.sha256(),
        "inception_sha256": inception_sha,
        "names": p.names,
        "sizes": [list(s) for s in p.sizes],
        "resize": REAL_RESIZE,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir else p.real.path.parent
    return folder / f"{p.real.path.name}.fid-{digest}.npz"


def load_cache(path: Path, n: int) -> np.ndarray | None:
    try:
        with np.load(path) as z:
            if str(z["schema"]) != CACHE_SCHEMA or z["features"].shape != (n, 2048):
                return None
            return z["features"].astype(np.float64)
    except (OSError, KeyError, ValueError):
        return None


def save_cache(path: Path, features: np.ndarray, p: Pairs, inception_sha: str) -> None:
    # The network's outputs are float32: storing them as float32 loses nothing.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(
            f,
            schema=CACHE_SCHEMA,
            features=features.astype(np.float32),
            names=np.array(p.names),
            manifest_sha256=p.real.sha256(),
            inception_sha256=inception_sha,
        )


# ---------------------------------------------------------------------------------------------
# the verb


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    o = parse_options(EvaluateOptions, raw, "evaluate", (__doc__ or "").split("\n")[0])
    folder = Path(resolve_input(o.render))
    p = find_pairs(folder, o.real, photos=o.wants_fid() or o.seg_real, fid=o.wants_fid())
    try:
        return _run(o, p, None if argv is None else ["evaluate", *raw])
    finally:
        p.real.close()


def _run(o: EvaluateOptions, p: Pairs, argv: list[str] | None) -> int:
    out = Path(o.out) if o.out else p.folder / METRICS_FILE
    if o.dry_run:
        against = [f"the photos of {p.real.path} (FID)"] if o.wants_fid() else []
        if o.seg:
            against.append(
                f"the label maps of {p.real.path} (segmented by {o.seg} at {o.seg_size}, "
                f"--seg_engine {o.seg_engine})"
            )
        log_dry_run(
            o, f"would compare {len(p.names)} renders in {p.folder} with {' and '.join(against)}"
        )
        log(f"would write {out}")
        return 0
    from p2phd.core import runtime

    runtime.setup(o.device_target, o.pynative, o.seed, o.verbose)
    t0 = time.perf_counter()
    seg = None
    if o.seg:  # first: a wrong --seg file or labels fail before the Inception runs
        from p2phd.metrics import segmentation

        # real photos straight from the manifest: one resize, to the segmentation size
        seg = segmentation.run(
            o,
            p,
            lambda i: read_png(p.fake_files[i], p.sizes[i]),
            lambda i: p.real.sample(p.real_rows[i]).photo,
        )
    fid_part = _fid(o, p) if o.wants_fid() else None
    record = _record(o, p, fid_part, seg, argv, time.perf_counter() - t0)
    write_json(out, record)
    _show_on_page(p.folder, record)
    emit(out)
    return 0


def _fid(o: EvaluateOptions, p: Pairs) -> dict[str, Any]:
    from p2phd.metrics import features as feats
    from p2phd.metrics import fid

    net = feats.load_inception(o.inception_file())
    inception_sha = manifest.sha256_file(o.inception_file())
    n = len(p.names)
    cache = None if o.no_cache else cache_path(p, inception_sha, o.cache_dir)
    t0 = time.perf_counter()
    real = load_cache(cache, n) if cache is not None and cache.is_file() else None
    if real is not None:
        log(f"evaluate: real photos' features from the cache {cache}")
    else:
        real = _features(net, lambda i: real_image(p, i), p, o.batch_size, "real photos")
        if cache is not None:
            save_cache(cache, real, p, inception_sha)
            log(f"evaluate: cached the real photos' features in {cache}")
    fake_feats = _features(
        net, lambda i: read_png(p.fake_files[i], p.sizes[i]), p, o.batch_size, "renders"
    )
    seconds = time.perf_counter() - t0
    score = fid.fid_from_features(fake_feats, real)
    kid = None
    if o.kid:
        mean, std = fid.kid(fake_feats, real, o.kid_subsets, o.kid_subset_size, o.seed)
        kid = {
            "mean": mean,
            "std": std,
            "subsets": o.kid_subsets,
            "subset_size": min(o.kid_subset_size, n),
        }
    log(
        f"evaluate: FID {score:.4f}"
        + (f", KID {kid['mean']:.6f} ± {kid['std']:.6f}" if kid else "")
        + f" over {n} images ({seconds:.1f} s)"
    )
    return {
        "inception": {"path": str(Path(o.inception_file()).resolve()), "sha256": inception_sha},
        "fid": score,
        "kid": kid,
        "cache": str(cache) if cache is not None else None,
    }


def images_sha256(p: Pairs) -> str:
    """sha256 over the name and sha256 of each synthesized PNG used."""
    digest = hashlib.sha256()
    for f in p.fake_files:
        digest.update(f.name.encode() + manifest.sha256_file(f).encode())
    return digest.hexdigest()


def _features(net, get, p: Pairs, batch_size: int, what: str) -> np.ndarray:
    from p2phd.core import bars
    from p2phd.metrics.features import extract

    with bars.bar(len(p.names), f"evaluate: {what}") as bar:
        return extract(net, get, len(p.names), p.sizes, batch_size, bar.update)


def _record(o, p: Pairs, fid_part, seg, argv, seconds) -> dict:
    """metrics.json (``p2phd.metrics/1``; ``scores`` names what this run computed, the others
    are null)."""
    from datetime import UTC, datetime

    import scipy

    from p2phd.core import runtime

    sizes = sorted({tuple(s) for s in p.sizes})
    fid_part = fid_part or {"inception": None, "fid": None, "kid": None, "cache": None}
    computed = ["fid"] if fid_part["fid"] is not None else []
    computed += ["kid"] if fid_part["kid"] else []
    computed += ["segmentation"] if seg else []
    return {
        "schema": SCHEMA,
        "scores": computed,
        "created_by": f"evaluate {runtime.versions()['p2phd']}",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": argv if argv is not None else sys.argv,
        "render": {
            "path": str(p.folder.resolve()),
            "manifest": str(p.render_h5.resolve()),
            "manifest_sha256": manifest.sha256_file(p.render_h5),
            "images_sha256": images_sha256(p),
        },
        "real": {
            "path": str(p.real.path.resolve()),
            "sha256": p.real.sha256(),
            "split": p.real.split,
            "resize": REAL_RESIZE,
        },
        **fid_part,
        "segmentation": seg,
        "num_images": len(p.names),
        "image_sizes": [list(s) for s in sizes],
        "seconds": round(seconds, 2),
        "options": options_dict(o),
        "versions": {**runtime.versions(), "scipy": scipy.__version__},
    }


def _show_on_page(folder: Path, record: dict) -> None:
    from p2phd.metrics.segmentation import page_items
    from p2phd.rendering.page import show_metrics

    items = {}
    if record["fid"] is not None:
        items["FID"] = f"{record['fid']:.4f} ({record['num_images']} images, pytorch-fid Inception)"
    if record["kid"]:
        items["KID"] = f"{record['kid']['mean']:.6f} ± {record['kid']['std']:.6f}"
    if record["segmentation"]:
        items.update(page_items(record["segmentation"], record["num_images"]))
    page = folder / "index.html"
    if page.is_file():
        show_metrics(page, items)

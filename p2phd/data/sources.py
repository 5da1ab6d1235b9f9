"""Finding, pairing, checking and loading the source images that ``prepare`` turns into a manifest.

Three layouts are read (the layout is detected from the folders present):

- ``cityscapes``: a raw Cityscapes tree, ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and
  ``gtFine/<split>/<city>/*_gtFine_labelIds.png`` / ``*_gtFine_instanceIds.png``. Cityscapes'
  own test labels are withheld, so pix2pixHD's "test" phase reads the val frames (as NVIDIA's
  bundled examples do).
- ``pix2pixhd``: ``<phase>_label``, ``<phase>_inst``, ``<phase>_img`` folders.
- ``ab``: ``<phase>_A`` (RGB input) / ``<phase>_B`` (photo) folders, for ``--label_nc 0``.

Files are paired by sample name (``<city>_<seq>_<frame>`` for Cityscapes names, the file stem
otherwise), never by sort order. ``check_headers`` validates pairing, file types, modes and sizes
from image headers in the parent; ``load_sample`` (run in joblib workers) decodes, checks label
values, resizes and compresses one sample, returning a ``Problem`` rather than raising so that the
parent reports it as one line.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from p2phd.core.cli import UsageError
from p2phd.data.dataset import Record, encode

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}
# One-channel modes whose pixel values are ids (labels must still fit uint8 after the check).
LABEL_MODES = {"L", "P", "I", "I;16", "I;16L", "I;16B"}
INST_MODES = {"L", "I", "I;16", "I;16L", "I;16B"}
_CITYSCAPES_NAME = re.compile(r"^(.+?_\d{6}_\d{6})(?:_|$)")
_CS_SUFFIX = {
    "label": "_gtFine_labelIds.png",
    "inst": "_gtFine_instanceIds.png",
    "photo": "_leftImg8bit.png",
}
ROLES = ("label", "inst", "photo")


@dataclass(frozen=True)
class SourceSample:
    name: str
    label: Path
    inst: Path | None
    photo: Path | None


@dataclass(frozen=True)
class Problem:
    """Bad input found in a worker: reported by the parent as ``<path>: <message>``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Found:
    layout: str
    source_split: str  # the folder actually read (Cityscapes: val for phase test)
    samples: list[SourceSample]
    folders: dict[str, Path | None]


def sample_name(path: Path) -> str:
    """The pairing key: ``<city>_<seq>_<frame>`` for Cityscapes file names, else the stem."""
    m = _CITYSCAPES_NAME.match(path.stem)
    return m.group(1) if m else path.stem


def cityscapes_source_split(phase: str, requested: str = "") -> str:
    split = requested or ("val" if phase == "test" else phase)
    if split == "test":
        raise UsageError(
            "Cityscapes test labels are withheld (gtFine/test holds placeholders only); "
            "pix2pixHD's test set is the val frames: use --phase test without --cityscapes_split"
        )
    if split not in ("train", "val"):
        raise UsageError(f"--cityscapes_split must be train or val, got {split!r}")
    return split


def detect_layout(root: Path, label_nc: int) -> str:
    if not root.is_dir():
        raise UsageError(f"--dataroot {root}: no such folder")
    if (root / "gtFine").is_dir() or (root / "leftImg8bit").is_dir():
        if label_nc == 0:
            raise UsageError(f"{root}: a Cityscapes tree needs --label_nc > 0 (35 for labelIds)")
        return "cityscapes"
    return "ab" if label_nc == 0 else "pix2pixhd"


def _folders(root: Path, layout: str, phase: str, split: str) -> dict[str, Path | None]:
    if layout == "cityscapes":
        return {
            "label": root / "gtFine" / split,
            "inst": root / "gtFine" / split,
            "photo": root / "leftImg8bit" / split,
        }
    if layout == "ab":
        return {
            "label": root / f"{phase}_A",
            "inst": root / f"{phase}_inst",
            "photo": root / f"{phase}_B",
        }
    return {
        "label": root / f"{phase}_label",
        "inst": root / f"{phase}_inst",
        "photo": root / f"{phase}_img",
    }


def _list_folder(folder: Path, layout: str, role: str) -> list[Path]:
    if layout == "cityscapes":
        return sorted(folder.glob(f"*/*{_CS_SUFFIX[role]}"))
    files = []
    for p in sorted(folder.rglob("*")):
        if p.name.startswith(".") or not p.is_file():
            continue
        if p.suffix.lower() not in IMAGE_EXTS:
            raise UsageError(f"{p}: not an image file (extension {p.suffix or 'none'!r})")
        files.append(p)
    return files


def _index(files: list[Path]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in files:
        key = sample_name(p)
        if key in out:
            raise UsageError(f"{p}: same sample name {key!r} as {out[key]}")
        out[key] = p
    return out


def _unpaired(
    have: dict[str, Path], want: dict[str, Path], what: str, folder: Path, hint: str = ""
) -> None:
    missing = sorted(set(have) - set(want))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UsageError(
            f"{have[missing[0]]}: no {what} for sample {missing[0]!r} in {folder}{more}{hint}"
        )


def find_samples(
    root: str | Path, phase: str, label_nc: int, no_instance: bool, cityscapes_split: str = ""
) -> Found:
    """List and pair the samples of one split; raise UsageError on any pairing problem."""
    root = Path(root)
    layout = detect_layout(root, label_nc)
    split = cityscapes_source_split(phase, cityscapes_split) if layout == "cityscapes" else phase
    folders: dict[str, Path | None] = dict(_folders(root, layout, phase, split))
    label_dir = folders["label"]
    assert label_dir is not None
    if not label_dir.is_dir():
        raise UsageError(
            f"{root}: no {label_dir.relative_to(root)} folder (expected a Cityscapes tree with "
            f"leftImg8bit/ and gtFine/, pix2pixHD folders {phase}_label/_inst/_img, or "
            f"{phase}_A/{phase}_B with --label_nc 0)"
        )
    if no_instance:
        folders["inst"] = None
    elif not folders["inst"].is_dir():  # type: ignore[union-attr]
        raise UsageError(
            f"{root}: no instance maps ({folders['inst']} missing); "
            "pass --no_instance for a dataset without them"
        )
    if not folders["photo"].is_dir():  # type: ignore[union-attr]
        folders["photo"] = None  # e.g. pix2pixHD's test phase: labels only
    found = {
        role: _index(_list_folder(d, layout, role)) if d is not None else {}
        for role, d in folders.items()
    }
    labels = found["label"]
    if not labels:
        raise UsageError(f"{label_dir}: no label maps found")
    for role, what in (("inst", "instance map"), ("photo", "photo")):
        if folders[role] is None:
            continue
        hint = "; pass --no_instance for a dataset without instance maps" if role == "inst" else ""
        _unpaired(labels, found[role], what, folders[role], hint)  # type: ignore[arg-type]
        _unpaired(found[role], labels, "label map", label_dir)
    samples = [
        SourceSample(k, labels[k], found["inst"].get(k), found["photo"].get(k))
        for k in sorted(labels)
    ]
    return Found(layout, split, samples, folders)


# PIL's own decompression-bomb guard (about 89.5 million pixels, ~9459x9459); Cityscapes is 2.1.
DEFAULT_MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 89_478_485)


def too_large(path: Path | str, w: int, h: int, max_pixels: int) -> str:
    """The one-line refusal of an image over --max_image_pixels."""
    return (
        f"{path}: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} "
        "(a guard against decompression bombs); if the image is genuine, raise the limit "
        f"with --max_image_pixels {w * h} (0 = no limit)"
    )


def _header(path: Path) -> tuple[str, tuple[int, int]]:
    # Only the header is read here, so PIL's guard is off and the size is checked by the caller.
    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
    try:
        with Image.open(path) as im:
            return im.mode, im.size
    except UnidentifiedImageError:
        raise UsageError(f"{path}: not an image file (or corrupt)") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read image header: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _check_mode(path: Path, role: str, mode: str, label_nc: int) -> None:
    if role == "label" and label_nc > 0 and mode not in LABEL_MODES:
        raise UsageError(
            f"{path}: label map has mode {mode}, expected one channel of ids (L, P, I or "
            f"I;16) with --label_nc {label_nc}; use --label_nc 0 for RGB inputs"
        )
    if role == "inst" and mode not in INST_MODES:
        raise UsageError(
            f"{path}: instance map has mode {mode}, expected one channel of ids (I;16, I or L)"
        )
    if (role == "photo" or (role == "label" and label_nc == 0)) and mode != "RGB":
        raise UsageError(
            f"{path}: {'photo' if role == 'photo' else 'input image'} has mode {mode}, expected RGB"
        )


def check_headers(
    samples: list[SourceSample], label_nc: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> None:
    """Types, modes and sizes from the image headers (cheap), before any pixel is decoded."""
    for s in samples:
        size = None
        for role in ROLES:
            path = getattr(s, role)
            if path is None:
                continue
            mode, wh = _header(path)
            if max_pixels and wh[0] * wh[1] > max_pixels:
                raise UsageError(too_large(path, wh[0], wh[1], max_pixels))
            _check_mode(path, role, mode, label_nc)
            if size is None:
                size = wh
            elif wh != size:
                raise UsageError(
                    f"{path}: size {wh[0]}x{wh[1]} differs from its label map "
                    f"{s.label.name} ({size[0]}x{size[1]}) in sample {s.name!r}"
                )


def target_size(w: int, h: int, load_size: int) -> tuple[int, int]:
    """scale_width as in pix2pixHD: width becomes load_size, h = int(load_size * h / w); 0 keeps."""
    if load_size == 0 or w == load_size:
        return w, h
    return load_size, int(load_size * h / w)


def _decode(path: Path) -> tuple[Image.Image, str]:
    data = path.read_bytes()
    im = Image.open(io.BytesIO(data))
    im.load()  # raises on truncated or corrupt pixel data
    return im, hashlib.sha256(data).hexdigest()


def _label_array(im: Image.Image, path: Path, label_nc: int) -> np.ndarray | Problem:
    if label_nc == 0:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
    arr = np.asarray(im)
    if arr.size and 0 <= arr.min() and arr.max() < label_nc:  # fast path; unique only to report
        return arr.astype(np.uint8, copy=False)
    values = np.unique(arr)
    bad = values[(values >= label_nc) | (values < 0)]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:10]) + (", ..." if bad.size > 10 else "")
        return Problem(
            str(path), f"label values {shown} outside 0..{label_nc - 1} (--label_nc {label_nc})"
        )
    return arr.astype(np.uint8)


def count_distinct(ids: np.ndarray) -> int:
    """Distinct values; bincount is ~10x faster than np.unique for Cityscapes-sized ids."""
    if ids.size == 0:
        return 0
    lo, hi = int(ids.min()), int(ids.max())
    if hi - lo < 1 << 22:
        return int(np.count_nonzero(np.bincount((ids - lo).ravel())))
    return len(np.unique(ids))


def load_sample(
    s: SourceSample, label_nc: int, load_size: int, level: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[Record, dict[str, str]] | Problem:
    """Decode, check, resize and compress one sample (runs in a joblib worker)."""
    # The headers were checked against the limit; this catches a file swapped since then.
    Image.MAX_IMAGE_PIXELS = max_pixels or None
    images: dict[str, Image.Image] = {}
    hashes: dict[str, str] = {}
    for role in ROLES:
        path = getattr(s, role)
        if path is None:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                images[role], hashes[str(path)] = _decode(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            return Problem(str(path), "over the --max_image_pixels limit (decompression bomb?)")
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
            return Problem(str(path), f"cannot decode image: {exc}")
    w, h = images["label"].size
    for role, im in images.items():
        if im.size != (w, h):
            return Problem(
                str(getattr(s, role)), f"size {im.size} differs from its label map ({w}, {h})"
            )
    tw, th = target_size(w, h, load_size)
    label = _label_array(images["label"], s.label, label_nc)
    if isinstance(label, Problem):
        return label
    resample = Image.NEAREST if label_nc > 0 else Image.BICUBIC
    label = np.asarray(Image.fromarray(label).resize((tw, th), resample))
    inst = photo = None
    n_inst = 0
    if "inst" in images:
        ids = np.asarray(images["inst"]).astype(np.int32)  # int32 array -> PIL mode I
        inst = np.asarray(Image.fromarray(ids).resize((tw, th), Image.NEAREST), dtype=np.int32)
        n_inst = count_distinct(inst)  # as stored: what consumers of the manifest index
    if "photo" in images:
        photo = np.asarray(images["photo"].resize((tw, th), Image.BICUBIC), dtype=np.uint8)
    record = Record(
        name=s.name,
        label=encode(label, level),
        inst=None if inst is None else encode(inst, level),
        photo=None if photo is None else encode(photo, level),
        label_path=str(s.label.resolve()),
        inst_path=str(s.inst.resolve()) if s.inst else "",
        photo_path=str(s.photo.resolve()) if s.photo else "",
        orig_size=(h, w),
        num_instances=n_inst,
    )
    return record, hashes


def tree_digest(root: Path, hashes: dict[str, str]) -> str:
    """One content hash for a folder of inputs: sha256 over sorted ``sha256sum``-style lines."""
    # Paths as found under root (not resolved: the files may be symlinks to elsewhere).
    lines = sorted(f"{digest}  {os.path.relpath(p, root)}\n" for p, digest in hashes.items())
    return hashlib.sha256("".join(lines).encode()).hexdigest()

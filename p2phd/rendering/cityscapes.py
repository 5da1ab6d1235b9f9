"""``bin/render --layout cityscapes``: the render folder as a Cityscapes tree for segmentation tools.

Layout of ``<out>/`` (besides the settings, ``render.h5`` and ``index.html`` of every render):

- ``leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png``: one rendered photo per
  label map and variant;
- ``gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_<kind>.png``: the maps that made it,
  ``labelIds`` (uint8), ``instanceIds`` (16-bit, when the dataset has instance maps), ``color``
  (RGB) and, for Cityscapes labelIds (label_nc 35), ``labelTrainIds`` (the 19 trainIds, 255
  elsewhere), all at the photo's size;
- ``real/<split>/<city>/<city>_<seq>_<frame>_real.png``: the real photo (splits with photos),
  for the page and bin/evaluate; its name ends in neither suffix trainers look for.

Names: a sample named ``<city>_<seq>_<frame>`` (six digits each, as Cityscapes names are) keeps
its city, sequence and frame (an ``_`` in the city becomes ``-``: the official scripts split names
on ``_``); any other name becomes city ``custom``, sequence ``row // 10**6``, frame
``row % 10**6`` (its row in the dataset manifest). With ``--variants K`` > 1, variant k gets city
``<city>-v<k>`` (folder and file name alike), so every photo has a distinct name that still parses
as a Cityscapes name, and each variant has its own gtFine files (hard links to variant 0's).
Which style each variant drew stays in ``render.h5`` (``synthesized`` names the files, ``style``
and ``seed`` the draw).

Ground truth at the photo's size: without ``--original_size`` the photo is at the manifest's
size, and so are the label and instance maps the manifest stores (written from it). With
``--original_size`` the photo is at the source size: the source label and instance maps are
hard-linked (copied across file systems) after checking that prepare's NEAREST resize of them
gives the manifest's arrays; a source that is gone or has changed is replaced by a NEAREST
upscale of the manifest's map (logged). Either way pixel (x, y) of a photo and of its maps agree.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from p2phd.core.cli import UsageError, log
from p2phd.core.palette import CITYSCAPES_LABEL_NC, colourise, train_id_table

LAYOUTS = ("flat", "cityscapes")
GENERIC_CITY = "custom"
TREES = ("leftImg8bit", "gtFine", "real")
PHOTO_SUFFIX = "_leftImg8bit.png"
REAL_SUFFIX = "_real.png"
# gtFine kinds in the order they are written; instanceIds/labelTrainIds only when they apply.
GT_KINDS = ("labelIds", "instanceIds", "color", "labelTrainIds")
_NAME = re.compile(r"^(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})$")
_FRAMES = 10**6  # Cityscapes' six-digit frame numbers
# Every file the tree layout writes: --overwrite removes these and nothing else.
OURS = re.compile(
    r"^(leftImg8bit|gtFine|real)/[^/]+/[^/]+/[^/_]+_\d+_\d+"
    r"_(leftImg8bit|real|gtFine_(labelIds|instanceIds|color|labelTrainIds))\.png$"
)
MAX_INSTANCE_ID = 65535  # instanceIds PNGs are 16-bit


def frame_parts(name: str, row: int) -> tuple[str, str, str]:
    """(city, sequence, frame) of a sample: its own for Cityscapes names, else the generic city."""
    m = _NAME.match(name)
    if m:
        return m["city"].replace("_", "-"), m["seq"], m["frame"]
    return GENERIC_CITY, f"{row // _FRAMES:06d}", f"{row % _FRAMES:06d}"


def variant_city(city: str, k: int, variants: int) -> str:
    return city if variants == 1 else f"{city}-v{k}"


def sample_files(
    name: str, row: int, split: str, variants: int, has_photo: bool, kinds: tuple[str, ...]
) -> dict[str, Any]:
    """The files of one sample, relative to the output folder: 'synthesized' (one per variant),
    'label' (the page's picture: variant 0's colour map), 'real' ('' without photos) and 'gt'
    (per variant, {kind: file} in GT_KINDS order)."""
    city, seq, frame = frame_parts(name, row)
    synth, gt = [], []
    for k in range(variants):
        c = variant_city(city, k, variants)
        stem = f"{c}_{seq}_{frame}"
        synth.append(f"leftImg8bit/{split}/{c}/{stem}{PHOTO_SUFFIX}")
        gt.append({kind: f"gtFine/{split}/{c}/{stem}_gtFine_{kind}.png" for kind in kinds})
    real = f"real/{split}/{city}/{city}_{seq}_{frame}{REAL_SUFFIX}" if has_photo else ""
    return {"synthesized": synth, "label": gt[0].get("color", ""), "real": real, "gt": gt}


def gt_kinds(label_nc: int, has_instance: bool) -> tuple[str, ...]:
    """Which gtFine maps a dataset gets: trainIds only for Cityscapes labelIds (label_nc 35)."""
    if label_nc == 0:
        raise UsageError(
            "--layout cityscapes writes label maps (gtFine): the manifest holds RGB inputs "
            "(label_nc 0), not label ids; use the flat layout"
        )
    return tuple(
        k
        for k in GT_KINDS
        if (k != "instanceIds" or has_instance)
        and (k != "labelTrainIds" or label_nc == CITYSCAPES_LABEL_NC)
    )


def check_names(names: list[str], split: str, variants: int, has_photo: bool) -> None:
    """Two samples must not map to one Cityscapes name (e.g. ``a_b_000000_000001`` and
    ``a-b_000000_000001``, or a custom name and a real one); one line, before any work."""
    seen: dict[str, str] = {}
    for row, name in enumerate(names):
        key = sample_files(name, row, split, variants, has_photo, ())["synthesized"][0]
        if key in seen:
            raise UsageError(
                f"samples {seen[key]!r} and {name!r} would both be written as {key} in the "
                "cityscapes layout; rename one, or use the flat layout"
            )
        seen[key] = name


# ---------------------------------------------------------------------------------------------
# the ground truth of one sample


@dataclass
class Truth:
    """The gtFine maps of one sample at the photo's size: arrays to write, and for each map a
    verified source file to link instead ('' = write the array)."""

    arrays: dict[str, np.ndarray]
    links: dict[str, str] = field(default_factory=dict)


def _nearest(arr: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    if arr.shape[:2] == tuple(size_hw):
        return arr
    img = Image.fromarray(arr).resize((size_hw[1], size_hw[0]), Image.Resampling.NEAREST)
    return np.asarray(img, dtype=arr.dtype)


def _source(path: str, stored: np.ndarray, dtype: Any) -> np.ndarray | None:
    """The source map if prepare's NEAREST resize of it gives ``stored``, else None."""
    if not path or not os.path.isfile(path):
        return None
    try:
        with Image.open(path) as im:
            src = np.asarray(im)
    except OSError:
        return None
    if src.ndim != 2 or src.min(initial=0) < 0 or src.max(initial=0) > np.iinfo(dtype).max:
        return None
    src = src.astype(dtype)
    # prepare resized labels as uint8 and instance ids as int32 (PIL modes L and I): the same here
    work = src.astype(np.int32) if dtype == np.uint16 else src
    if not np.array_equal(_nearest(work, stored.shape), stored):
        return None
    return src


_warned: set[str] = set()  # one log line per kind of fallback, not one per sample


def ground_truth(
    name: str,
    label: np.ndarray,
    inst: np.ndarray | None,
    paths: dict[str, str],
    size_hw: tuple[int, int],
    source_hw: tuple[int, int],
    label_nc: int,
    kinds: tuple[str, ...],
) -> Truth:
    """The gtFine maps of a sample at the output size ``size_hw``, from the manifest's arrays
    (``label`` uint8, ``inst`` int32, at the manifest's size) or, when the output is at the
    source size ``source_hw``, the verified source files (see the module docstring)."""
    truth = Truth({})
    maps = {"labelIds": (label, paths.get("label_path", ""), np.uint8)}
    if "instanceIds" in kinds:
        if inst is None or int(inst.min(initial=0)) < 0 or int(inst.max()) > MAX_INSTANCE_ID:
            raise UsageError(
                f"sample {name}: instance ids outside 0..{MAX_INSTANCE_ID} cannot be stored as a "
                "16-bit gtFine_instanceIds.png"
            )
        maps["instanceIds"] = (inst, paths.get("inst_path", ""), np.uint16)
    for kind, (stored, path, dtype) in maps.items():
        if tuple(size_hw) == tuple(source_hw):
            src = _source(path, stored, dtype)
            if src is not None and src.shape == tuple(size_hw):
                truth.arrays[kind], truth.links[kind] = src, path
                continue
            if stored.shape != tuple(size_hw) and kind not in _warned:
                _warned.add(kind)
                log(
                    f"render: source {kind} maps gone or changed since prepare (e.g. {name}: "
                    f"{path or 'none recorded'}); writing the manifest's, resized NEAREST"
                )
        # prepare resized instance ids as int32 (PIL mode I): the same here, then 16 bits
        work = stored if dtype == np.uint8 else stored.astype(np.int32)
        truth.arrays[kind] = _nearest(work, size_hw).astype(dtype)
    ids = truth.arrays["labelIds"]
    truth.arrays["color"] = colourise(ids, label_nc)
    if "labelTrainIds" in kinds:
        truth.arrays["labelTrainIds"] = train_id_table()[ids]
    return truth


def tree_files(out: Path) -> set[str]:
    """Paths (relative, with /) of the files under the tree's folders: one walk, no stat."""
    found: set[str] = set()
    for top in TREES:
        for folder, _, names in os.walk(out / top):
            rel = Path(folder).relative_to(out).as_posix()
            found.update(f"{rel}/{n}" for n in names)
    return found


def remove_empty_folders(out: Path) -> None:
    """After --overwrite: drop the tree's folders that are now empty (deepest first)."""
    for top in TREES:
        for folder, _, _ in sorted(os.walk(out / top), key=lambda w: -len(w[0])):
            try:
                os.rmdir(folder)
            except OSError:  # not empty: something not ours is in it
                pass

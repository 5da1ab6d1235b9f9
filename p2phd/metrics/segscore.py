"""The segmentation score: label ids -> segmenter classes, confusion matrix, IoU (NumPy only).

- Cityscapes: the dataset's labelIds (pix2pixHD's ``label_nc`` 35) map to the 19 trainIds of
  cityscapesScripts' ``labels.py`` (``core.palette.CITYSCAPES_TRAIN_ID``); every other id is 255, ignored.
  ``--seg_map FILE`` replaces that table for other datasets (``read_seg_map``).
- ``confusion(pred, gt, n)``: an n x n int64 matrix, rows the ground truth, columns the
  prediction, over the pixels whose ground truth is a class (0 <= gt < n; 255 is ignored), as
  fyu/drn's ``fast_hist`` counts them.
- ``scores(matrix)``: per-class IoU = diag / (row sum + column sum - diag), ``None`` for a
  class absent from both the ground truth and the prediction (fyu/drn: NaN); mean IoU = the
  mean over the classes with an IoU (fyu/drn's ``nanmean``); pixel accuracy = diag sum / all
  counted pixels. Fractions in [0, 1]; ``None`` when nothing was counted.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from p2phd.core.cli import UsageError
from p2phd.core.palette import (  # noqa: F401  (the tables' home; metrics imports them from here)
    CITYSCAPES_CLASSES,
    CITYSCAPES_LABEL_NC,
    CITYSCAPES_TRAIN_ID,
    TRAIN_IGNORE,
    train_id_table,
)

IGNORE = TRAIN_IGNORE


@dataclass(frozen=True)
class LabelMap:
    """Label id -> segmenter class (IGNORE for the rest) and the classes' names."""

    table: np.ndarray  # (256,) uint8
    names: tuple[str, ...]
    source: str  # "cityscapes labelId -> trainId" or the --seg_map file

    def apply(self, label: np.ndarray) -> np.ndarray:
        return self.table[label]

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ids": {str(i): int(c) for i, c in enumerate(self.table) if c != IGNORE},
        }


def cityscapes_map() -> LabelMap:
    return LabelMap(
        train_id_table(CITYSCAPES_TRAIN_ID), CITYSCAPES_CLASSES, "cityscapes labelId -> trainId"
    )


def read_seg_map(path: str | Path, classes: int) -> LabelMap:
    """A ``--seg_map`` JSON: ``{"label_to_class": {"<id>": class, ...}, "class_names": [...]}``
    or just the ``{"<id>": class}`` object. Ids 0..255; classes 0..classes-1, or 255 / null to
    ignore; unlisted ids are ignored. UsageError naming the file for anything else."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such --seg_map file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path}: not a JSON --seg_map ({exc})") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{path}: a --seg_map is a JSON object of label id -> class")
    mapping = doc.get("label_to_class", doc)
    names = doc.get("class_names", [f"class {c}" for c in range(classes)])
    if not isinstance(mapping, dict) or not mapping:
        raise UsageError(f"{path}: 'label_to_class' must be a non-empty object")
    if not (isinstance(names, list) and len(names) == classes):
        raise UsageError(f"{path}: 'class_names' must list the segmenter's {classes} classes")
    out: dict[int, int] = {}
    for key, cls in mapping.items():
        if not (str(key).isdigit() and int(key) <= 255):
            raise UsageError(f"{path}: label id {key!r} is not an integer in 0..255")
        cls = IGNORE if cls is None else cls
        if not (isinstance(cls, int) and (0 <= cls < classes or cls == IGNORE)):
            raise UsageError(
                f"{path}: label {key} -> {cls!r}: classes are 0..{classes - 1} (or 255/null)"
            )
        out[int(key)] = cls
    return LabelMap(train_id_table(out), tuple(str(n) for n in names), str(path.resolve()))


def confusion(pred: np.ndarray, gt: np.ndarray, n: int) -> np.ndarray:
    """(n, n) int64: [true class, predicted class] counts over pixels with gt in 0..n-1."""
    gt = np.asarray(gt).ravel().astype(np.int64)
    pred = np.asarray(pred).ravel().astype(np.int64)
    keep = (gt >= 0) & (gt < n)
    return np.bincount(n * gt[keep] + pred[keep], minlength=n * n).reshape(n, n)


def scores(matrix: np.ndarray, names: tuple[str, ...]) -> dict[str, Any]:
    """mean IoU, pixel accuracy and per-class IoU (fractions; None where undefined)."""
    m = np.asarray(matrix, np.int64)
    diag = np.diag(m)
    union = m.sum(0) + m.sum(1) - diag
    iou = [float(d / u) if u else None for d, u in zip(diag, union, strict=True)]
    present = [v for v in iou if v is not None]
    total = int(m.sum())
    return {
        "mean_iou": float(np.mean(present)) if present else None,
        "pixel_accuracy": float(diag.sum() / total) if total else None,
        "classes_scored": len(present),
        "pixels": total,
        "per_class_iou": dict(zip(names, iou, strict=True)),
    }

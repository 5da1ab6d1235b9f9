"""Cluster manifests as render sees them, and the choice of one style (cluster centre) per object.

pix2pixHD's feature modes give each object of a label map a small feature vector; at test time
NVIDIA picks, for every instance, one of the k-means centres of its class with an *unseeded*
``np.random.randint`` and leaves classes without clusters uninitialised (MindSpore: ``randn``).
Here the choice is reproducible and controllable:

- each instance's centre comes from a seed derived from (``--seed``, sample name, instance id,
  variant) through SHA-256, so it depends neither on Python's per-process ``hash()`` nor on
  the order the samples are rendered in, nor on the other instances of the image;
- a user may fix the centre per class (``--style car=3,person=1``, class names or numeric ids);
- pixels of classes without clusters get zeros (as NVIDIA's UI model does).

The class of an instance is the majority label value of its pixels (for Cityscapes this is the
reference's ``id if id < 1000 else id // 1000``); ``precompute`` uses the same rule.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from p2phd.core import manifest
from p2phd.core.cli import UsageError

KIND = "clusters"

# Cityscapes labelIds 0..33 (cityscapesScripts' labels.py). pix2pixHD's label_nc 35 leaves id 34
# unnamed: the only other Cityscapes label, "license plate", has id -1 and never appears in the
# labelIds PNGs.
CITYSCAPES_NAMES: tuple[str, ...] = (
    "unlabeled",
    "ego vehicle",
    "rectification border",
    "out of roi",
    "static",
    "dynamic",
    "ground",
    "road",
    "sidewalk",
    "parking",
    "rail track",
    "building",
    "wall",
    "fence",
    "guard rail",
    "bridge",
    "tunnel",
    "pole",
    "polegroup",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "caravan",
    "trailer",
    "train",
    "motorcycle",
    "bicycle",
)


def _norm_name(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


_NAME_TO_ID = {_norm_name(n): i for i, n in enumerate(CITYSCAPES_NAMES)}


def class_id(token: str, label_nc: int = 0) -> int:
    """A class given as a number or a Cityscapes name (``car``, ``traffic_light``, ``Traffic-Light``)."""
    token = token.strip()
    if re.fullmatch(r"\d+", token):
        c = int(token)
    elif _norm_name(token) in _NAME_TO_ID:
        c = _NAME_TO_ID[_norm_name(token)]
    else:
        raise UsageError(
            f"--style: unknown class {token!r} (use a label id or a Cityscapes class name)"
        )
    if label_nc and c >= label_nc:
        raise UsageError(f"--style: class {token!r} = {c} is not below label_nc {label_nc}")
    return c


def class_name(c: int) -> str:
    return CITYSCAPES_NAMES[c] if 0 <= c < len(CITYSCAPES_NAMES) else str(c)


def parse_style(
    specs: str | list[str] | tuple[str, ...] | None, label_nc: int = 0
) -> dict[int, int]:
    """``["car=3,person=1", "26=0"]`` -> {26: 0, 24: 1}; later entries win. Raises UsageError."""
    if specs is None:
        return {}
    if isinstance(specs, str):
        specs = [specs]
    choices: dict[int, int] = {}
    for spec in specs:
        for item in filter(None, (s.strip() for s in spec.split(","))):
            cls, sep, k = item.rpartition("=")
            if not sep or not cls or not re.fullmatch(r"\d+", k.strip()):
                raise UsageError(f"--style: expected CLASS=K (e.g. car=3), got {item!r}")
            choices[class_id(cls, label_nc)] = int(k)
    return choices


@dataclass(frozen=True)
class Style:
    """The style of one object: its instance id, class and chosen centre (-1 = no clusters: zeros)."""

    instance: int
    label: int
    center: int
    chosen_by: str  # "seed", "user" or "none"


class Clusters(manifest.ManifestReader):
    """Read-only view of a cluster manifest ``p2phd.clusters/1`` (written by ``bin/cluster``).

    The centres are small: they are read into memory and the file is closed at once.
    """

    kind = KIND

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        self.close()

    def _load(self, f: h5py.File) -> None:
        try:
            self.feat_num = int(self.attrs["feat_num"])
            self.label_nc = int(self.attrs["label_nc"])
            groups = f["classes"] if "classes" in f else {}
            self._centers = {int(c): g["centers"][()].astype(np.float32) for c, g in groups.items()}
            self._counts = {int(c): g["counts"][()].astype(np.int64) for c, g in groups.items()}
        except KeyError as exc:
            raise UsageError(f"{self.path}: incomplete cluster manifest (missing {exc})") from None

    @property
    def classes(self) -> list[int]:
        """Classes that have clusters, ascending."""
        return sorted(self._centers)

    def centers(self, c: int) -> np.ndarray | None:
        """(k, feat_num) float32 centres of class c, or None when it has no clusters."""
        return self._centers.get(int(c))

    def counts(self, c: int) -> np.ndarray | None:
        return self._counts.get(int(c))

    def k(self, c: int) -> int:
        got = self._centers.get(int(c))
        return 0 if got is None else len(got)

    def check(self, feat_num: int, label_nc: int) -> None:
        """Refuse clusters made for another feature width or label set (one line, exit 2)."""
        if feat_num != self.feat_num:
            raise UsageError(
                f"{self.path}: clusters have feat_num {self.feat_num}, the run uses {feat_num}"
            )
        if label_nc != self.label_nc:
            raise UsageError(
                f"{self.path}: clusters are for label_nc {self.label_nc}, the run uses {label_nc}"
            )

    def check_choices(self, choices: dict[int, int]) -> None:
        """Every user choice must name an existing centre of a class that has clusters."""
        for c, k in choices.items():
            n = self.k(c)
            if n == 0:
                raise UsageError(
                    f"--style: class {class_name(c)} ({c}) has no clusters in {self.path}"
                )
            if not 0 <= k < n:
                raise UsageError(
                    f"--style: class {class_name(c)} ({c}) has {n} clusters (0..{n - 1}), got {k}"
                )


def derived_seed(seed: int, sample_name: str, instance: int, variant: int = 0) -> int:
    """A 64-bit seed from (seed, sample, instance, variant), stable across processes and machines."""
    key = f"p2phd.style/1|{int(seed)}|{sample_name}|{int(instance)}|{int(variant)}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little")


def segment_classes(
    segments: np.ndarray, label: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per segment (instance) of an id map: (ids, majority label, dense index HxW).

    Ties go to the smallest label. ``label`` holds small non-negative ints (uint8 label ids); an
    RGB input (label_nc 0, HxWx3) has no classes, so NVIDIA's rule on Cityscapes-style ids
    (``id if id < 1000 else id // 1000``) is used instead.
    """
    ids, inverse = np.unique(np.asarray(segments), return_inverse=True)
    if np.ndim(label) != np.ndim(segments):
        index = inverse.reshape(np.shape(segments)).astype(np.int32)
        return ids, np.where(ids < 1000, ids, ids // 1000).astype(np.int32), index
    inverse = inverse.reshape(-1)
    lab = np.asarray(label).reshape(-1).astype(np.int64)
    n_lab = int(lab.max()) + 1 if lab.size else 1
    votes = np.bincount(inverse * n_lab + lab, minlength=len(ids) * n_lab).reshape(len(ids), n_lab)
    return (
        ids,
        votes.argmax(1).astype(np.int32),
        inverse.reshape(np.shape(segments)).astype(np.int32),
    )


def choose_styles(
    label: np.ndarray,
    inst: np.ndarray | None,
    clusters: Clusters,
    seed: int,
    sample_name: str,
    choices: dict[int, int] | None = None,
    variant: int = 0,
) -> tuple[list[Style], np.ndarray]:
    """One Style per object of a label map, and the dense object index (HxW) they refer to.

    Objects are the instances of ``inst``, or the label regions when ``inst`` is None (label_feat
    runs and runs without instance maps).
    """
    choices = choices or {}
    segments = label if inst is None else inst
    ids, classes, index = segment_classes(segments, label)
    styles = []
    for i, c in zip(ids.tolist(), classes.tolist(), strict=True):
        k = clusters.k(c)
        if k == 0:
            styles.append(Style(i, c, -1, "none"))
        elif c in choices:
            styles.append(Style(i, c, int(choices[c]), "user"))
        else:
            rng = np.random.default_rng(derived_seed(seed, sample_name, i, variant))
            styles.append(Style(i, c, int(rng.integers(k)), "seed"))
    return styles, index


def paint(styles: list[Style], index: np.ndarray, clusters: Clusters) -> np.ndarray:
    """(feat_num, H, W) float32: every pixel of object j holds the centre styles[j] chose (or 0)."""
    table = np.zeros((len(styles), clusters.feat_num), np.float32)
    for j, s in enumerate(styles):
        if s.center >= 0:
            table[j] = clusters.centers(s.label)[s.center]
    return np.ascontiguousarray(table[index].transpose(2, 0, 1))


def feature_map(
    label: np.ndarray,
    inst: np.ndarray | None,
    clusters: Clusters,
    seed: int,
    sample_name: str,
    choices: dict[int, int] | None = None,
    variant: int = 0,
) -> np.ndarray:
    """The (feat_num, H, W) float32 feature map render feeds the generator for one label map."""
    styles, index = choose_styles(label, inst, clusters, seed, sample_name, choices, variant)
    return paint(styles, index, clusters)


def styles_json(styles: list[Style]) -> str:
    """Compact record of the choices, for the render manifest: [[instance, class, centre], ...]."""
    return json.dumps([[s.instance, s.label, s.center] for s in styles], separators=(",", ":"))


def describe(clusters: Clusters) -> dict[str, Any]:
    return {
        "path": str(clusters.path.resolve()),
        "sha256": clusters.sha256(),
        "classes": {class_name(c): clusters.k(c) for c in clusters.classes},
    }

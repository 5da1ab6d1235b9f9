"""Cluster manifests as render sees them, and the choice of one style (cluster centre) per object.

pix2pixHD's feature modes give each object of a label map a small feature vector; at test time
NVIDIA picks, for every instance, one of the k-means centres of its class with an *unseeded*
``np.random.randint`` and leaves classes without clusters uninitialised (MindSpore: ``randn``).
Here the choice is reproducible and controllable:

- each instance's centre comes from a seed derived from (``--seed``, sample name, instance id,
  variant) through SHA-256, so it depends neither on Python's per-process ``hash()`` nor on
  the order the samples are rendered in, nor on the other instances of the image;
- a user may fix the centre per class (``--style car=3,person=1``, class names or numeric ids),
  or per object (``--styles FILE``, what ``bin/edit`` saves: per sample, per instance id, a
  centre of its class or a seed of its own), which wins over the class choice;
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
STYLES_SCHEMA = "p2phd.styles/1"
# Per object: ("cluster", k) = centre k of its class; ("seed", s) = the seeded draw with s in
# place of --seed (so an object can be re-rolled without touching the others).
ObjectStyle = tuple[str, int]

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
    chosen_by: str  # "seed", "user" (--style), "object" (--styles: centre or seed) or "none"


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
    objects: dict[int, ObjectStyle] | None = None,
) -> tuple[list[Style], np.ndarray]:
    """One Style per object of a label map, and the dense object index (HxW) they refer to.

    Objects are the instances of ``inst``, or the label regions when ``inst`` is None (label_feat
    runs and runs without instance maps). ``objects`` (segment id -> ObjectStyle) overrides the
    class choice and the seed for single objects.
    """
    choices, objects = choices or {}, objects or {}
    segments = label if inst is None else inst
    ids, classes, index = segment_classes(segments, label)
    styles = []
    for i, c in zip(ids.tolist(), classes.tolist(), strict=True):
        k = clusters.k(c)
        how, value = objects.get(i, ("", 0))
        if k == 0:
            styles.append(Style(i, c, -1, "none"))
        elif how == "cluster":  # checked against the clusters beforehand (check_object_styles)
            styles.append(Style(i, c, int(value), "object"))
        elif c in choices and how != "seed":
            styles.append(Style(i, c, int(choices[c]), "user"))
        else:
            own = int(value) if how == "seed" else seed
            rng = np.random.default_rng(derived_seed(own, sample_name, i, variant))
            styles.append(Style(i, c, int(rng.integers(k)), "object" if how else "seed"))
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


# ---------------------------------------------------------------------------------------------
# per-object styles file (render --styles; bin/edit saves it)


def _style_error(path: str | os.PathLike, what: str) -> UsageError:
    return UsageError(f"--styles {path}: {what}")


def _object_style(path: str | os.PathLike, where: str, entry: Any) -> tuple[ObjectStyle, int]:
    """One entry ``{"cluster": k}`` or ``{"seed": s}`` (+ optional ``"class"``) -> (style, class
    or -1)."""
    if not isinstance(entry, dict):
        raise _style_error(path, f'{where}: expected an object like {{"cluster": 2}}')
    keys = set(entry) - {"class"}
    if len(keys) != 1 or not keys <= {"cluster", "seed"}:
        raise _style_error(path, f"{where}: give exactly one of 'cluster' and 'seed'")
    how = keys.pop()
    values = [(how, entry[how])] + ([("class", entry["class"])] if "class" in entry else [])
    for key, v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v >= 2**63:
            raise _style_error(path, f"{where}: {key!r} must be a non-negative integer, got {v!r}")
    return (how, int(entry[how])), int(entry.get("class", -1))


def read_styles_file(path: str | os.PathLike) -> dict[str, dict[int, tuple[ObjectStyle, int]]]:
    """``p2phd.styles/1`` JSON -> {sample name: {instance id: ((how, value), class or -1)}}.

    Layout: ``{"schema": "p2phd.styles/1", "samples": {NAME: {INSTANCE_ID: {"cluster": K} or
    {"seed": S}, optionally with "class": C}}}``; other top-level keys are notes (bin/edit writes
    the run, clusters and commands there). Raises UsageError naming the file.
    """
    from p2phd.core.cli import read_json

    try:
        doc = read_json(path, STYLES_SCHEMA, "styles file")
    except OSError as exc:
        raise _style_error(path, f"cannot read ({exc.strerror or exc})") from None
    except ValueError:  # not UTF-8 text
        raise _style_error(path, "not a JSON file") from None
    except UsageError as exc:
        raise UsageError(f"--styles {exc}") from None
    samples = doc.get("samples")
    if not isinstance(samples, dict):
        raise _style_error(path, "no 'samples' object (sample name -> instance id -> style)")
    out: dict[str, dict[int, tuple[ObjectStyle, int]]] = {}
    for name, objects in samples.items():
        if not isinstance(objects, dict):
            raise _style_error(path, f"sample {name!r}: expected instance id -> style")
        out[name] = {}
        for key, entry in objects.items():
            if not re.fullmatch(r"\d{1,10}", str(key)):
                raise _style_error(path, f"sample {name!r}: {key!r} is not an instance id")
            out[name][int(key)] = _object_style(path, f"sample {name!r} object {key}", entry)
    return out


def check_object_styles(
    path: str | os.PathLike,
    read: dict[str, dict[int, tuple[ObjectStyle, int]]],
    segments_of: Any,
    clusters: Clusters,
) -> dict[str, dict[int, ObjectStyle]]:
    """Check a read styles file against the samples and clusters; returns name -> id -> style.

    ``segments_of(name)`` gives (label HxW, segments HxW) of a sample, or None when the split has
    no such sample. Every object must exist, be of the class given, and a cluster index must be
    one of its class's centres.
    """
    checked: dict[str, dict[int, ObjectStyle]] = {}
    for name, objects in read.items():
        got = segments_of(name)
        if got is None:
            raise _style_error(path, f"sample {name!r} is not in the dataset manifest")
        ids, classes, _ = segment_classes(got[1], got[0])
        class_of = dict(zip(ids.tolist(), classes.tolist(), strict=True))
        for i, ((how, value), cls) in objects.items():
            where = f"sample {name!r} object {i}"
            if i not in class_of:
                raise _style_error(path, f"{where}: no such instance id in the sample")
            c = class_of[i]
            if cls >= 0 and cls != c:
                raise _style_error(path, f"{where}: is {class_name(c)} ({c}), not class {cls}")
            if how == "cluster" and not 0 <= value < clusters.k(c):
                have = f"0..{clusters.k(c) - 1}" if clusters.k(c) else "none"
                raise _style_error(
                    path, f"{where}: {class_name(c)} ({c}) has clusters {have}, got {value}"
                )
        checked[name] = {i: style for i, (style, _) in objects.items()}
    return checked

"""One label map being edited: label and instance arrays, per-object styles, undo and redo.

The page sends each edit as a small JSON operation (``Document.apply``); the arrays never leave
the server. Operations (x, y in pixels of the map, top-left origin):

- ``brush``: ``class``, ``radius``, ``points`` [[x, y], ...]: every pixel within ``radius`` of
  the polyline becomes ``class``; ``object`` says which instance id the pixels get: ``"new"``
  (a new object, ``class * 1000 + k`` as Cityscapes numbers its instances), ``"stuff"`` (the
  class id itself, how Cityscapes marks regions without instances) or an existing object of
  that class (the stroke extends it);
- ``fill``: ``class``, ``x``, ``y``, ``object``: the 4-connected region of equal (label, instance)
  under (x, y) becomes ``class``, with the same ``object`` rule;
- ``set_class``: ``object``, ``class``: an object stays an object (a new id of the new class),
  a region stays a region (instance id = class id);
- ``delete``: ``object``: its pixels take the label and instance of the nearest pixel outside it
  (preferring regions over other objects, so a neighbouring car does not grow into the hole);
- ``move``: ``object``, ``dx``, ``dy``: vacated as by delete, then pasted at the offset (clipped
  at the borders), keeping its id and style;
- ``style``: ``object`` and one of ``cluster`` (a centre of its class), ``seed`` (its own draw)
  or ``reset`` (back to the session's seeded draw);
- ``undo``, ``redo``.

Each operation builds new arrays (the history keeps the old ones as they are), so a render can
use a snapshot while the next edit runs. An operation that changes nothing adds no history step.
Bad operations raise ``EditError`` with a one-line reason (the server's 400).
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from p2phd.features.styles import segment_classes

# Cityscapes classes with instances (person, rider, car, truck, bus, caravan, trailer, train,
# motorcycle, bicycle): drawing one makes a new object by default.
CITYSCAPES_THINGS = frozenset(range(24, 34))
MAX_OBJECT_ID = 65535  # instance maps are saved as 16-bit PNGs (Cityscapes' instanceIds)
MAX_RADIUS = 256
MAX_POINTS = 20_000
MAX_STROKE_SAMPLES = 2_000_000  # centre-line samples of one stroke (bounds its cost)
HISTORY = 50  # undo steps kept per document
MAX_SEED = 2**63 - 1


class EditError(ValueError):
    """A malformed or impossible edit: the page gets a 400 with this one line."""


@dataclass(frozen=True)
class State:
    """One undoable state: the maps and the per-object style choices (object id -> style)."""

    label: np.ndarray  # (H, W) uint8 class ids
    inst: np.ndarray  # (H, W) int32 instance ids
    styles: dict[int, tuple[str, int]] = field(default_factory=dict)


def _int(op: dict[str, Any], key: str, lo: int, hi: int) -> int:
    v = op.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or v != v:  # v != v: NaN
        raise EditError(f"{op.get('op')}: {key!r} must be a number, got {v!r}")
    if not float(v).is_integer() or not lo <= v <= hi:
        raise EditError(f"{op.get('op')}: {key!r} must be an integer in {lo}..{hi}, got {v!r}")
    return int(v)


def new_object_id(inst: np.ndarray, c: int) -> int:
    """The next free Cityscapes-style id of class c: c*1000 + (largest k in use + 1)."""
    lo, hi = c * 1000, min(c * 1000 + 999, MAX_OBJECT_ID)
    if c < 1:  # ids below 1000 are regions (instance id = class id)
        raise EditError("class 0 cannot have objects: its ids would be taken for regions")
    if lo > MAX_OBJECT_ID:
        raise EditError(f"class {c} cannot have objects: id {lo} does not fit a 16-bit map")
    used = np.unique(inst[(inst >= lo) & (inst <= hi)])
    if not used.size:
        return lo
    if used[-1] < hi:
        return int(used[-1]) + 1
    free = np.setdiff1d(np.arange(lo, hi + 1), used)
    if not free.size:
        raise EditError(f"class {c} has no free instance id left")
    return int(free[0])


def stroke_mask(shape: tuple[int, int], points: list, radius: int) -> np.ndarray:
    """Pixels within ``radius`` of the polyline through ``points`` (x, y), clipped to the map."""
    h, w = shape
    pts = np.array(points, dtype=np.float64).reshape(-1, 2)
    pts = np.clip(pts, 0, [w - 1, h - 1])
    # The centre line sampled every half pixel, then one distance transform for the disk.
    seg = np.diff(pts, axis=0)
    counts = np.maximum(1, np.ceil(np.hypot(seg[:, 0], seg[:, 1]) * 2)).astype(np.int64)
    if int(counts.sum()) > MAX_STROKE_SAMPLES:
        raise EditError("brush: the stroke is too long; draw it in several strokes")
    line = [pts[:1]]
    for (a, d), n in zip(zip(pts[:-1], seg, strict=True), counts, strict=True):
        line.append(a + d * (np.arange(1, n + 1)[:, None] / n))
    centre = np.rint(np.concatenate(line)).astype(np.int64)
    on = np.zeros(shape, bool)
    on[centre[:, 1], centre[:, 0]] = True
    return ndimage.distance_transform_edt(~on) <= radius


def fill_from_surroundings(label: np.ndarray, inst: np.ndarray, mask: np.ndarray) -> None:
    """In place: pixels of ``mask`` take the label and id of the nearest pixel outside it."""
    outside = ~mask
    regions = outside & (inst < 1000)  # region pixels (stuff); objects only if nothing else
    source = regions if regions.any() else outside
    if not source.any():
        raise EditError("the object covers the whole map: nothing to fill its place with")
    _, (iy, ix) = ndimage.distance_transform_edt(~source, return_indices=True)
    label[mask] = label[iy[mask], ix[mask]]
    inst[mask] = inst[iy[mask], ix[mask]]


class Document:
    """A label map, its instance map and per-object styles, with undo/redo (thread-safe)."""

    def __init__(
        self,
        name: str,
        label: np.ndarray,
        inst: np.ndarray,
        label_nc: int,
        clusters_k: Callable[[int], int] | None = None,
        style_by: str = "instance",
    ) -> None:
        """``clusters_k(c)``: centres of class c (None: the run has no styles); ``style_by``:
        what a style belongs to, ``instance`` (instance_feat) or ``label`` (label_feat) regions."""
        self.id = ""  # given by the workspace
        self.name = name
        self.label_nc = label_nc
        self.clusters_k = clusters_k
        self.style_by = style_by
        self.state = State(
            np.ascontiguousarray(label, np.uint8), np.ascontiguousarray(inst, np.int32)
        )
        self.undo_stack: list[State] = []
        self.redo_stack: list[State] = []
        self.version = 0
        self.lock = threading.RLock()
        # The state as opened or last saved: a document still in it has nothing to lose.
        self.saved_state = self.state

    @property
    def unsaved(self) -> bool:
        """Has the state changed since it was opened or saved? (Undo back to it: no.)"""
        return self.state is not self.saved_state

    def mark_saved(self, s: State) -> None:
        """``s`` (a snapshot) was written: the document is unsaved again only if it moved on."""
        with self.lock:
            self.saved_state = s

    def restore(self, s: State, version: int) -> None:
        """Come back as a dropped unedited document was (p2phd.editing.store): its state and
        version, with no undo history."""
        with self.lock:
            self.state = self.saved_state = s
            self.version = version

    @property
    def shape(self) -> tuple[int, int]:
        return self.state.label.shape  # type: ignore[return-value]

    def snapshot(self) -> tuple[State, int]:
        with self.lock:
            return self.state, self.version

    # -- the operations -----------------------------------------------------------------------

    def apply(self, op: Any) -> bool:
        """Apply one operation; True if it changed the document. Raises EditError."""
        if not isinstance(op, dict):
            raise EditError("an edit is a JSON object with an 'op' field")
        kind = op.get("op")
        handlers = {
            "brush": self._brush,
            "fill": self._fill,
            "set_class": self._set_class,
            "delete": self._delete,
            "move": self._move,
            "style": self._style,
        }
        with self.lock:
            if kind == "undo":
                return self._step(self.undo_stack, self.redo_stack)
            if kind == "redo":
                return self._step(self.redo_stack, self.undo_stack)
            if kind not in handlers:
                raise EditError(
                    f"unknown op {kind!r} (one of {', '.join([*handlers, 'undo', 'redo'])})"
                )
            new = handlers[kind](op, self.state)
            if new is None:
                return False
            new = State(new.label, new.inst, self._pruned_styles(new))
            if (
                np.array_equal(new.label, self.state.label)
                and np.array_equal(new.inst, self.state.inst)
                and new.styles == self.state.styles
            ):
                return False
            self.undo_stack = [*self.undo_stack[-(HISTORY - 1) :], self.state]
            self.redo_stack = []
            self.state = new
            self.version += 1
            return True

    def _step(self, source: list[State], target: list[State]) -> bool:
        if not source:
            return False
        target.append(self.state)
        self.state = source.pop()
        self.version += 1
        return True

    def _class(self, op: dict[str, Any]) -> int:
        return _int(op, "class", 0, self.label_nc - 1)

    def _object(self, op: dict[str, Any], s: State, key: str = "object") -> tuple[int, np.ndarray]:
        i = _int(op, key, 0, 2**31 - 1)
        mask = s.inst == i
        if not mask.any():
            raise EditError(f"{op['op']}: no object {i} in this map")
        return i, mask

    def _paint(self, op: dict[str, Any], s: State, mask: np.ndarray, c: int) -> State:
        """Pixels of mask become class c with the instance id ``op['object']`` asks for."""
        target = op.get("object", "stuff")
        if target == "new":
            i = new_object_id(s.inst, c)
        elif target == "stuff":
            i = c
        else:
            i, existing = self._object(op, s)
            if not (s.label[existing] == c).any():
                raise EditError(f"{op['op']}: object {i} is not of class {c}; cannot extend it")
        label, inst = s.label.copy(), s.inst.copy()
        label[mask] = c
        inst[mask] = i
        return State(label, inst, s.styles)

    def _brush(self, op: dict[str, Any], s: State) -> State:
        c = self._class(op)
        radius = _int(op, "radius", 0, MAX_RADIUS)
        points = op.get("points")
        if not isinstance(points, list) or not 1 <= len(points) <= MAX_POINTS:
            raise EditError(f"brush: 'points' must be a list of 1..{MAX_POINTS} [x, y] pairs")
        for p in points:
            if (
                not isinstance(p, list)
                or len(p) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in p)
                or not all(abs(v) < 1e9 for v in p)  # also refuses NaN
            ):
                raise EditError(f"brush: every point must be [x, y] numbers, got {p!r}")
        return self._paint(op, s, stroke_mask(self.shape, points, radius), c)

    def _fill(self, op: dict[str, Any], s: State) -> State:
        c = self._class(op)
        h, w = self.shape
        x, y = _int(op, "x", 0, w - 1), _int(op, "y", 0, h - 1)
        same = (s.label == s.label[y, x]) & (s.inst == s.inst[y, x])
        parts, _ = ndimage.label(same)  # 4-connected (the default cross)
        return self._paint(op, s, parts == parts[y, x], c)

    def _set_class(self, op: dict[str, Any], s: State) -> State | None:
        i, mask = self._object(op, s)
        c = self._class(op)
        if (s.label[mask] == c).all():
            return None
        label, inst = s.label.copy(), s.inst.copy()
        label[mask] = c
        inst[mask] = new_object_id(s.inst, c) if i >= 1000 else c
        return State(label, inst, s.styles)

    def _delete(self, op: dict[str, Any], s: State) -> State:
        _, mask = self._object(op, s)
        label, inst = s.label.copy(), s.inst.copy()
        fill_from_surroundings(label, inst, mask)
        return State(label, inst, s.styles)

    def _move(self, op: dict[str, Any], s: State) -> State | None:
        i, mask = self._object(op, s)
        h, w = self.shape
        dx, dy = _int(op, "dx", -w, w), _int(op, "dy", -h, h)
        if dx == 0 and dy == 0:
            return None
        ys, xs = np.nonzero(mask)
        ny, nx = ys + dy, xs + dx
        keep = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        if not keep.any():
            raise EditError(f"move: object {i} would leave the map")
        label, inst = s.label.copy(), s.inst.copy()
        fill_from_surroundings(label, inst, mask)
        label[ny[keep], nx[keep]] = s.label[ys[keep], xs[keep]]
        inst[ny[keep], nx[keep]] = i
        return State(label, inst, s.styles)

    def style_key(self, s: State, i: int) -> tuple[int, int]:
        """(the segment id styles are keyed by, its class) for object i: the object itself, or
        its class region for label_feat runs."""
        mask = s.inst == i
        values, counts = np.unique(s.label[mask], return_counts=True)
        c = int(values[np.argmax(counts)])  # the majority label, ties to the smallest
        return (c if self.style_by == "label" else i), c

    def _style(self, op: dict[str, Any], s: State) -> State:
        if self.clusters_k is None:
            raise EditError("style: this run has no feature styles (not an instance_feat run)")
        i, _ = self._object(op, s)
        key, c = self.style_key(s, i)
        styles = dict(s.styles)
        if op.get("reset"):
            styles.pop(key, None)
        elif "cluster" in op:
            k = self.clusters_k(c)
            if k == 0:
                raise EditError(f"style: class {c} has no clusters")
            styles[key] = ("cluster", _int(op, "cluster", 0, k - 1))
        elif "seed" in op:
            styles[key] = ("seed", _int(op, "seed", 0, MAX_SEED))
        else:
            raise EditError("style: give 'cluster', 'seed' or 'reset'")
        return State(s.label, s.inst, styles)

    def _pruned_styles(self, s: State) -> dict[int, tuple[str, int]]:
        """Styles of objects that still exist, with a cluster index their class still has."""
        if not s.styles:
            return {}
        segments = s.label if self.style_by == "label" else s.inst
        ids, classes, _ = segment_classes(segments, s.label)
        class_of = dict(zip(ids.tolist(), classes.tolist(), strict=True))
        keep = {}
        for i, (how, v) in s.styles.items():
            c = class_of.get(i)
            if c is None or self.clusters_k is None:
                continue
            if how == "cluster" and v >= self.clusters_k(c):
                continue
            keep[i] = (how, v)
        return keep

    # -- what the page shows ------------------------------------------------------------------

    def objects(self, s: State) -> list[dict[str, Any]]:
        """Per instance id: class (majority label), pixel count, bounding box [x0, y0, x1, y1]."""
        ids, classes, index = segment_classes(s.inst, s.label)
        counts = np.bincount(index.ravel(), minlength=len(ids))
        boxes = ndimage.find_objects(index + 1)  # one (rows, cols) slice pair per segment
        return [
            {
                "id": int(i),
                "class": int(c),
                "pixels": int(n),
                "bbox": [box[1].start, box[0].start, box[1].stop - 1, box[0].stop - 1],
            }
            for i, c, n, box in zip(
                ids.tolist(), classes.tolist(), counts.tolist(), boxes, strict=True
            )
        ]

"""What one bin/edit server holds: the model, the split it browses, the open documents, uploads.

The page names things by id only: a sample by its row in ``--data``, a document by the random
id the server gave it, a class and a cluster by number. No request carries a file path, so the
server reads only the run, the clusters and the data manifest given on its command line and
writes only under ``--out``. Uploads are checked from their header before any pixel is decoded:
PNG only, at most ``max_pixels`` (a decompression bomb is refused with a 413, the server goes on).
"""

import io
import secrets
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from p2phd.data.sources import INST_MODES, LABEL_MODES
from p2phd.editing import saving
from p2phd.editing.document import CITYSCAPES_THINGS, Document, EditError
from p2phd.editing.model import Model
from p2phd.editing.options import MAX_UPLOAD_PIXELS
from p2phd.editing.store import Store


class TooLarge(EditError):
    """An upload over the pixel limit: a 413 rather than a 400."""


def decode_png(data: bytes, what: str, modes: set[str], max_pixels: int) -> np.ndarray:
    """One uploaded PNG as an array, its size checked on the header first."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise TooLarge(f"{what}: over PIL's decompression-bomb limit; refused") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise EditError(f"{what}: not an image file") from None
    w, h = im.size
    if im.format != "PNG":
        raise EditError(f"{what}: a {im.format} image; upload a PNG (label ids are exact there)")
    if w * h > max_pixels:
        raise TooLarge(
            f"{what}: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} "
            "(bin/edit --max_upload_pixels)"
        )
    if im.mode not in modes:
        raise EditError(
            f"{what}: mode {im.mode}; expected one channel of ids ({', '.join(sorted(modes))})"
        )
    try:
        im.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise EditError(
            f"{what}: cannot decode ({str(exc).splitlines()[0] if str(exc) else 'corrupt'})"
        ) from None
    return np.asarray(im)


class Workspace:
    """The server's state: model, optional dataset, open documents and the save folder."""

    def __init__(
        self,
        model: Model,
        out: Path,
        dataset: Any = None,
        max_pixels: int = MAX_UPLOAD_PIXELS,
    ) -> None:
        self.model = model
        self.out = out
        self.dataset = dataset
        self.max_pixels = max_pixels
        self.documents = Store(self._document)
        self.lock = threading.Lock()
        self.save_lock = threading.Lock()
        self.renders: dict[tuple[str, str], tuple[int, bytes]] = {}

    @property
    def label_nc(self) -> int:
        return self.model.arch.label_nc

    def info(self) -> dict[str, Any]:
        """Run, classes (name, colour, object or region, clusters) and the split's samples."""
        from p2phd.core.palette import palette
        from p2phd.features.styles import class_name

        colours = palette(self.label_nc)
        cityscapes = self.label_nc == 35
        classes = [
            {
                "id": c,
                "name": class_name(c) if cityscapes else str(c),
                "colour": [int(v) for v in colours[c]],
                "thing": cityscapes and c in CITYSCAPES_THINGS,
                "clusters": self.model.clusters_k(c),
            }
            for c in range(self.label_nc)
        ]
        return {
            "run": self.model.info.run_dir.name,
            "mode": self.model.info.mode,
            "engine": self.model.info.engine.name,
            "label_nc": self.label_nc,
            "classes": classes,
            "samples": list(self.dataset.names) if self.dataset is not None else [],
            "preview_width": self.model.preview_width,
            "max_pixels": self.max_pixels,
            "out": str(self.out),
            "seed": self.model.info.seed,
        }

    # -- documents ----------------------------------------------------------------------------

    def _document(self, name: str, label: np.ndarray, inst: np.ndarray) -> Document:
        k = self.model.clusters_k if self.model.info.mode == "clusters" else None
        return Document(name, label, inst, self.label_nc, k, self.model.info.style_by)

    def _add(self, name: str, label: np.ndarray, inst: np.ndarray) -> Document:
        doc = self._document(name, label, inst)
        doc.id = secrets.token_hex(8)
        self.documents.add(doc)  # may drop an unedited document (or refuse: store.Full)
        held = self.documents.ids()
        self.renders = {key: v for key, v in self.renders.items() if key[0] in held}
        return doc

    def get(self, doc_id: str) -> Document | None:
        return self.documents.get(doc_id)

    def edit(self, doc_id: str, op: Any) -> Document | None:
        """Apply one operation to a document held in memory meanwhile; None if unknown."""
        with self.documents.using(doc_id) as doc:
            if doc is not None:
                doc.apply(op)
            return doc

    def close(self, doc_id: str) -> bool:
        return self.documents.close(doc_id)

    def open_sample(self, row: Any) -> Document:
        n = len(self.dataset) if self.dataset is not None else 0
        if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < n:
            raise EditError(
                f"sample must be a row number 0..{n - 1} of the split, got {row!r}"
                if n
                else "no --data split to open samples from"
            )
        with self.lock:  # h5py reads are not thread-safe
            s = self.dataset.sample(row)
        inst = s.inst if s.inst is not None else s.label.astype(np.int32)
        return self._add(s.name, s.label, inst.astype(np.int32))

    def open_upload(self, name: str, label_png: bytes, inst_png: bytes | None) -> Document:
        saving.file_names(saving.check_name(name))
        label = decode_png(label_png, "label map", LABEL_MODES, self.max_pixels)
        self.model.check_size(*label.shape, "label map")
        if label.size and (label.min() < 0 or label.max() >= self.label_nc):
            raise EditError(
                f"label map: values {int(label.min())}..{int(label.max())} are outside "
                f"0..{self.label_nc - 1} (the run's label_nc {self.label_nc})"
            )
        label = label.astype(np.uint8)
        if inst_png is None:
            inst = label.astype(np.int32)  # every class one region, as Cityscapes' stuff
        else:
            inst = decode_png(inst_png, "instance map", INST_MODES, self.max_pixels)
            if inst.shape != label.shape:
                raise EditError(
                    f"instance map: {inst.shape[1]}x{inst.shape[0]}, the label map is "
                    f"{label.shape[1]}x{label.shape[0]}"
                )
            inst = inst.astype(np.int32)
        return self._add(name, label, inst)

    def state(self, doc: Document) -> dict[str, Any]:
        """What the page shows of a document: size, version, undo/redo, objects and styles."""
        s, version = doc.snapshot()
        styles = self.model.effective_styles(doc.name, s)
        objects = doc.objects(s)
        for obj in objects:
            key = obj["class"] if doc.style_by == "label" else obj["id"]
            st, how = styles.get(key), s.styles.get(key)
            obj["style"] = st and {**st, "key": key, "user": list(how) if how else None}
        h, w = doc.shape
        return {
            "id": doc.id,
            "name": doc.name,
            "width": w,
            "height": h,
            "version": version,
            "can_undo": bool(doc.undo_stack),
            "can_redo": bool(doc.redo_stack),
            "unsaved": doc.unsaved,
            "objects": objects,
        }

    # -- renders and saving -------------------------------------------------------------------

    def render_png(self, doc: Document, kind: str) -> tuple[bytes, int, float]:
        """(PNG bytes, version, generator ms) of the document's current state; cached."""
        s, version = doc.snapshot()
        key = (doc.id, kind)
        cached = self.renders.get(key)
        if cached is not None and cached[0] == version:
            return cached[1], version, 0.0
        if kind == "preview":
            picture = self.model.preview(doc.name, s)
        else:
            picture = self.model.full(doc.name, s)
        ms = self.model.last_ms
        buf = io.BytesIO()
        Image.fromarray(picture).save(buf, format="PNG", compress_level=1)
        self.renders[key] = (version, buf.getvalue())
        return buf.getvalue(), version, ms

    def swatch_png(self, c: int, k: int) -> bytes:
        if self.model.clusters_k(c) <= k:
            raise EditError(f"class {c} has {self.model.clusters_k(c)} clusters; no cluster {k}")
        buf = io.BytesIO()
        Image.fromarray(self.model.swatch(c, k)).save(buf, format="PNG")
        return buf.getvalue()

    def save(self, doc_id: str) -> dict[str, Any] | None:
        """Render the current state at full size and write it with its maps and styles (None:
        no such document). Saved, the document may be dropped (it comes back as saved)."""
        with self.documents.using(doc_id) as doc:
            if doc is None:
                return None
            s, version = doc.snapshot()
            picture = self.model.full(doc.name, s)
            chosen = self.model.chosen(doc.name, s)[0] if self.model.info.mode == "clusters" else []
            with self.save_lock:
                result = saving.save(self.out, doc.name, s, picture, chosen, self.model.info)
            doc.mark_saved(s)
        return {**result, "version": version, "unsaved": doc.unsaved}

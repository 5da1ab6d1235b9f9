"""The open documents of a bin/edit server, and the rule that no unsaved edit is ever dropped.

At most ``MAX_DOCUMENTS`` documents are held in memory (each keeps up to 50 undo steps of its
maps). To make room for another, the least recently used document *without unsaved edits*
(``Document.unsaved``: its state is still the one it was opened or last saved with) is written
to the server's own temporary folder (its maps and styles, compressed; not its undo history)
and dropped; asking for it again brings it back as it was, under the same id and version. A
document with unsaved edits, or one a request is editing or saving right now, is never dropped:
when every slot holds one, opening another is refused with a 409 (``Full``) naming the way out
(save or close one). ``MAX_SPILLED`` dropped documents are remembered; beyond, the oldest is
forgotten (its page then says its document is gone).
"""

import json
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from p2phd.editing.document import Document, EditError, State

MAX_DOCUMENTS = 8  # documents held in memory (a 2048x1024 one with its history: up to ~0.5 GB)
MAX_SPILLED = 256  # dropped unedited documents that can come back (~0.2 MB each at 2048x1024)


class Full(EditError):
    """Every slot holds a document with unsaved edits: a 409, not a 400."""


class Store:
    """Documents by id; ``make(name, label, inst)`` builds a Document (for spilled ones)."""

    def __init__(
        self,
        make: Callable[[str, np.ndarray, np.ndarray], Document],
        limit: int = MAX_DOCUMENTS,
        max_spilled: int = MAX_SPILLED,
    ) -> None:
        self.make = make
        self.limit = limit
        self.max_spilled = max_spilled
        self.docs: OrderedDict[str, Document] = OrderedDict()
        self.spilled: OrderedDict[str, tuple[Path, str, int]] = OrderedDict()  # file, name, version
        self.busy: dict[str, int] = {}  # id -> requests editing or saving it now
        self.lock = threading.Lock()
        self._folder: tempfile.TemporaryDirectory | None = None

    def ids(self) -> set[str]:
        with self.lock:
            return set(self.docs)

    def listing(self) -> list[dict]:
        """Every document the server can give back: id, name, version, unsaved, in memory."""
        with self.lock:
            held = [
                {"id": i, "name": d.name, "version": d.version, "unsaved": d.unsaved, "held": True}
                for i, d in self.docs.items()
            ]
            return held + [
                {"id": i, "name": name, "version": v, "unsaved": False, "held": False}
                for i, (_, name, v) in self.spilled.items()
            ]

    def add(self, doc: Document) -> None:
        """Hold a new document (its id already set); Full if no slot can be freed."""
        with self.lock:
            self._make_room()
            self.docs[doc.id] = doc

    def get(self, doc_id: str) -> Document | None:
        """The document (brought back if it was dropped), or None if unknown or forgotten."""
        with self.lock:
            return self._get(doc_id)

    @contextmanager
    def using(self, doc_id: str) -> Iterator[Document | None]:
        """The document, kept in memory until the block ends (an edit or a save in progress)."""
        with self.lock:
            doc = self._get(doc_id)
            if doc is not None:
                self.busy[doc_id] = self.busy.get(doc_id, 0) + 1
        try:
            yield doc
        finally:
            if doc is not None:
                with self.lock:
                    self.busy[doc_id] -= 1
                    if not self.busy[doc_id]:
                        del self.busy[doc_id]

    def close(self, doc_id: str) -> bool:
        """Forget a document, unsaved edits and all (the page asked first); False if unknown."""
        with self.lock:
            held = self.docs.pop(doc_id, None) is not None
            spilled = self.spilled.pop(doc_id, None)
            if spilled is not None:
                spilled[0].unlink(missing_ok=True)
            return held or spilled is not None

    def cleanup(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()

    # -- under self.lock ----------------------------------------------------------------------

    def _get(self, doc_id: str) -> Document | None:
        doc = self.docs.get(doc_id)
        if doc is not None:
            self.docs.move_to_end(doc_id)
            return doc
        if doc_id not in self.spilled:
            return None
        path = self.spilled[doc_id][0]
        self._make_room()
        doc = self._restore(doc_id, path)
        del self.spilled[doc_id]
        path.unlink(missing_ok=True)
        self.docs[doc_id] = doc
        return doc

    def _make_room(self) -> None:
        while len(self.docs) >= self.limit:
            victim = next(
                (i for i, d in self.docs.items() if not d.unsaved and i not in self.busy), None
            )
            if victim is None:
                unsaved = sum(d.unsaved for d in self.docs.values())
                raise Full(
                    f"{unsaved} documents have unsaved edits: save or close one"
                    if unsaved == len(self.docs)
                    else f"all {len(self.docs)} documents are being edited or saved: try again"
                )
            self._spill(victim, self.docs.pop(victim))

    def _spill(self, doc_id: str, doc: Document) -> None:
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="p2phd-edit-")
        s, version = doc.snapshot()
        meta = {"name": doc.name, "version": version, "styles": list(s.styles.items())}
        path = Path(self._folder.name) / f"{doc_id}.npz"
        np.savez_compressed(path, label=s.label, inst=s.inst, meta=np.array(json.dumps(meta)))
        self.spilled[doc_id] = (path, doc.name, version)
        while len(self.spilled) > self.max_spilled:
            _, (old, _, _) = self.spilled.popitem(last=False)
            old.unlink(missing_ok=True)

    def _restore(self, doc_id: str, path: Path) -> Document:
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            doc = self.make(meta["name"], z["label"], z["inst"])
        styles = {int(k): (how, int(v)) for k, (how, v) in meta["styles"]}
        doc.id = doc_id
        doc.restore(State(doc.state.label, doc.state.inst, styles), meta["version"])
        return doc

"""The HTTP API of bin/edit (Flask) and the page it serves.

| method, path | what |
| --- | --- |
| GET / | the editor page (``static/index.html``; ``/static/*``: its script, style) |
| GET /api/info | run, classes (id, name, colour, thing, clusters), sample names, limits |
| GET /api/documents | the open documents: id, name, version, unsaved, held in memory |
| POST /api/documents | ``{"sample": ROW}``: open a sample of ``--data`` -> state (201) |
| POST /api/uploads | multipart ``label`` PNG, optional ``inst`` PNG, ``name`` -> state (201) |
| GET /api/documents/ID | state: size, version, can_undo/redo, objects (class, box, style) |
| GET /api/documents/ID/maps | label (H*W uint8) then instance ids (H*W int32, little-endian) |
| POST /api/documents/ID/edits | one edit operation (``document.py``) -> state |
| GET /api/documents/ID/preview.png | the state rendered (``X-Version``, ``X-Render-Ms``); |
| GET /api/documents/ID/full.png | ... at full size, as bin/render would |
| POST /api/documents/ID/save | write the files (``saving.py``) -> files and batch commands |
| DELETE /api/documents/ID | close it, unsaved edits and all (the page asks first) |
| GET /api/swatches/C/K.png | class C's cluster centre K rendered by G |

Every request first passes ``guard.py`` (Host, token, and for state changes Origin and
Content-Type: ``application/json`` everywhere but the upload). Every error is JSON
``{"error": "<one line>"}`` with a 4xx (bad input) or 500 status: never an HTML traceback page.
Request bodies are capped by ``MAX_CONTENT_LENGTH`` (413). A document that cannot be held
because every slot has unsaved edits is a 409 (``store.py``).
"""

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException, NotFound

from p2phd.editing.document import Document, EditError
from p2phd.editing.guard import Guard
from p2phd.editing.options import MAX_UPLOAD_BYTES
from p2phd.editing.store import Full
from p2phd.editing.workspace import TooLarge, Workspace

STATIC = Path(__file__).resolve().parent / "static"
_DOC_ID = re.compile(r"[0-9a-f]{16}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:300]


def _error(message: str, status: int) -> tuple[Response, int]:
    return jsonify(error=_one_line(message)), status


def _json_body() -> Any:
    body = request.get_json(silent=True)  # the guard let only application/json through
    if body is None:
        raise EditError('the request body must be JSON (e.g. {"op": "undo"})')
    return body


def _png(data: bytes, version: int, ms: float = 0.0) -> Response:
    r = Response(data, mimetype="image/png")
    r.headers["X-Version"] = str(version)
    r.headers["X-Render-Ms"] = f"{ms:.1f}"
    r.headers["Cache-Control"] = "no-store"
    return r


def _gone(doc_id: str) -> NotFound:
    return NotFound(f"no document {doc_id!r} (ids come from /api/documents or /api/uploads)")


def create_app(ws: Workspace, guard: Guard, max_body: int = MAX_UPLOAD_BYTES) -> Flask:
    """The Flask app serving ``ws`` to whom ``guard`` lets in; bodies over ``max_body`` bytes
    get a 413."""
    app = Flask("p2phd.editing", static_folder=str(STATIC), static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = max_body
    app.json.sort_keys = False  # type: ignore[attr-defined]

    def document(doc_id: str) -> Document:
        doc = ws.get(doc_id) if _DOC_ID.fullmatch(doc_id) else None
        if doc is None:
            raise _gone(doc_id)
        return doc

    def known(doc_id: str) -> str:
        if not _DOC_ID.fullmatch(doc_id):
            raise _gone(doc_id)
        return doc_id

    @app.before_request
    def check():  # before the URL's route runs, also for unknown URLs and static files
        refused = guard.refusal(request)
        return _error(refused[1], refused[0]) if refused else None

    @app.after_request
    def headers(response: Response) -> Response:
        return guard.after(request, response)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _error(f"{exc.name}: {exc.description}", exc.code or 500)

    @app.errorhandler(Full)
    def full(exc: Full):
        return _error(str(exc), 409)

    @app.errorhandler(TooLarge)
    def too_large(exc: TooLarge):
        return _error(str(exc), 413)

    @app.errorhandler(EditError)
    def bad_edit(exc: EditError):
        return _error(str(exc), 400)

    @app.errorhandler(Exception)
    def failure(exc: Exception):
        print(
            f"edit: {request.method} {request.path} failed: "
            f"{type(exc).__name__}: {_one_line(str(exc))}",
            file=sys.stderr,
        )
        return _error(f"internal error: {type(exc).__name__}: {exc}", 500)

    @app.get("/")
    def page():
        r = send_from_directory(STATIC, "index.html")
        r.headers["Cache-Control"] = "no-store"
        return r

    @app.get("/api/info")
    def info():
        return jsonify(ws.info())

    @app.get("/api/documents")
    def listing():
        return jsonify(ws.documents.listing())

    @app.post("/api/documents")
    def open_sample():
        body = _json_body()
        if not isinstance(body, dict) or "sample" not in body:
            raise EditError('give {"sample": ROW} (a row of the split, see /api/info)')
        return jsonify(ws.state(ws.open_sample(body["sample"]))), 201

    @app.post("/api/uploads")
    def upload():
        label = request.files.get("label")
        if label is None:
            raise EditError("upload a label map PNG as the form field 'label'")
        inst = request.files.get("inst")
        name = request.form.get("name") or Path(label.filename or "upload").stem
        name = name.removesuffix("_gtFine_labelIds")
        inst_bytes = inst.read() if inst is not None and inst.filename else None
        doc = ws.open_upload(name, label.read(), inst_bytes)
        return jsonify(ws.state(doc)), 201

    @app.get("/api/documents/<doc_id>")
    def state(doc_id: str):
        return jsonify(ws.state(document(doc_id)))

    @app.get("/api/documents/<doc_id>/maps")
    def maps(doc_id: str):
        doc = document(doc_id)
        s, version = doc.snapshot()
        data = s.label.astype(np.uint8).tobytes() + s.inst.astype("<i4").tobytes()
        r = Response(data, mimetype="application/octet-stream")
        r.headers["X-Version"] = str(version)
        r.headers["Cache-Control"] = "no-store"
        return r

    @app.post("/api/documents/<doc_id>/edits")
    def edit(doc_id: str):
        op = _json_body()
        doc = ws.edit(known(doc_id), op)
        if doc is None:
            raise _gone(doc_id)
        return jsonify(ws.state(doc))

    @app.delete("/api/documents/<doc_id>")
    def close(doc_id: str):
        if not ws.close(known(doc_id)):
            raise _gone(doc_id)
        return jsonify(closed=doc_id)

    @app.get("/api/documents/<doc_id>/<kind>.png")
    def render(doc_id: str, kind: str):
        if kind not in ("preview", "full"):
            raise NotFound(f"no {kind}.png (preview.png or full.png)")
        return _png(*ws.render_png(document(doc_id), kind))

    @app.post("/api/documents/<doc_id>/save")
    def save(doc_id: str):
        saved = ws.save(known(doc_id))
        if saved is None:
            raise _gone(doc_id)
        return jsonify(saved)

    @app.get("/api/swatches/<int:c>/<int:k>.png")
    def swatch(c: int, k: int):
        if ws.model.info.mode != "clusters":
            raise NotFound("this run has no feature styles")
        return _png(ws.swatch_png(c, k), 0)

    return app

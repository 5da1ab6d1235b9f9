"""bin/edit without a browser: edit operations on the maps, the HTTP API through Flask's test
client (load, edit, render, save, bad requests), and render --styles (per-object styles) with its
checks. A tiny random feature run at 256x128 (tests/edit_util.py)."""

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from edit_util import (
    CAR,
    NAMES,
    PERSON,
    ROAD,
    SIDEWALK,
    make_clusters,
    make_run,
    png_header,
    scene,
    write_split,
)
from PIL import Image

from p2phd.core.cli import UsageError, run_verb
from p2phd.data import prepare
from p2phd.data.dataset import Dataset
from p2phd.editing.document import Document, EditError, State
from p2phd.features.styles import Clusters, choose_styles
from p2phd.rendering import render

pytestmark = pytest.mark.slow  # edits rendered and re-rendered by the batch verbs: not in test-fast


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict[str, Path]:
    w = tmp_path_factory.mktemp("edit-api")
    write_split(w / "data")
    data = w / "test.h5"
    args = ["--dataroot", str(w / "data"), "--phase", "test", "--load_size", "0", "--jobs", "1"]
    assert run_verb(prepare.main, [*args, "--out", str(data)]) == 0
    return {
        "root": w,
        "data": data,
        "run": make_run(w / "run"),
        "clusters": make_clusters(w / "clusters.h5"),
    }


@pytest.fixture(scope="module")
def app(work):
    from p2phd.editing.model import Model, open_run
    from p2phd.editing.server import create_app
    from p2phd.editing.workspace import Workspace

    info = open_run(str(work["run"]), str(work["clusters"]), 0)
    ws = Workspace(Model(info, 128), work["root"] / "out", Dataset(work["data"]), 256 * 256)
    flask_app = create_app(ws, max_body=2**20)
    flask_app.ws = ws
    return flask_app


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def _doc() -> Document:
    label, inst = scene(0)
    return Document("x", label, inst, 35, lambda c: {ROAD: 2, CAR: 3}.get(c, 0))


# -- edit operations on the arrays --------------------------------------------------------------


def test_brush_fill_and_new_object_ids() -> None:
    d = _doc()
    s0 = d.state
    assert d.apply(
        {"op": "brush", "class": CAR, "radius": 3, "points": [[230, 115]], "object": "new"}
    )
    s1 = d.state
    painted = s1.label != s0.label
    assert painted.sum() == 29  # a disk of radius 3: 29 pixels
    assert set(np.unique(s1.inst[painted])) == {CAR * 1000 + 2}  # cars 26000, 26001 exist
    # extending that object, then painting a region (stuff): the id is the class itself
    d.apply(
        {
            "op": "brush",
            "class": CAR,
            "radius": 1,
            "points": [[236, 115], [240, 115]],
            "object": 26002,
        }
    )
    assert (d.state.inst == 26002).sum() > (s1.inst == 26002).sum()
    d.apply({"op": "fill", "class": SIDEWALK, "x": 5, "y": 120, "object": "stuff"})
    road = (s0.label == ROAD) & (d.state.label == SIDEWALK)
    assert road.sum() > 10_000 and (d.state.inst[road] == SIDEWALK).all()
    assert not (d.state.label[s0.inst == 26000] == SIDEWALK).any()  # the fill stops at cars
    assert d.version == 3 and len(d.undo_stack) == 3


def test_set_class_delete_move_undo_redo() -> None:
    d = _doc()
    s0 = d.state
    car = s0.inst == 26000
    d.apply({"op": "set_class", "object": 26000, "class": PERSON})
    assert (d.state.label[car] == PERSON).all() and (d.state.inst[car] == PERSON * 1000 + 1).all()
    d.apply({"op": "undo"})
    d.apply({"op": "delete", "object": 26000})
    assert (d.state.label[car] == ROAD).all() and (d.state.inst[car] == ROAD).all()
    assert (d.state.inst == 26001).sum() == (s0.inst == 26001).sum()  # the other car kept
    d.apply({"op": "undo"})
    d.apply({"op": "style", "object": 26000, "cluster": 2})
    d.apply({"op": "move", "object": 26000, "dx": 30, "dy": -5})
    moved = d.state.inst == 26000
    assert moved.sum() == car.sum() and d.state.styles == {26000: ("cluster", 2)}
    ys, xs = np.nonzero(moved)
    y0, x0 = np.argwhere(car).min(0)
    assert (ys.min(), xs.min()) == (y0 - 5, x0 + 30)
    d.apply({"op": "undo"})
    assert np.array_equal(d.state.inst, s0.inst) and d.state.styles == {26000: ("cluster", 2)}
    d.apply({"op": "redo"})
    assert np.array_equal(d.state.inst == 26000, moved)
    # an edit that changes nothing adds no step; deleting the object drops its style
    before = d.version
    assert not d.apply({"op": "move", "object": 26000, "dx": 0, "dy": 0})
    assert d.version == before
    d.apply({"op": "delete", "object": 26000})
    assert d.state.styles == {}


@pytest.mark.parametrize(
    "op, match",
    [
        ("not a dict", "JSON object"),
        ({"op": "explode"}, "unknown op"),
        (
            {"op": "brush", "class": 99, "radius": 2, "points": [[1, 1]]},
            "'class' must be an integer in 0..34",
        ),
        ({"op": "brush", "class": 7, "radius": 2, "points": []}, "points"),
        ({"op": "brush", "class": 7, "radius": 2, "points": [[1, "a"]]}, r"\[x, y\]"),
        ({"op": "brush", "class": 7, "radius": 1e9, "points": [[1, 1]]}, "radius"),
        (
            {"op": "brush", "class": 7, "radius": 2, "points": [[0, 0], [255, 127]] * 5000},
            "too long",
        ),
        ({"op": "fill", "class": 7, "x": 999, "y": 0}, "'x' must be an integer in 0..255"),
        ({"op": "delete", "object": 12345}, "no object 12345"),
        (
            {"op": "fill", "class": 0, "x": 1, "y": 1, "object": "new"},
            "class 0 cannot have objects",
        ),
        (
            {"op": "brush", "class": ROAD, "radius": 1, "points": [[1, 1]], "object": 26000},
            "not of class",
        ),
        ({"op": "style", "object": 26000, "cluster": 3}, "'cluster' must be an integer in 0..2"),
        ({"op": "style", "object": 24000, "cluster": 0}, "class 24 has no clusters"),
        ({"op": "style", "object": 26000}, "give 'cluster', 'seed' or 'reset'"),
        ({"op": "move", "object": 26000, "dx": 255, "dy": 0}, "leave the map"),
        ({"op": "set_class", "object": 26000, "class": True}, "must be a number"),
    ],
)
def test_bad_operations_are_refused(op, match) -> None:
    d = _doc()
    with pytest.raises(EditError, match=match):
        d.apply(op)
    assert d.version == 0


# -- per-object styles (render --styles) ---------------------------------------------------------


def test_object_styles_override_seed_and_class_choice(work) -> None:
    clusters = Clusters(work["clusters"])
    label, inst = scene(0)
    base = {s.instance: s for s in choose_styles(label, inst, clusters, 0, "a")[0]}
    objects = {26000: ("cluster", (base[26000].center + 1) % 3), 7: ("seed", 12345)}
    got = {
        s.instance: s for s in choose_styles(label, inst, clusters, 0, "a", {CAR: 0}, 0, objects)[0]
    }
    assert got[26000].center == objects[26000][1] and got[26000].chosen_by == "object"
    assert got[26001].center == 0 and got[26001].chosen_by == "user"  # --style car=0
    other = {s.instance: s for s in choose_styles(label, inst, clusters, 12345, "a")[0]}
    assert got[7].center == other[7].center  # its own seed: the draw --seed 12345 makes


def _styles(path: Path, samples) -> str:
    path.write_text(json.dumps({"schema": "p2phd.styles/1", "samples": samples}))
    return str(path)


def test_render_styles_file_is_checked(work, tmp_path, capsys) -> None:
    base = ["--run", str(work["run"]), str(work["data"]), "--clusters", str(work["clusters"])]
    name = NAMES[0]
    cases = [
        (str(tmp_path / "missing.json"), "cannot read"),
        (_styles(tmp_path / "a.json", {"nobody": {}}), "sample 'nobody' is not in the dataset"),
        (_styles(tmp_path / "b.json", {name: {"999": {"cluster": 0}}}), "no such instance id"),
        (
            _styles(tmp_path / "c.json", {name: {"26000": {"cluster": 3}}}),
            "has clusters 0..2, got 3",
        ),
        (_styles(tmp_path / "d.json", {name: {"26000": {"class": 24, "seed": 1}}}), "not class 24"),
        (_styles(tmp_path / "e.json", {name: {"26000": {"cluster": 1, "seed": 1}}}), "exactly one"),
        (_styles(tmp_path / "f.json", {name: {"car": {"cluster": 1}}}), "not an instance id"),
        (_styles(tmp_path / "g.json", {name: {"26000": {"seed": -1}}}), "non-negative"),
    ]
    (tmp_path / "h.json").write_text("{not json")
    cases.append((str(tmp_path / "h.json"), "damaged"))
    for path, match in cases:
        out = tmp_path / "never"
        assert run_verb(render.main, [*base, "--styles", path, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert path in err and match in err and len(err.splitlines()) == 1, err
        assert not out.exists()


# -- the HTTP API (Flask's test client) ----------------------------------------------------------


def _ok(r, status: int = 200) -> dict:
    assert r.status_code == status, r.get_data(as_text=True)
    return r.get_json()


def _error(r, status: int, match: str) -> None:
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.mimetype == "application/json"  # never an HTML error or traceback page
    msg = r.get_json()["error"]
    assert "\n" not in msg and "Traceback" not in msg and re.search(match, msg), msg


def test_api_load_edit_render_save_and_batch_rerender(app, client, work) -> None:
    info = _ok(client.get("/api/info"))
    assert info["samples"] == NAMES and info["mode"] == "clusters" and info["label_nc"] == 35
    assert info["classes"][CAR] | {"colour": 0} == {
        "id": CAR,
        "name": "car",
        "colour": 0,
        "thing": True,
        "clusters": 3,
    }
    page = client.get("/")
    assert page.status_code == 200 and b"editor.js" in page.data
    assert client.get("/static/editor.js").status_code == 200

    state = _ok(client.post("/api/documents", json={"sample": 0}), 201)
    doc = f"/api/documents/{state['id']}"
    label, inst = scene(0)
    maps = client.get(f"{doc}/maps").data
    assert (
        maps[: 256 * 128] == label.tobytes() and maps[256 * 128 :] == inst.astype("<i4").tobytes()
    )
    cars = {o["id"]: o for o in state["objects"] if o["class"] == CAR}
    assert set(cars) == {26000, 26001} and cars[26000]["style"]["chosen_by"] == "seed"

    before = np.asarray(Image.open(io.BytesIO(client.get(f"{doc}/full.png").data)))
    op = {"op": "brush", "class": SIDEWALK, "radius": 4, "points": [[200, 115], [240, 115]]}
    state = _ok(client.post(f"{doc}/edits", json=op))
    k = (cars[26000]["style"]["center"] + 1) % 3
    state = _ok(client.post(f"{doc}/edits", json={"op": "style", "object": 26000, "cluster": k}))
    assert state["version"] == 2 and state["can_undo"]
    car = next(o for o in state["objects"] if o["id"] == 26000)
    assert car["style"] == {
        "class": CAR,
        "center": k,
        "chosen_by": "object",
        "key": 26000,
        "user": ["cluster", k],
    }
    preview = client.get(f"{doc}/preview.png")
    assert preview.headers["X-Version"] == "2"
    assert Image.open(io.BytesIO(preview.data)).size == (128, 64)  # --preview_size 128
    full = np.asarray(Image.open(io.BytesIO(client.get(f"{doc}/full.png").data)))
    assert full.shape == (128, 256, 3) and (full != before).any()
    sw = client.get(f"/api/swatches/{CAR}/{k}.png")
    assert sw.status_code == 200 and Image.open(io.BytesIO(sw.data)).size == (64, 64)

    saved = _ok(client.post(f"{doc}/save"))
    out = Path(saved["folder"])
    name = NAMES[0]
    assert saved["files"] == [
        f"test_label/{name}_gtFine_labelIds.png",
        f"test_inst/{name}_gtFine_instanceIds.png",
        f"synthesized/{name}_synthesized.png",
        "styles.json",
    ]
    png = out / f"synthesized/{name}_synthesized.png"
    assert np.array_equal(np.asarray(Image.open(png)), full)
    styles = json.loads((out / "styles.json").read_text())["samples"][name]
    assert styles["26000"] == {"class": CAR, "cluster": k} and styles["26001"] == {
        "class": CAR,
        "seed": 0,
    }
    # the saved files through bin/prepare + bin/render --styles: the same PNG, byte for byte
    man = out / "edited-test.h5"
    args = [
        "--dataroot",
        str(out),
        "--phase",
        "test",
        "--load_size",
        "0",
        "--jobs",
        "1",
        "--out",
        str(man),
    ]
    assert run_verb(prepare.main, args) == 0
    # the session renders G.ckpt in MindSpore (Model's default engine): so does this render
    args = ["--run", str(work["run"]), str(man), "--clusters", str(work["clusters"])]
    args += ["--engine", "mindspore"]
    assert (
        run_verb(
            render.main, [*args, "--styles", str(out / "styles.json"), "--out", str(out / "r")]
        )
        == 0
    )
    assert (out / "r" / png.name).read_bytes() == png.read_bytes()
    # the styles file is recorded: hash in the settings and the manifest, choices per row
    from p2phd.core.manifest import sha256_file
    from p2phd.rendering.page import read_manifest

    digest = sha256_file(out / "styles.json")
    assert json.loads((out / "r" / "render-settings.json").read_text())["styles_sha256"] == digest
    m = read_manifest(out / "r" / "render.h5")
    assert m["attrs"]["styles_sha256"] == digest
    assert m["attrs"]["styles"] == str((out / "styles.json").resolve())
    assert [26000, CAR, k] in json.loads(m["rows"][0]["style"][0])


def _upload(client, label: bytes, inst: bytes | None = None, name: str = "up_load"):
    data = {"label": (io.BytesIO(label), "x.png"), "name": name}
    if inst is not None:
        data["inst"] = (io.BytesIO(inst), "i.png")
    return client.post("/api/uploads", data=data, content_type="multipart/form-data")


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_bad_requests_get_one_line_4xx(client) -> None:
    doc = f"/api/documents/{_ok(client.post('/api/documents', json={'sample': 1}), 201)['id']}"
    _error(
        client.post(f"{doc}/edits", data="{not json", content_type="application/json"),
        400,
        "must be JSON",
    )
    _error(client.post(f"{doc}/edits", json={"op": "explode"}), 400, "unknown op")
    _error(client.post("/api/documents", json={"sample": 2}), 400, r"row number 0\.\.1")
    _error(client.post("/api/documents", json={"sample": "../../etc/passwd"}), 400, "row number")
    # unknown and path-like ids: never a file, always a 404 naming nothing on disk
    for path in (
        "/api/documents/0123456789abcdef/maps",
        "/api/documents/..%2F..%2Foptions.json/maps",
        "/api/documents/../../run/G.ckpt",
        "/static/../../core/runs.py",
        "/static/%2e%2e/server.py",
        f"{doc}/../../../G.ckpt",
        f"{doc}/secret.png",
    ):
        _error(client.get(path), 404, "Not Found")
    _error(client.get("/api/swatches/24/0.png"), 400, "class 24 has 0 clusters")
    _error(
        client.post(f"{doc}/edits", data=b"x" * (2**20 + 1), content_type="application/json"),
        413,
        "Too Large",
    )
    # uploads: a decompression bomb, a non-PNG, out-of-range labels, a mismatched instance map,
    # a path as name; the server answers normally afterwards
    _error(_upload(client, png_header(30_000, 30_000)), 413, "over .*limit")
    _error(
        _upload(client, png_header(600, 600)),
        413,
        "600x600 = 360,000 pixels is over the limit of 65,536",
    )
    _error(_upload(client, b"GIF89a not a png"), 400, "not an image")
    jpeg = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(jpeg, format="JPEG")
    _error(_upload(client, jpeg.getvalue()), 400, "upload a PNG")
    _error(_upload(client, _png(np.full((8, 8), 40, np.uint8))), 400, r"outside 0\.\.34")
    label = np.full((16, 32), ROAD, np.uint8)
    _error(
        _upload(client, _png(label), _png(np.zeros((8, 8), np.uint16))), 400, "instance map: 8x8"
    )
    _error(_upload(client, _png(label), name="../evil"), 400, "no path")
    _error(_upload(client, _png(label), name="a_000001_000002_x"), 400, "read it back as")
    state = _ok(_upload(client, _png(label), _png(label.astype(np.uint16))), 201)
    assert (state["name"], state["width"], state["height"]) == ("up_load", 32, 16)
    assert _ok(client.get(f"{doc}"))["version"] == 0


def test_save_refuses_a_foreign_styles_file_and_keeps_other_samples(app, client) -> None:
    out = app.ws.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "styles.json").write_text('{"schema": "something/1"}')
    doc = f"/api/documents/{_ok(client.post('/api/documents', json={'sample': 1}), 201)['id']}"
    _error(client.post(f"{doc}/save"), 400, "not a p2phd.styles/1 file")
    (out / "styles.json").write_text(
        json.dumps({"schema": "p2phd.styles/1", "samples": {"other": {}}})
    )
    _ok(client.post(f"{doc}/save"))
    assert set(json.loads((out / "styles.json").read_text())["samples"]) == {"other", NAMES[1]}


def test_document_state_snapshot_is_not_changed_by_later_edits() -> None:
    d = _doc()
    s, v = d.snapshot()
    d.apply({"op": "fill", "class": SIDEWALK, "x": 5, "y": 120, "object": "stuff"})
    assert isinstance(s, State) and v == 0 and (s.label == scene(0)[0]).all()


def test_a_run_without_features_edits_saves_and_rerenders(work, tmp_path) -> None:
    """Labels-only run (no clusters): no styles, no styles.json; prepare + render give the PNG."""
    from edit_util import ARCH

    from p2phd.editing.model import Model, open_run
    from p2phd.editing.workspace import Workspace

    arch = {k: v for k, v in ARCH.items() if k not in ("instance_feat", "nef", "n_downsample_E")}
    run = make_run(tmp_path / "plain", arch=arch)
    with pytest.raises(UsageError, match="does not use features"):
        open_run(str(run), str(work["clusters"]), 0)
    ws = Workspace(Model(open_run(str(run), "", 0), 128), tmp_path / "out", Dataset(work["data"]))
    doc = ws.open_sample(0)
    with pytest.raises(EditError, match="no feature styles"):
        doc.apply({"op": "style", "object": 26000, "cluster": 0})
    doc.apply({"op": "delete", "object": 26001})
    assert all(o["style"] is None for o in ws.state(doc)["objects"])
    saved = ws.save(doc)
    assert "styles.json" not in saved["files"] and "--styles" not in saved["commands"][1]
    out = Path(saved["folder"])
    man = out / "edited-test.h5"
    args = ["--dataroot", str(out), "--phase", "test", "--load_size", "0", "--jobs", "1"]
    assert run_verb(prepare.main, [*args, "--out", str(man)]) == 0
    args = ["--run", str(run), str(man), "--engine", "mindspore", "--out", str(out / "r")]
    assert run_verb(render.main, args) == 0  # the session's engine: MindSpore (Model's default)
    png = f"{NAMES[0]}_synthesized.png"
    assert (out / "r" / png).read_bytes() == (out / "synthesized" / png).read_bytes()


# -- an ONNX-backed session (the run's export: onnxruntime, OpenVINO) -----------------------------


@pytest.fixture(scope="module")
def onnx_file(work) -> Path:
    """The tiny run's export where make export-onnx puts it (<run>/<run-name>.onnx)."""
    from p2phd.deploy import export

    path = work["run"] / f"{work['run'].name}.onnx"
    args = ["--run", str(work["run"]), "--format", "ONNX", "--size", "128x256", "--out", str(path)]
    assert run_verb(export.main, args) == 0
    return path


def _edit(*args: str) -> list[str]:
    """bin/edit ARGS --dry-run in this process: [exit status, stderr]."""
    import contextlib

    from p2phd.editing import edit

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = run_verb(edit.main, [*args, "--dry-run"])
    return [str(code), err.getvalue()]


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_onnx_session_edits_renders_saves_and_the_commands_reproduce(
    work, onnx_file, app, engine, tmp_path
) -> None:
    """Swatch, preview and full size through the export; Save's commands (render --onnx with the
    same engine) write the saved PNG byte for byte."""
    import shlex

    from p2phd.editing import engines
    from p2phd.editing.model import Model, open_run
    from p2phd.editing.options import EditOptions
    from p2phd.editing.server import create_app
    from p2phd.editing.workspace import Workspace

    info = open_run(str(work["run"]), str(work["clusters"]), 0)
    info.engine = engines.resolve(EditOptions(run=str(work["run"]), engine=engine), info)
    assert info.engine.onnx == onnx_file and info.engine.name == engine
    ws = Workspace(Model(info, 128), tmp_path / "out", Dataset(work["data"]), 256 * 256)
    client = create_app(ws, max_body=2**20).test_client()
    assert _ok(client.get("/api/info"))["engine"] == engine
    state = _ok(client.post("/api/documents", json={"sample": 0}), 201)
    doc = f"/api/documents/{state['id']}"
    op = {"op": "brush", "class": SIDEWALK, "radius": 4, "points": [[200, 115], [240, 115]]}
    _ok(client.post(f"{doc}/edits", json=op))
    _ok(client.post(f"{doc}/edits", json={"op": "style", "object": 26000, "cluster": 2}))
    preview = Image.open(io.BytesIO(client.get(f"{doc}/preview.png").data))
    assert preview.size == (128, 64)
    swatch = Image.open(io.BytesIO(client.get(f"/api/swatches/{CAR}/2.png").data))
    assert swatch.size == (64, 64)
    assert type(ws.model._generator).__name__ == "OnnxGenerator"
    full = np.asarray(Image.open(io.BytesIO(client.get(f"{doc}/full.png").data)))
    # the checkpoint in MindSpore on the same state: engines sum convolutions in their own order,
    # so a pixel moves by one level at most, where G's output sits on a rounding boundary
    s, _ = ws.get(state["id"]).snapshot()
    assert np.abs(full.astype(int) - app.ws.model.full(NAMES[0], s)).max() <= 1
    saved = _ok(client.post(f"{doc}/save"))
    out = Path(saved["folder"])
    recorded = json.loads((out / "styles.json").read_text())
    assert recorded["engine"] == engine and recorded["onnx"] == str(onnx_file.resolve())
    assert f"--onnx {onnx_file.resolve()} --engine {engine} " in saved["commands"][1]
    assert recorded["commands"] == saved["commands"] and "--run" not in saved["commands"][1]
    verbs = {"bin/prepare": prepare.main, "bin/render": render.main}
    for command in saved["commands"]:  # exactly as recorded
        verb, *args = shlex.split(command)
        assert run_verb(verbs[verb], args) == 0, command
    png = f"synthesized/{NAMES[0]}_synthesized.png"
    assert (out / "render" / Path(png).name).read_bytes() == (out / png).read_bytes()
    assert np.array_equal(np.asarray(Image.open(out / png)), full)
    # a map the graph cannot take (G size 163x256: not a multiple of the stride 4) is refused
    _error(_upload(client, _png(np.full((16, 25), ROAD, np.uint8))), 400, "not a multiple of 4")


def test_onnx_export_choice_and_refusals(work, onnx_file, tmp_path) -> None:
    """Automatic use, the announcement, and exit 2 naming the file for a stale export (another
    G.ckpt), a file its sidecar does not describe, and contradicting options."""
    import shutil

    run, clusters = str(work["run"]), ["--clusters", str(work["clusters"])]
    code, err = _edit(run, *clusters)
    assert code == "0" and f"{onnx_file} through onnxruntime (found automatically" in err
    code, err = _edit(run, *clusters, "--engine", "mindspore")
    assert code == "0" and "rendering with G.ckpt through MindSpore\n" in err
    other = make_run(tmp_path / "other", seed=6)  # same architecture, other weights
    code, err = _edit(str(other), *clusters)
    assert code == "0" and "(the run's cached export, made once;" in err  # bin/render's choice
    code, err = _edit(str(other), *clusters, "--onnx", "")
    assert code == "0" and "rendering with G.ckpt through MindSpore\n" in err
    stale = other / "other.onnx"
    shutil.copy(onnx_file, stale)
    shutil.copy(f"{onnx_file}.json", f"{stale}.json")
    for args in ([str(other)], [str(other), "--onnx", str(onnx_file)]):
        code, err = _edit(*args, *clusters)
        line = err.strip().splitlines()[-1]
        assert code == "2" and "exported from another G.ckpt" in line and "stale" in line, err
        assert (str(stale) if len(args) == 1 else str(onnx_file)) in line
    changed = tmp_path / "changed.onnx"
    changed.write_bytes(onnx_file.read_bytes()[:-1] + b"\0")  # one byte changed
    shutil.copy(f"{onnx_file}.json", f"{changed}.json")
    for engine in ("onnxruntime", "openvino"):
        code, err = _edit(run, *clusters, "--onnx", str(changed), "--engine", engine)
        assert code == "2" and f"{changed}: its content does not match the sha256" in err
    for args, match in (
        (["--onnx", "", "--engine", "openvino"], "--engine openvino runs an ONNX export"),
        (["--onnx", str(onnx_file), "--engine", "mindspore"], "does not run --onnx"),
        (["--providers", "TensorRT"], "TensorrtExecutionProvider"),
        (["--threads", "-1"], "--threads must be 0 or more"),
    ):
        code, err = _edit(run, *clusters, *args)
        assert code == "2" and match in err.strip().splitlines()[-1], err


def test_onnx_path_imports_no_mindspore(work, onnx_file, tmp_path) -> None:
    """bin/edit's ONNX path, open to save, in a fresh process: MindSpore is never imported."""
    import subprocess
    import sys

    from conftest import REPO

    code = f"""
import sys
from pathlib import Path
from p2phd.data.dataset import Dataset
from p2phd.editing import engines
from p2phd.editing.model import Model, open_run
from p2phd.editing.options import EditOptions
from p2phd.editing.workspace import Workspace
info = open_run({str(work["run"])!r}, {str(work["clusters"])!r}, 0)
info.engine = engines.resolve(EditOptions(run={str(work["run"])!r}), info)
ws = Workspace(Model(info, 128), Path({str(tmp_path)!r}), Dataset({str(work["data"])!r}))
doc = ws.open_sample(0)
ws.render_png(doc, "preview"), ws.swatch_png({CAR}, 1), ws.save(doc)
print(sorted(m for m in sys.modules if m.split(".")[0] == "mindspore"))
"""
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr[-2000:]
    assert (tmp_path / f"synthesized/{NAMES[0]}_synthesized.png").is_file()

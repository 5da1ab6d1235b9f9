"""bin/edit for real: the server as a user starts it, driven by Chromium through Playwright
(Debian's or Playwright's own: tests/browser.py; the browser tests skip without either).

The browser opens the page, paints a stroke of sidewalk over the road, draws a new car, picks
another car and gives it another cluster centre, and saves. The saved image must differ from
the unedited one where the edit was and nowhere further than G's receptive field from it (the
tiny run's G is a plain conv stack: batch norm in inference, see edit_util), and bin/prepare +
bin/render --styles on the saved files must write the same PNG, byte for byte. The same server
then gets what a hostile or clumsy client sends (a decompression bomb, bad JSON, unknown and
path-like ids, an oversized body, concurrent renders; no token, a foreign Host, another origin,
text/plain) and must answer each with a one-line 4xx and keep serving, and a page served from
another local port, in the same browser, tries to open, edit and save through fetch() and a
form: nothing may change. SIGINT stops it with exit 0. A screenshot of the page stays in the
test's temporary folder (edit-page.png).
"""

import io
import json
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from browser import MISSING, find_chromium
from conftest import REPO
from edit_util import (
    ARCH,
    CAR,
    NAMES,
    SIDEWALK,
    changed_input,
    make_clusters,
    make_run,
    near,
    png_header,
    receptive_radius,
    scene,
    write_split,
)
from PIL import Image

pytestmark = pytest.mark.slow  # a real browser against bin/edit servers: not in make test-fast

BIN = REPO / "bin"
# Without the background-networking flags chromium tries to reach Google's services, and on a
# closed network those attempts are refused and slow the start down.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MAX_BODY = 1_000_000


def _bin(verb: str, *args) -> str:
    res = subprocess.run(
        [sys.executable, str(BIN / verb), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.strip()


def start_server(*args, log: Path) -> tuple[subprocess.Popen, str]:
    """bin/edit ARGS --port 0 as a user runs it; returns the process and the URL it printed."""
    proc = subprocess.Popen(
        [sys.executable, str(BIN / "edit"), *map(str, args), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout=120):
        proc.kill()
        pytest.fail(f"bin/edit printed no URL in 120 s: {log.read_text()[-2000:]}")
    url = proc.stdout.readline().strip()
    assert url.startswith("http://"), (url, log.read_text()[-2000:])
    return proc, url


def split(url: str) -> tuple[str, str]:
    """(base URL ending in '/', token) of the URL bin/edit printed."""
    parts = urllib.parse.urlsplit(url)
    token = urllib.parse.parse_qs(parts.query)["token"][0]
    return f"{parts.scheme}://{parts.netloc}/", token


def stop_server(proc: subprocess.Popen, sig: int, log: Path) -> None:
    proc.send_signal(sig)
    assert proc.wait(timeout=60) == 0, log.read_text()[-2000:]
    assert proc.stdout.read() == ""  # the URL was the only line on stdout
    assert log.read_text().rstrip().endswith("edit: stopped")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict[str, Path]:
    w = tmp_path_factory.mktemp("edit-browser")
    write_split(w / "data")
    data = _bin(
        "prepare",
        "--dataroot",
        w / "data",
        "--phase",
        "test",
        "--load_size",
        "0",
        "--jobs",
        "1",
        "--out",
        w / "test.h5",
    )
    return {
        "root": w,
        "data": Path(data),
        "run": make_run(w / "run"),
        "clusters": make_clusters(w / "clusters.h5"),
        "out": w / "saved",
    }


@pytest.fixture(scope="module")
def server(work):
    log = work["root"] / "edit.log"
    proc, url = start_server(
        work["run"],
        "--clusters", work["clusters"],
        "--data", work["data"],
        "--out", work["out"],
        "--preview_size", "128",
        "--max_upload_bytes", MAX_BODY,
        "--verbose",  # Werkzeug logs every request: the refused ones are seen arriving
        log=log,
    )  # fmt: skip
    base, token = split(url)
    yield SimpleNamespace(url=url, base=base, token=token, log=log)
    stop_server(proc, signal.SIGINT, log)


def fetch(
    url: str,
    data: bytes | None = None,
    ctype: str = "application/json",
    token: str = "",
    headers: dict | None = None,
    method: str | None = None,
) -> tuple[int, bytes, str]:
    """A request as a script sends it (the token in the Authorization header)."""
    h = {"Content-Type": ctype} if data is not None else {}
    h |= {"Authorization": f"token {token}"} if token else {}
    req = urllib.request.Request(url, data=data, headers=h | (headers or {}), method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read(), r.headers.get_content_type()
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get_content_type()


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip(MISSING)
    return path


def browser(pw, tmp_path: Path, chromium: str):
    """That Chromium, headless, with a fresh profile in the test's folder."""
    return pw.chromium.launch_persistent_context(
        tempfile.mkdtemp(dir=tmp_path, prefix="chromium-profile-"),
        executable_path=chromium,
        headless=True,
        args=CHROMIUM_ARGS,
        viewport={"width": 1300, "height": 720},
    )


def test_browser_paint_restyle_save_and_batch_rerender(chromium, server, work, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        ctx = browser(pw, tmp_path, chromium)
        try:
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url)
            # the page opens the split's first map and shows its preview (version 0)
            page.wait_for_selector("#synth[data-version='0']", timeout=60_000)
            # the token became a cookie the page's script cannot read, and left the address bar
            assert page.url == server.base and "token" not in page.evaluate("document.cookie")
            (cookie,) = ctx.cookies(server.base)
            assert (cookie["value"], cookie["httpOnly"], cookie["sameSite"]) == (
                server.token,
                True,
                "Strict",
            )
            doc_id = page.evaluate("ui.doc.id")
            code, before_png, _ = fetch(
                f"{server.base}api/documents/{doc_id}/full.png", token=server.token
            )
            assert code == 200

            def at(x: float, y: float) -> tuple[float, float]:
                """Page coordinates of map pixel (x, y), measured now (the layout may move)."""
                box = page.locator("#label").bounding_box()
                scale = box["width"] / 256
                return box["x"] + (x + 0.5) * scale, box["y"] + (y + 0.5) * scale

            # a stroke of sidewalk across the road (brush, radius 6)
            page.click(f"#classes button[data-cls='{SIDEWALK}']")
            page.mouse.move(*at(200, 115))
            page.mouse.down()
            for x in range(200, 241, 4):
                page.mouse.move(*at(x, 115))
            page.mouse.up()
            page.wait_for_selector("#synth[data-version='1']", timeout=60_000)
            # a new car on the road: car is an object class, so the stroke is a new object
            page.click(f"#classes button[data-cls='{CAR}']")
            assert page.is_checked("#new-object")
            page.mouse.move(*at(100, 116))
            page.mouse.down()
            page.mouse.move(*at(116, 116))
            page.mouse.up()
            page.wait_for_selector("#synth[data-version='2']", timeout=60_000)
            assert page.evaluate("ui.inst[116 * ui.W + 108]") == CAR * 1000 + 2  # cars 0, 1 exist
            # select the left car and give it another cluster centre (a swatch rendered by G)
            page.check("input[name=tool][value=select]")
            page.mouse.click(*at(40, 95))
            page.wait_for_selector("#object:not([hidden])")
            assert "object 26000: car" in page.inner_text("#object-title")
            seeded = page.evaluate("ui.doc.objects.find((o) => o.id === 26000).style.center")
            k = (seeded + 1) % 3
            page.wait_for_selector(f"#swatches button[data-cluster='{k}'] img")
            page.click(f"#swatches button[data-cluster='{k}']")
            page.wait_for_selector("#synth[data-version='3']", timeout=60_000)
            assert page.locator(f"#swatches button.on[data-cluster='{k}']").count() == 1
            page.click("#save")
            page.wait_for_function("document.body.dataset.saved === '3'", timeout=60_000)
            assert "reproduce with" in page.inner_text("#saved")
            page.screenshot(path=str(tmp_path / "edit-page.png"))
            other_controls(page, at, tmp_path, server)
            assert not errors, errors
        finally:
            ctx.close()
    assert (tmp_path / "edit-page.png").stat().st_size > 10_000

    out, name = work["out"], NAMES[0]
    label1 = np.asarray(Image.open(out / f"test_label/{name}_gtFine_labelIds.png"))
    inst1 = np.asarray(Image.open(out / f"test_inst/{name}_gtFine_instanceIds.png")).astype(
        np.int32
    )
    label0, inst0 = scene(0)
    painted = label1 != label0
    stroke, new_car = painted & (label1 == SIDEWALK), painted & (label1 == CAR)
    assert stroke.sum() > 400 and new_car.sum() > 100 and not (painted & ~stroke & ~new_car).any()
    assert (inst1[new_car] == CAR * 1000 + 2).all()
    car = inst0 == 26000
    saved_styles = json.loads((out / "styles.json").read_text())["samples"][name]
    assert saved_styles["26000"] == {"class": CAR, "cluster": k}
    assert saved_styles["26002"] == {"class": CAR, "seed": 0}  # the new car: the session's draw

    # where the synthesized image changed: inside the stroke and the cars, never beyond G's reach
    saved_png = out / f"synthesized/{name}_synthesized.png"
    before = np.asarray(Image.open(io.BytesIO(before_png)))
    after = np.asarray(Image.open(saved_png))
    diff = (before != after).any(-1)
    reach = near(changed_input(label0, inst0, label1, inst1) | car, receptive_radius(ARCH))
    assert diff[stroke].mean() > 0.5 and diff[new_car].mean() > 0.5 and diff[car].mean() > 0.5
    assert (~reach).mean() > 0.4  # "far" is most of the picture: the check below means something
    assert not diff[~reach].any(), f"{diff[~reach].sum()} pixels changed far from the edits"

    # the saved files through the batch verbs: the same PNG, byte for byte
    man = _bin(
        "prepare",
        "--dataroot",
        out,
        "--phase",
        "test",
        "--load_size",
        "0",
        "--jobs",
        "1",
        "--out",
        out / "edited-test.h5",
    )
    rendered = _bin(
        "render", "--run", work["run"], man, "--clusters", work["clusters"],
        "--styles", out / "styles.json", "--out", out / "render",
    )  # fmt: skip
    assert (Path(rendered) / saved_png.name).read_bytes() == saved_png.read_bytes()


def test_browser_on_the_runs_onnx_export(chromium, work, tmp_path) -> None:
    """A run with an export where make export-onnx writes it: bin/edit finds it, says so,
    renders through auto's ONNX engine for this CPU without MindSpore in the process, and the
    commands that Save records (bin/render --onnx ... --engine E) reproduce the saved PNG byte
    for byte."""
    import shlex
    import shutil

    from playwright.sync_api import sync_playwright

    from p2phd.core import cpu
    from p2phd.core.cli import run_verb
    from p2phd.deploy import engines, export

    engine = engines.RULE[cpu.isa_class()]  # bin/render's and bin/edit's auto on this CPU

    run = tmp_path / "onnxrun"
    shutil.copytree(work["run"], run)
    model = run / "onnxrun.onnx"
    args = ["--run", str(run), "--format", "ONNX", "--size", "128x256", "--out", str(model)]
    assert run_verb(export.main, args) == 0
    log, out = tmp_path / "edit.log", tmp_path / "saved"
    proc, url = start_server(
        run, "--clusters", work["clusters"], "--data", work["data"], "--out", out,
        "--preview_size", "128", log=log,
    )  # fmt: skip
    try:
        assert f"rendering with the ONNX export {model} through {engine}" in log.read_text()
        with sync_playwright() as pw:
            ctx = browser(pw, tmp_path, chromium)
            try:
                page = ctx.new_page()
                page.goto(url)
                page.wait_for_selector("#synth[data-version='0']", timeout=60_000)
                assert engine in page.inner_text("#run")
                box = page.locator("#label").bounding_box()
                scale = box["width"] / 256
                page.click(f"#classes button[data-cls='{SIDEWALK}']")
                page.mouse.move(box["x"] + 200 * scale, box["y"] + 115 * scale)
                page.mouse.down()
                page.mouse.move(box["x"] + 240 * scale, box["y"] + 115 * scale, steps=5)
                page.mouse.up()
                page.wait_for_selector("#synth[data-version='1']", timeout=60_000)
                page.click("#save")
                page.wait_for_function("document.body.dataset.saved === '1'", timeout=60_000)
            finally:
                ctx.close()
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert engine in maps and "mindspore" not in maps.lower()
    finally:
        stop_server(proc, signal.SIGINT, log)
    commands = json.loads((out / "styles.json").read_text())["commands"]
    assert f"bin/render --onnx {model} --engine {engine} " in commands[1]
    for command in commands:
        res = subprocess.run(
            [sys.executable, *shlex.split(command)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert res.returncode == 0, res.stderr[-2000:]
    png = f"{NAMES[0]}_synthesized.png"
    assert (out / "render" / png).read_bytes() == (out / "synthesized" / png).read_bytes()
    label = np.asarray(Image.open(out / f"test_label/{NAMES[0]}_gtFine_labelIds.png"))
    assert (label == SIDEWALK).sum() > (scene(0)[0] == SIDEWALK).sum()  # the stroke was saved


def other_controls(page, at, tmp_path: Path, server) -> None:
    """After the save: undo/redo (button and key), fill, class change, delete, full size, upload
    (which asks before discarding the unsaved edits, then closes that document); a document
    closed behind the page's back: the page says so."""

    def version(v: int) -> None:
        page.wait_for_selector(f"#synth[data-version='{v}']", timeout=60_000)

    page.click("#undo")
    version(4)
    assert page.evaluate("ui.doc.objects.find((o) => o.id === 26000).style.user") is None
    page.keyboard.press("Control+y")
    version(5)
    assert page.evaluate("ui.doc.objects.find((o) => o.id === 26000).style.user[0]") == "cluster"
    page.check("input[name=tool][value=fill]")
    page.click("#classes button[data-cls='21']")  # vegetation over the sky
    page.mouse.click(*at(10, 10))
    version(6)
    assert page.evaluate("ui.label[10 * ui.W + 10]") == 21
    page.check("input[name=tool][value=select]")
    page.mouse.click(*at(113, 70))  # the person
    page.select_option("#object-class", "25")  # becomes a rider: a new object id 25000
    version(7)
    assert page.evaluate("ui.inst[70 * ui.W + 113]") == 25000
    page.mouse.click(*at(113, 70))
    page.click("#delete")
    version(8)
    assert page.evaluate("ui.label[70 * ui.W + 113]") != 25
    page.click("#full")
    page.wait_for_selector("#synth[data-kind='full']", timeout=60_000)
    assert page.evaluate("[$('synth').naturalWidth, $('synth').naturalHeight]") == [256, 128]
    label = np.full((64, 128), 7, np.uint8)
    label[40:50, 20:60] = CAR
    Image.fromarray(label).save(tmp_path / "mine.png")
    inst = label.astype(np.uint16)
    inst[label == CAR] = CAR * 1000
    Image.fromarray(inst).save(tmp_path / "mine_inst.png")
    page.set_input_files("#upload-label", str(tmp_path / "mine.png"))
    page.set_input_files("#upload-inst", str(tmp_path / "mine_inst.png"))
    assert page.is_visible("#unsaved")
    old = page.evaluate("ui.doc.id")
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.accept()))
    page.click("#upload button[type=submit]")
    page.wait_for_function("ui.doc && ui.doc.name === 'mine' && $('synth').dataset.version === '0'")
    assert page.evaluate("ui.doc.objects.map((o) => o.id)") == [7, 26000]
    assert asked == [f"Discard the unsaved edits of {NAMES[0]}?"] and not page.is_visible(
        "#unsaved"
    )
    api = f"{server.base}api/documents"
    listed = json.loads(fetch(api, token=server.token)[1])
    page.wait_for_function(f"fetch('/api/documents/{old}').then((r) => r.status === 404)")
    assert page.evaluate("ui.doc.id") in [d["id"] for d in listed]
    # the document closed by a script: the next edit tells the user it is gone
    new = page.evaluate("ui.doc.id")
    assert fetch(f"{api}/{new}", b"{}", token=server.token, method="DELETE")[0] == 200
    page.check("input[name=tool][value=fill]")
    page.mouse.click(*at(10, 20))  # at() counts in a 256-wide map: (5, 10) of this one
    page.wait_for_selector("#banner:not([hidden])")
    assert "mine is no longer on the server" in page.inner_text("#banner")
    assert page.evaluate("document.body.dataset.gone") == "document"


def _json_error(result: tuple[int, bytes, str], status: int, match: str) -> None:
    code, body, ctype = result
    assert code == status and ctype == "application/json", (code, body[:300])
    msg = json.loads(body)["error"]
    assert match in msg and "\n" not in msg and "Traceback" not in msg, msg


def _multipart(fields: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    b = "p2phdboundary"
    parts = [
        f'--{b}\r\nContent-Disposition: form-data; name="{k}"; filename="{fn}"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for k, (fn, data) in fields.items()
    ]
    return b"".join(parts) + f"--{b}--\r\n".encode(), f"multipart/form-data; boundary={b}"


def test_real_server_refuses_bad_requests_and_serialises_renders(server) -> None:
    api, t = f"{server.base}api", server.token
    body, ctype = _multipart({"label": ("bomb.png", png_header(40_000, 40_000))})
    _json_error(fetch(f"{api}/uploads", body, ctype, t), 413, "limit")
    body, ctype = _multipart({"label": ("big.png", b"\x89PNG" + b"\0" * MAX_BODY)})
    _json_error(fetch(f"{api}/uploads", body, ctype, t), 413, "Too Large")
    _json_error(fetch(f"{api}/documents", b"{nope", token=t), 400, "must be JSON")
    _json_error(fetch(f"{api}/documents", b'{"sample": 7}', token=t), 400, "row number 0..1")
    _json_error(fetch(f"{api}/documents/0123456789abcdef/maps", token=t), 404, "no document")
    _json_error(fetch(f"{api}/documents/..%2F..%2Frun%2FG.ckpt/maps", token=t), 404, "Not Found")
    _json_error(fetch(f"{server.base}static/..%2F..%2Fcore%2Fruns.py", token=t), 404, "Not Found")
    # who is answered: the token, this server's Host, its own Origin, JSON
    listed = fetch(f"{api}/documents", token=t)[1]
    for url in (server.base, f"{api}/info", f"{server.base}static/editor.js"):
        _json_error(fetch(url), 401, "no token")
    _json_error(fetch(f"{api}/info", token="x" * 43), 401, "a wrong token")
    _json_error(fetch(f"{api}/documents", b'{"sample": 0}'), 401, "no token")
    for host in ("evil.example", f"evil.example:{server.base.rsplit(':', 1)[1][:-1]}"):
        _json_error(fetch(f"{api}/info", token=t, headers={"Host": host}), 403, "not this server")
    for ctype in ("application/json", "text/plain"):
        cross = {"Origin": "http://127.0.0.1:1"}
        got = fetch(f"{api}/documents", b'{"sample": 0}', ctype, t, cross)
        _json_error(got, 403, "is not this server")
    _json_error(
        fetch(f"{api}/documents", b'{"sample": 0}', "text/plain", t), 415, "application/json"
    )
    assert fetch(f"{api}/documents", token=t)[1] == listed  # nothing opened
    code, page, _ = fetch(server.url)
    assert code == 200 and b"editor.js" in page
    assert fetch(f"{api}/info", token=t)[0] == 200  # still serving

    # six documents rendered at full size at once: every answer is the one render
    ids = [
        json.loads(fetch(f"{api}/documents", b'{"sample": 1}', token=t)[1])["id"] for _ in range(6)
    ]
    results: dict[str, tuple[int, bytes, str]] = {}

    def render(doc_id: str) -> None:
        results[doc_id] = fetch(f"{api}/documents/{doc_id}/full.png", token=t)

    threads = [threading.Thread(target=render, args=(i,)) for i in ids]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert len(results) == 6 and all(r[0] == 200 and r[2] == "image/png" for r in results.values())
    assert len({r[1] for r in results.values()}) == 1


ATTACK = """<!DOCTYPE html><meta charset="utf-8"><title>another page</title><body>
<form id="f1" method="POST" enctype="text/plain" target="sink1" action="@EDITOR@api/documents">
<input name='{"sample": 0, "x": "' value='"}'></form>
<form id="f2" method="POST" target="sink2" action="@EDITOR@api/documents/@DOC@/save">
<input name="x" value="1"></form>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<script>
const E = "@EDITOR@", doc = "@DOC@", inc = { credentials: "include" };
const png = Uint8Array.from(atob("@PNG@"), (c) => c.charCodeAt(0));
const upload = new FormData();
upload.append("label", new Blob([png], { type: "image/png" }), "x.png");
const fill = JSON.stringify({ op: "fill", class: 21, x: 5, y: 120, object: "stuff" });
const tries = [
  ["api/documents", { method: "POST", mode: "no-cors", body: '{"sample": 0}',
    headers: { "Content-Type": "text/plain" } }],
  ["api/documents", { method: "POST", body: '{"sample": 0}',
    headers: { "Content-Type": "application/json" } }],
  ["api/uploads", { method: "POST", mode: "no-cors", body: upload }],
  [`api/documents/${doc}/edits`, { method: "POST", mode: "no-cors", body: fill }],
  [`api/documents/${doc}/save`, { method: "POST", mode: "no-cors" }],
  [`api/documents/${doc}`, { method: "DELETE" }],
];
(async () => {
  const out = [];
  for (const [path, opts] of tries) {
    try {
      const r = await fetch(E + path, { ...inc, ...opts });
      out.push(`${r.type} ${r.status}`);
    } catch (e) {
      out.push(`refused: ${e.message}`);
    }
  }
  document.getElementById("f1").submit();
  document.getElementById("f2").submit();
  document.body.dataset.done = JSON.stringify(out);
})();
</script>"""


def _plain(log: str) -> str:
    """Werkzeug's request lines without their terminal colours."""
    return re.sub(r"\x1b\[[0-9;]*m", "", log)


def test_a_page_on_another_local_port_cannot_open_edit_or_save(
    chromium, server, work, tmp_path
) -> None:
    """The browser holds the editor's cookie (its page is open in another tab); a page of
    another local port (same site, another origin) posts with fetch() and forms: every
    request reaches the server and is refused; no document opened, edited, closed or saved."""
    import base64
    import functools
    import http.server
    import time

    from playwright.sync_api import sync_playwright

    label = np.full((16, 32), 7, np.uint8)
    buf = io.BytesIO()
    Image.fromarray(label).save(buf, format="PNG")
    site = tmp_path / "site"
    site.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    api = f"{server.base}api/documents"

    def workspace() -> tuple[list, list]:
        files = sorted(str(p.relative_to(work["out"])) for p in work["out"].rglob("*"))
        return json.loads(fetch(api, token=server.token)[1]), files

    try:
        with sync_playwright() as pw:
            ctx = browser(pw, tmp_path, chromium)
            try:
                editor = ctx.new_page()
                editor.goto(server.url)
                editor.wait_for_selector("#synth[data-version='0']", timeout=60_000)
                doc = editor.evaluate("ui.doc.id")
                before = workspace()
                log_start = len(server.log.read_text())
                attack = ATTACK.replace("@EDITOR@", server.base).replace("@DOC@", doc)
                (site / "index.html").write_text(
                    attack.replace("@PNG@", base64.b64encode(buf.getvalue()).decode())
                )
                page = ctx.new_page()
                seen: list[str] = []
                page.on("console", lambda m: seen.append(m.text))
                page.on("pageerror", lambda e: seen.append(str(e)))
                page.goto(f"http://127.0.0.1:{other.server_port}/index.html")
                page.wait_for_function("document.body.dataset.done", timeout=20_000)
                outcomes = json.loads(page.evaluate("document.body.dataset.done"))
                # both forms' posts reach the server (their frames show the refusal)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    lines = _plain(server.log.read_text()[log_start:])
                    if lines.count('"POST /api/documents HTTP') >= 2 and "/save HTTP" in lines:
                        break
                    time.sleep(0.2)
                after = workspace()  # before the editor's tab closes (it closes its document)
                lines = _plain(server.log.read_text()[log_start:])
            finally:
                ctx.close()
    finally:
        other.shutdown()
        other.server_close()
    assert after == before, (outcomes, seen)  # nothing opened, edited, closed or saved
    # every attempt reached the server and was refused there (a 4xx; not a browser-side block
    # that a laxer browser might skip): the fetches with a simple body, the uploads, the forms
    requests = [
        line
        for line in lines.splitlines()
        if '"POST /api/' in line or '"DELETE /api/' in line or '"OPTIONS /api/' in line
    ]
    statuses = [line.split('" ', 1)[1].split()[0] for line in requests]
    assert len(requests) >= 6 and all(s in ("401", "403", "415") for s in statuses), requests
    for path in ("/api/uploads", f"/api/documents/{doc}/edits", f"/api/documents/{doc}/save"):
        assert any(f"POST {path} " in line for line in requests), (path, requests)
    assert sum('"POST /api/documents ' in line for line in requests) >= 2, requests


def test_another_host_warns_and_sigterm_stops(work, tmp_path) -> None:
    log = tmp_path / "edit.log"
    # 127.0.0.2 is loopback too: the warning is about the flag, the test stays on this machine
    proc, url = start_server(
        work["run"], "--clusters", work["clusters"], "--host", "127.0.0.2", log=log
    )
    try:
        assert url.startswith("http://127.0.0.2:")
        assert "warning: listening on 127.0.0.2" in log.read_text()
        base, token = split(url)
        code, body, _ = fetch(f"{base}api/info", token=token)
        assert code == 200 and json.loads(body)["samples"] == []  # no --data: uploads only
    finally:
        stop_server(proc, signal.SIGTERM, log)


def test_a_second_server_on_the_same_out_is_refused(server, work) -> None:
    cmd = [sys.executable, str(BIN / "edit"), str(work["run"]), "--clusters", str(work["clusters"])]
    res = subprocess.run(
        [*cmd, "--out", str(work["out"])], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2 and res.stdout == "", res.stderr
    assert "is being written by another process" in res.stderr


@pytest.mark.parametrize(
    "args, match",
    [
        (["/nonexistent/run"], "not a p2phd run folder"),
        (["RUN"], "uses instance features: pass --clusters"),
        (["RUN", "--clusters", "/nonexistent.h5"], "/nonexistent.h5"),
        (["RUN", "--clusters", "CLUSTERS", "--port", "70000"], "--port must be 0..65535"),
    ],
)
def test_bad_command_lines_exit_2(work, args, match) -> None:
    args = [
        str(work["run"]) if a == "RUN" else str(work["clusters"]) if a == "CLUSTERS" else a
        for a in args
    ]
    res = subprocess.run(
        [sys.executable, str(BIN / "edit"), *args], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 2 and res.stdout == "" and match in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1

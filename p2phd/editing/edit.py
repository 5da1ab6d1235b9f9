"""bin/edit: edit label maps in the browser and see the run's generator re-render them.

``bin/edit RUN [--clusters FILE] [--data MANIFEST] [--out DIR] [--port 8765] [--host 127.0.0.1]
[--token TOKEN | --no_token] [--preview_size 256] [--onnx auto|FILE|''] [--engine ...]``

Starts a local web server (Flask on Werkzeug's threaded server) and prints its URL on stdout,
with the start's token (``http://127.0.0.1:8765/?token=...``: p2phd.editing.guard says who is
answered); Ctrl-C (SIGINT) or SIGTERM stops it, exit 0. The page picks a label map of ``--data`` or takes
an uploaded one, paints, fills, changes, deletes, moves and adds objects, chooses each object's
style among its class's cluster centres (feature runs), and saves the maps, the synthesized PNG
and the styles so that ``bin/prepare`` + ``bin/render --styles`` reproduce the PNG
(p2phd.editing.saving). Listening on anything but 127.0.0.1 prints a warning: whoever reaches
the port and has the token can read the run's renders and write into ``--out``.

The run's ONNX export (``<run>/<run-name>.onnx``, ``make export-onnx``) renders when it exists
and was made from the run's G.ckpt (p2phd.editing.engines; announced on stderr): onnxruntime or
OpenVINO, and no MindSpore import or set-up at all; Save's commands then name the same engine.
"""

import os
import signal
import sys
import threading
from pathlib import Path

from p2phd.core import extras, lock, runtime
from p2phd.core.cli import UsageError, check_writable, emit, log, log_dry_run, parse_options
from p2phd.data.dataset import Dataset
from p2phd.editing import engines, guard
from p2phd.editing.model import Model, RunInfo, open_run
from p2phd.editing.options import LOCALHOST, EditOptions


def _open_data(path: str, info: RunInfo) -> Dataset:
    from p2phd.rendering.plan import check_compatible, check_onnx_sizes

    ds = Dataset(path)
    try:
        check_compatible(info.arch, ds, info.run_dir)
        if info.engine.onnx is not None:  # as bin/render --onnx: sizes the graph takes
            check_onnx_sizes(info.engine.onnx, info.arch, ds, info.engine.stride)
    except UsageError:
        ds.close()
        raise
    return ds


def _token(o: EditOptions) -> str:
    """--token, else $P2PHD_EDIT_TOKEN, else a new random one; '' only with --no_token."""
    if o.no_token:
        log(
            "edit: WARNING: --no_token: requests are answered without a token: every program "
            "and user of this machine (and of the network, with --host) can read the run and "
            "write into --out"
        )
        return ""
    given, where = o.token, "--token"
    if not given and os.environ.get(guard.TOKEN_ENV):
        given, where = os.environ[guard.TOKEN_ENV], f"${guard.TOKEN_ENV}"
    if not given:
        return guard.new_token()
    try:
        return guard.check_token(given)
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    o = parse_options(EditOptions, argv, "edit", (__doc__ or "").split("\n")[0])
    extras.require("edit", "bin/edit")
    token = _token(o)
    info = open_run(o.run, o.clusters, o.seed)
    info.engine = engines.resolve(o, info)
    out = check_writable(Path(o.out) if o.out else info.run_dir / "edits", "--out", folder=True)
    ds = _open_data(o.data, info) if o.data else None
    if o.host != LOCALHOST:
        log(
            f"edit: warning: listening on {o.host}, not {LOCALHOST}: anyone who can reach this "
            f"port and has the token can render with {info.run_dir} and write into {out}"
        )
    if o.dry_run:
        log_dry_run(
            o,
            f"would serve {info.run_dir} ({info.mode}, {info.engine.describe()}) on "
            f"{o.host}:{o.port}, saving into {out}",
        )
        return 0
    # One server per --out: two would both rewrite styles.json (p2phd.core.lock, exit 2).
    with lock.hold(out, "bin/edit --out"):
        if info.engine.onnx is None:  # the ONNX engines need no MindSpore (start-up time)
            runtime.setup(o.device_target, o.pynative, o.seed, o.verbose, data_parallel=False)
        return serve(o, info, out, ds, token)


def serve(o: EditOptions, info: RunInfo, out: Path, ds: Dataset | None, token: str) -> int:
    """Load the model, start the server on a thread, print the URL, wait for SIGINT/SIGTERM."""
    import logging

    from werkzeug.serving import make_server

    from p2phd.editing.server import create_app
    from p2phd.editing.workspace import Workspace

    # The weights are loaded before the URL is printed, so a broken checkpoint is an error here.
    model = Model(info, o.preview_size, info.engine.generator(info))
    ws = Workspace(model, out, ds, o.max_upload_pixels)
    gate = guard.Guard(token, o.host)
    app = create_app(ws, gate, o.max_upload_bytes)
    if not o.verbose:  # Werkzeug logs every request on stderr; keep errors only
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
    try:
        server = make_server(o.host, o.port, app, threaded=True)
    except OSError as exc:
        raise UsageError(
            f"--host {o.host} --port {o.port}: cannot listen ({exc.strerror})"
        ) from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, name="edit-server", daemon=True)
    thread.start()
    gate.port = server.server_port
    url = gate.url()
    emit(url)
    log(
        f"edit: {info.run_dir} ({info.mode}) at http://{guard.url_host(o.host)}:{gate.port}/ "
        f"(open the URL printed on stdout: it holds the token); saves go to {out}; Ctrl-C stops"
    )
    try:
        while not stop.wait(0.5) and thread.is_alive():
            pass
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        ws.documents.cleanup()
        if ds is not None:
            ds.close()
    log("edit: stopped")
    return 0


if __name__ == "__main__":
    from p2phd.core.cli import run_verb

    sys.exit(run_verb(main))

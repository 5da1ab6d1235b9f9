"""What "Save" writes: the edited maps in the pix2pixHD layout, the synthesized PNG, the styles.

``<out>/`` (``bin/edit --out``; default ``<run>/edits``)::

    test_label/<name>_gtFine_labelIds.png     uint8 class ids (labelIds)
    test_inst/<name>_gtFine_instanceIds.png   16-bit instance ids (labelId*1000+k for objects)
    synthesized/<name>_synthesized.png        the full-size render of the saved maps
    styles.json                               p2phd.styles/1: per sample, per object, its style

Names that are not Cityscapes' ``<city>_<seq>_<frame>`` are saved as ``test_label/<name>.png``
and ``test_inst/<name>.png`` (bin/prepare pairs other files by their stem). Saving several
maps fills one folder; saving a name again replaces its files and its styles. ``styles.json``
lists every object of a class with clusters: the centre the user chose, else ``{"seed": S}``
with the session's seed, so the file alone decides the styles. Then::

    bin/prepare --dataroot OUT --phase test --load_size 0 --out OUT/edited-test.h5
    bin/render --run RUN OUT/edited-test.h5 [--clusters FILE --styles OUT/styles.json] \
        --out OUT/render

writes ``OUT/render/<name>_synthesized.png`` equal, byte for byte, to the saved one. A session
rendering through an ONNX export names it and its engine instead of ``--run RUN`` (``--onnx FILE
--engine onnxruntime|openvino``): engines sum convolutions in their own order, so a PNG is
reproduced byte for byte by the engine that made it (another differs by a level here and there).
``styles.json`` records the engine (and the export) beside the commands.
"""

import json
import re
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from p2phd.core.cli import write_json
from p2phd.data.sources import sample_name
from p2phd.editing.document import MAX_OBJECT_ID, EditError, State
from p2phd.features.styles import STYLES_SCHEMA

STYLES_FILE = "styles.json"
MANIFEST_NAME = "edited-test.h5"
RENDER_FOLDER = "render"
# A sample name is a file-name stem of ours: letters, digits, '_', '-', '.'; never a path.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def check_name(name: str) -> str:
    """A sample name the page may give an upload; EditError unless it is a plain stem."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise EditError(
            f"name {name!r}: use 1-100 letters, digits, '_', '-' or '.' (no path), "
            "e.g. frankfurt_000000_000576"
        )
    return name


def file_names(name: str) -> tuple[str, str]:
    """(label file, instance file) under which bin/prepare pairs the two back into ``name``."""
    for label, inst in (
        (f"{name}_gtFine_labelIds.png", f"{name}_gtFine_instanceIds.png"),
        (f"{name}.png", f"{name}.png"),
    ):
        if sample_name(Path(label)) == name == sample_name(Path(inst)):
            return label, inst
    raise EditError(
        f"name {name!r}: bin/prepare would read it back as {sample_name(Path(name + '.png'))!r}; "
        "rename it (a Cityscapes name <city>_<6 digits>_<6 digits>, or one without that pattern)"
    )


def styles_entry(chosen: list[Any], s: State, seed: int) -> dict[str, dict[str, int]]:
    """Per object of a class with clusters: its class and the user's choice, else the
    session's seed (the same draw render makes with that seed)."""
    out = {}
    for st in chosen:
        if st.center >= 0:
            how, value = s.styles.get(st.instance, ("seed", seed))
            out[str(st.instance)] = {"class": int(st.label), how: int(value)}
    return out


def commands(out: Path, info: Any) -> list[str]:
    """The batch commands that reproduce the saved synthesized PNGs."""

    def q(path: Path) -> str:  # absolute, so the commands run from anywhere
        return shlex.quote(str(Path(path).resolve()))

    prep = (
        f"bin/prepare --dataroot {q(out)} --phase test --load_size 0 "
        f"--label_nc {info.arch.label_nc} --out {q(out / MANIFEST_NAME)}"
    )
    source = info.engine.render_args(info.run_dir)
    render = f"bin/render {shlex.join(source)} {q(out / MANIFEST_NAME)}"
    if info.clusters is not None:
        render += f" --clusters {q(info.clusters.path)} --styles {q(out / STYLES_FILE)}"
    return [prep, render + f" --out {q(out / RENDER_FOLDER)} --overwrite"]


def engine_record(engine: Any) -> dict[str, Any]:
    """What rendered the saved images (a note in styles.json; render reads only the samples)."""
    if engine.onnx is None:
        return {"engine": engine.name}
    bf16 = {"precision": engine.precision} if engine.precision != "fp32" else {}
    return {
        "engine": engine.name,
        "onnx": str(engine.onnx.resolve()),
        "onnx_sha256": engine.sidecar["sha256"],
        **bf16,
    }


def read_styles(path: Path) -> dict[str, Any]:
    """The folder's styles.json so far (a damaged or foreign file is an EditError)."""
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except (ValueError, OSError):
        raise EditError(f"{path} is damaged; move it away to save here") from None
    if not isinstance(doc, dict) or doc.get("schema") != STYLES_SCHEMA:
        raise EditError(f"{path} is not a {STYLES_SCHEMA} file; move it away to save here")
    return doc.get("samples", {}) if isinstance(doc.get("samples"), dict) else {}


def save(
    out: Path, name: str, s: State, picture: np.ndarray, chosen: list[Any], info: Any
) -> dict[str, Any]:
    """Write one map's files (each atomically) and merge its styles into styles.json."""
    from p2phd.rendering.files import save_png

    label_file, inst_file = file_names(check_name(name))
    if s.inst.min() < 0 or s.inst.max() > MAX_OBJECT_ID:
        raise EditError(f"instance ids outside 0..{MAX_OBJECT_ID} cannot be saved as a 16-bit PNG")
    samples = read_styles(out / STYLES_FILE) if info.clusters is not None else {}
    files = {
        f"test_label/{label_file}": s.label,
        f"test_inst/{inst_file}": s.inst.astype(np.uint16),
        f"synthesized/{name}_synthesized.png": picture,
    }
    for rel, array in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        save_png(array, out / rel)
    written = list(files)
    cmds = commands(out, info)
    if info.clusters is not None:
        samples[name] = styles_entry(chosen, s, info.seed)
        write_json(
            out / STYLES_FILE,
            {
                "schema": STYLES_SCHEMA,
                "samples": dict(sorted(samples.items())),
                "run": str(info.run_dir.resolve()),
                "clusters": str(info.clusters.path.resolve()),
                **engine_record(info.engine),
                "commands": cmds,
            },
        )
        written.append(STYLES_FILE)
    return {"folder": str(out), "files": written, "commands": cmds}

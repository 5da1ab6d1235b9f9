"""The JSON sidecar beside an exported model (``<file>.json``): what the file is and came from.

    {"schema": "p2phd.export/1", "format": "MINDIR"|"ONNX", "file": name, "sha256", "bytes",
     "size": [H, W], "batch_size", "uint8", "label_nc", "output_nc", "feat_num",
     "inputs": [{"name", "dtype", "shape", "accepts"}, ...], "output": {...},
     "run": {"path", "name", "checkpoint", "checkpoint_sha256", "checkpoint_meta", "options",
             "dataset"},
     "options": bin/export's options, "argv", "versions", "created_at"}

ONNX files add ``opset``, ``half`` and ``dynamic_axes`` ({"N", "H", "W"}: what each dynamic
dimension accepts); their input/output shapes name those dimensions ("N", "H", "W") where a
MindIR has numbers, and ``size``/``batch_size`` are the run's training size and the batch asked
(``size`` is null when neither --size nor the run's training manifest gave one: an imported run).

Read without MindSpore (render's plan and bin/edit check it before anything loads;
``verify`` compares the file's SHA-256 with the sidecar's).
"""

from pathlib import Path
from typing import Any

from p2phd.core.cli import UsageError, read_json

# The ONNX opset p2phd writes (sidecars record it). Here, not in onnx_ops, so that what only
# names or reads an export (deploy.cache, render through a cached export) imports no MindSpore.
OPSET = 17

SCHEMA = "p2phd.export/1"
SUFFIX = ".json"


def path_for(model: str | Path) -> Path:
    model = Path(model)
    return model.with_name(model.name + SUFFIX)


def read(model: str | Path, fmt: str = "MINDIR") -> dict[str, Any]:
    """The sidecar of an exported ``fmt`` model, checked (UsageError naming the file otherwise)."""
    model = Path(model)
    if not model.is_file():
        raise UsageError(f"{model}: no such exported model")
    path = path_for(model)
    if not path.is_file():
        raise UsageError(f"{model}: its sidecar {path.name} is missing (written by bin/export)")
    doc = read_json(path, SCHEMA, "export sidecar")
    if doc.get("format") != fmt:
        flag = {"MINDIR": "--mindir", "ONNX": "--onnx"}.get(str(doc.get("format")), "")
        raise UsageError(
            f"{model}: a {doc.get('format')} export, not {fmt}"
            + (f"; render it with {flag}" if flag else "")
        )
    return doc


def verify(model: str | Path, doc: dict[str, Any]) -> str:
    """The file's SHA-256, once it is checked to be the one its sidecar describes (UsageError)."""
    from p2phd.core import manifest

    sha = manifest.sha256_file(model)
    if sha != doc["sha256"]:
        raise UsageError(f"{model}: its content does not match the sha256 in its sidecar")
    return sha

"""The JSON sidecar beside an exported model (``<file>.json``): what the file is and came from.

    {"schema": "p2phd.export/1", "format": "MINDIR", "file": name, "sha256", "bytes",
     "size": [H, W], "batch_size", "uint8", "label_nc", "output_nc", "feat_num",
     "inputs": [{"name", "dtype", "shape", "accepts"}, ...], "output": {...},
     "run": {"path", "name", "checkpoint", "checkpoint_sha256", "checkpoint_meta", "options",
             "dataset"},
     "options": bin/export's options, "argv", "versions", "created_at"}

Read without MindSpore (render's plan checks it before anything loads).
"""

from pathlib import Path
from typing import Any

from p2phd.core.cli import UsageError, read_json

SCHEMA = "p2phd.export/1"
SUFFIX = ".json"


def path_for(model: str | Path) -> Path:
    model = Path(model)
    return model.with_name(model.name + SUFFIX)


def read(model: str | Path) -> dict[str, Any]:
    """The sidecar of an exported model, checked (UsageError naming the file otherwise)."""
    model = Path(model)
    if not model.is_file():
        raise UsageError(f"{model}: no such exported model")
    path = path_for(model)
    if not path.is_file():
        raise UsageError(f"{model}: its sidecar {path.name} is missing (written by bin/export)")
    doc = read_json(path, SCHEMA, "export sidecar")
    if doc.get("format") != "MINDIR":
        raise UsageError(f"{model}: a {doc.get('format')} export; bin/render runs MINDIR files")
    return doc

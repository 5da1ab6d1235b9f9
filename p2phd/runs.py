"""The run folder (`outputs/<name>/`) as other verbs see it: options and the inference snapshot.

`train` writes `options.json` before its first step and `G.ckpt` (generator, plus the encoder in
feature modes) as it goes; `render` and `precompute` rebuild the networks from the options alone,
so users never repeat --netG/--ngf/--label_nc at render time (a classic pix2pixHD mistake).
"""

import dataclasses
import datetime as _dt
import json
from pathlib import Path
from typing import Any

from .cli import UsageError, write_json
from .options import DataOptions, ModelOptions

RUN_SCHEMA = "p2phd.run/1"
OPTIONS_FILE = "options.json"
SNAPSHOT_FILE = "G.ckpt"


@dataclasses.dataclass
class ArchOptions(DataOptions, ModelOptions):
    """The architecture-defining subset of a run's options (enough to rebuild G, E and D)."""

    no_ganFeat_loss: bool = False


def arch_from_dict(d: dict[str, Any]) -> ArchOptions:
    names = {f.name for f in dataclasses.fields(ArchOptions)}
    return ArchOptions(**{k: v for k, v in d.items() if k in names})


def write_options(run_dir: str | Path, options: dict[str, Any], dataset: dict[str, str]) -> Path:
    from .runtime import versions

    path = Path(run_dir) / OPTIONS_FILE
    write_json(path, {
        "schema": RUN_SCHEMA,
        "options": options,
        "dataset": dataset,
        "versions": versions(),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    })
    return path


def read_options(run_dir: str | Path) -> dict[str, Any]:
    """The run's options.json, checked; raises UsageError if the folder is not a p2phd run."""
    path = Path(run_dir) / OPTIONS_FILE
    if not path.is_file():
        raise UsageError(f"{run_dir}: not a p2phd run folder (no {OPTIONS_FILE})")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: damaged options file ({exc.msg})") from None
    schema = str(doc.get("schema", ""))
    if not schema.startswith("p2phd.run/"):
        raise UsageError(f"{path}: not a p2phd run options file (schema {schema!r})")
    if int(schema.split("/")[1]) > int(RUN_SCHEMA.split("/")[1]):
        raise UsageError(f"{path}: run schema {schema} is newer than this p2phd reads; upgrade p2phd")
    return doc


def snapshot_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / SNAPSHOT_FILE


def load_inference(run_dir: str | Path, max_instances: int = 0):
    """Rebuild G (and E in feature modes) from a run and load its snapshot.

    Returns (G, E or None, ArchOptions, meta). Raises UsageError when the snapshot is missing or
    does not fit the architecture the options describe.
    """
    from . import checkpoint
    from .nets import build_encoder, build_generator

    doc = read_options(run_dir)
    arch = arch_from_dict(doc["options"])
    path = snapshot_path(run_dir)
    if not path.is_file():
        raise UsageError(f"{run_dir}: no generator checkpoint {SNAPSHOT_FILE} (train this run first)")
    cells = {"netG": build_generator(arch)}
    if arch.use_features() and not doc["options"].get("load_features"):
        pool_segments = arch.label_nc if arch.label_feat else max_instances
        cells["netE"] = build_encoder(arch, max(1, pool_segments))
    report = checkpoint.load(path, cells)
    if report.missing or report.mismatched:
        bad = (report.missing + report.mismatched)[:3]
        raise UsageError(f"{path}: does not match the run's architecture (e.g. {', '.join(bad)})")
    for cell in cells.values():
        cell.set_train(False)
    return cells["netG"], cells.get("netE"), arch, checkpoint.read_meta(path)

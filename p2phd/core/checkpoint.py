"""Save and load several Cells (networks and optimizers) in one MindSpore checkpoint.

- ``save(path, {"netG": G, "optG": optG}, meta)``: parameters stored as ``<key>.<attribute path>``
  (``netG.model.1.weight``), meta values as extra entries; written to a temporary file in the
  same directory and renamed, so ``path`` is never half-written.
- ``load(path, cells) -> LoadReport``: loads by name AND shape; never raises on a partial match.
  ``loaded`` / ``missing`` (in the cells, not in the file) / ``mismatched`` (same name, other
  shape) / ``unused`` (in the file, not in the cells; meta excluded) are lists of full names.
- ``read_meta(path)``: the meta dict. Ints, bools and strings are stored as themselves; floats and
  other JSON values (lists, dicts) as a ``json:``-prefixed string, so they round-trip exactly.

Optimizer Cells (``nn.Adam``...) are saved by their own state only: ``global_step``,
``learning_rate``, ``beta1_power``, ``beta2_power``, ``moment1.*``, ``moment2.*``; the network
weights they reference are not stored twice. Their state names come from Parameter.name, which is
unique because the builders prefix it (p2phd.nets.prefix_parameter_names).

Meta keys must not contain '.' (parameter names always do, which is how the two are told apart).
"""

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn

from p2phd.core.cli import verbose, writing

_JSON_PREFIX = "json:"


def available_memory() -> int | None:
    """Bytes the kernel can hand out now (MemAvailable: free pages plus reclaimable page cache),
    or None where /proc/meminfo does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _count_page_cache_as_available() -> None:
    """MindSpore 2.10's load_checkpoint refuses a .ckpt larger than the *free* pages
    (SC_AVPHYS_PAGES), which leaves out the page cache the kernel drops on demand: on a machine
    that has read a few GB of files, a 730 MB imported 1024p G.ckpt was refused with 16 GB
    available. Its guard asks ``_get_available_memory``; answer with MemAvailable, which is what
    the guard means. Nothing else reads it; where /proc/meminfo is missing MindSpore's own
    answer stays."""
    from mindspore.train import serialization

    own = getattr(serialization, "_get_available_memory", None)
    if own is None:  # another MindSpore: no such guard to correct
        return
    serialization._get_available_memory = lambda: available_memory() or own()


_count_page_cache_as_available()


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every parameter of the cells was loaded."""
        return not self.missing and not self.mismatched


def named_parameters(key: str, cell: nn.Cell) -> list[tuple[str, Parameter]]:
    """(``<key>.<name>``, Parameter) for what ``save`` stores of ``cell``."""
    if isinstance(cell, nn.Optimizer):
        weights = {id(p) for p in cell.parameters}
        return [(f"{key}.{p.name}", p) for p in cell.get_parameters() if id(p) not in weights]
    return [(f"{key}.{name}", p) for name, p in cell.parameters_and_names()]


def _meta_value(value: Any) -> Any:
    # floats go through JSON too: append_dict would store them as float32
    if isinstance(value, bool | int | str):
        return value
    return _JSON_PREFIX + json.dumps(value)


@contextmanager
def _quiet() -> Iterator[None]:
    """Hide MindSpore's own CRITICAL log of a failed save: WriteError says it in one line."""
    if verbose():
        yield
        return
    before = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(before)


def save(path: str | os.PathLike, cells: dict[str, nn.Cell], meta: dict | None = None) -> None:
    path = os.fspath(path)
    entries = []
    for key, cell in cells.items():
        for name, p in named_parameters(key, cell):
            entries.append({"name": name, "data": Tensor(p.asnumpy())})
    append = {}
    for k, v in (meta or {}).items():
        if "." in k:
            raise ValueError(f"meta key {k!r} must not contain '.'")
        append[k] = _meta_value(v)
    directory = os.path.dirname(os.path.abspath(path))
    # A private folder beside the target: save_checkpoint writes its own temporaries (and leaves
    # them behind when the disk is full), all removed with the folder.
    work = tempfile.mkdtemp(prefix=".tmp-", dir=directory)
    try:
        tmp = os.path.join(work, "new.ckpt")  # save_checkpoint appends '.ckpt' unless present
        with writing(path), _quiet():
            ms.save_checkpoint(entries, tmp, append_dict=append or None)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def read(path: str | os.PathLike) -> dict:
    """``ms.load_checkpoint`` (with the memory guard corrected above): name -> Parameter."""
    return ms.load_checkpoint(os.fspath(path))


def load(path: str | os.PathLike, cells: dict[str, nn.Cell]) -> LoadReport:
    stored = read(path)
    report = LoadReport()
    used: set[str] = set()
    for key, cell in cells.items():
        for name, p in named_parameters(key, cell):
            value = stored.get(name)
            if value is None or isinstance(value, str):
                report.missing.append(name)
            elif tuple(value.shape) != tuple(p.shape):
                report.mismatched.append(name)
                used.add(name)
            else:
                p.set_data(Tensor(value.asnumpy(), dtype=p.dtype))
                report.loaded.append(name)
                used.add(name)
    report.unused = [n for n in stored if "." in n and n not in used]
    return report


def _python(value: Any) -> Any:
    if isinstance(value, str):
        return json.loads(value[len(_JSON_PREFIX) :]) if value.startswith(_JSON_PREFIX) else value
    arr = np.asarray(value.asnumpy())
    return arr.item() if arr.ndim == 0 else arr.tolist()


def read_meta(path: str | os.PathLike) -> dict:
    return {k: _python(v) for k, v in read(path).items() if "." not in k}

"""Write .pth files in torch's legacy and zip formats without torch, for tests (a stand-in
`torch` module exists only while pickle names its globals)."""

import io
import pickle
import struct
import sys
import types
import zipfile
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np

from p2phd.interop.pth import LEGACY_MAGIC, LEGACY_PROTOCOL


@contextmanager
def _fake_torch():
    """Just enough of a `torch` module for pickle to name torch.FloatStorage and
    torch._utils._rebuild_tensor_v2 when writing test files (removed afterwards)."""
    torch_mod, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")

    FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch_mod.FloatStorage, utils._rebuild_tensor_v2, torch_mod._utils = (
        FloatStorage, _rebuild_tensor_v2, utils,
    )  # fmt: skip
    with mock.patch.dict(sys.modules, {"torch": torch_mod, "torch._utils": utils}):
        yield FloatStorage, _rebuild_tensor_v2


def _pickle_state_dict(
    f, tensors: dict[str, np.ndarray], claim: int | None, legacy: bool
) -> list[np.ndarray]:
    """Pickle an OrderedDict of float32 tensors into f as torch does (storages as persistent ids
    ('storage', torch.FloatStorage, key, 'cpu', numel[, view: legacy])); returns the storages'
    arrays, storage i named "i"."""
    with _fake_torch() as (storage_cls, rebuild):

        class Storage:
            def __init__(self, key, arr):
                self.key, self.arr = key, arr

        class Tens:
            def __init__(self, storage, shape):
                self.storage, self.shape = storage, shape

            def __reduce__(self):
                strides = tuple(int(s) // 4 for s in np.empty(self.shape, np.float32).strides)
                return rebuild, (self.storage, 0, self.shape, strides, False, OrderedDict())

        class Pickler(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, Storage):
                    n = obj.arr.size if claim is None else claim
                    pid = ("storage", storage_cls, obj.key, "cpu", n)
                    return (*pid, None) if legacy else pid
                return None

        storages = [
            Storage(str(i), np.ascontiguousarray(a, np.float32))
            for i, a in enumerate(tensors.values())
        ]
        sd = OrderedDict(
            (n, Tens(s, tuple(a.shape)))
            for (n, a), s in zip(tensors.items(), storages, strict=True)
        )
        Pickler(f, protocol=2).dump(sd)
    return [s.arr for s in storages]


def write_legacy_pth(path: Path, tensors: dict[str, np.ndarray], claim: int | None = None) -> Path:
    """A legacy-format .pth of float32 tensors, as torch < 1.6 writes it. `claim`: the element
    count every storage claims (a hostile file), instead of the true one."""
    with open(path, "wb") as f:
        for part in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True}):
            pickle.dump(part, f, protocol=2)
        arrays = _pickle_state_dict(f, tensors, claim, legacy=True)
        pickle.dump([str(i) for i in range(len(arrays))], f, protocol=2)
        for arr in arrays:
            n = arr.size if claim is None else claim
            f.write(struct.pack("<q", n) + arr.astype("<f4").tobytes())
    return path


def write_zip_pth(
    path: Path,
    tensors: dict[str, np.ndarray],
    entry=None,
    method: int = zipfile.ZIP_STORED,
) -> Path:
    """A zip-format .pth of float32 tensors laid out as torch >= 1.6 writes it
    (<folder>/data.pkl, <folder>/data/<key>, byteorder, version). A hostile file: `entry(key)`
    returns an iterable of byte chunks written in place of storage key's bytes (streamed, so
    a huge entry needs no memory), `method` the zip method of the storage entries."""
    folder = Path(path).stem
    buf = io.BytesIO()
    arrays = _pickle_state_dict(buf, tensors, None, legacy=False)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{folder}/data.pkl", buf.getvalue())
        zf.writestr(f"{folder}/byteorder", "little")
        for key, arr in enumerate(arrays):
            info = zipfile.ZipInfo(f"{folder}/data/{key}")
            info.compress_type = method
            chunks = [arr.astype("<f4").tobytes()] if entry is None else entry(str(key))
            with zf.open(info, "w", force_zip64=True) as out:
                for chunk in chunks:
                    out.write(chunk)
        zf.writestr(f"{folder}/version", "3\n")
    return path

"""Write .pth files in torch's legacy format without torch, for tests (a stand-in `torch` module
exists only while pickle names its globals)."""

import pickle
import struct
import sys
import types
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


def write_legacy_pth(path: Path, tensors: dict[str, np.ndarray], claim: int | None = None) -> Path:
    """A legacy-format .pth of float32 tensors, as torch < 1.6 writes it. `claim`: the element
    count every storage claims (a hostile file), instead of the true one."""
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
                    return ("storage", storage_cls, obj.key, "cpu", n, None)
                return None

        storages = [
            Storage(str(i), np.ascontiguousarray(a, np.float32))
            for i, a in enumerate(tensors.values())
        ]
        sd = OrderedDict(
            (n, Tens(s, tuple(a.shape)))
            for (n, a), s in zip(tensors.items(), storages, strict=True)
        )
        with open(path, "wb") as f:
            for part in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True}):
                pickle.dump(part, f, protocol=2)
            Pickler(f, protocol=2).dump(sd)
            pickle.dump([s.key for s in storages], f, protocol=2)
            for s in storages:
                n = s.arr.size if claim is None else claim
                f.write(struct.pack("<q", n) + s.arr.astype("<f4").tobytes())
    return path

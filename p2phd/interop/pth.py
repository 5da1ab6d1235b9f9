"""Read PyTorch ``.pth`` state dicts without PyTorch, safely.

A ``.pth`` is a pickle. Unpickling runs whatever callables the pickle names, so this reader
resolves only an allow-list of globals (OrderedDict, torch's tensor-rebuild functions and its
storage types) and replaces each with an inert stand-in; any other global (``os.system``,
``builtins.eval``, ...) raises :class:`PthError` before anything is called.

Two serialisations exist (facts from torch/serialization.py):

- legacy (torch < 1.6): five pickles back to back -- magic number, protocol version, sys info,
  the object (storages as persistent ids), the list of storage keys -- then every storage's raw
  bytes in key order, each preceded by its element count as an int64.
- zip (torch >= 1.6): a zip archive ``<folder>/data.pkl`` (the object) with each storage's raw
  bytes in ``<folder>/data/<key>``; the folder name varies with the file name at save time.
  torch stores these entries uncompressed, each exactly as long as its storage; an entry that is
  compressed, shorter or longer is refused from the zip directory, before it is read.

Tensors are streamed: the object is unpickled into placeholders first, then each storage is read
from the file on its own (seek + readinto) and turned into the arrays that use it, so peak memory
is about the arrays plus one storage.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
LEGACY_PROTOCOL = 1001  # torch.serialization.PROTOCOL_VERSION

# torch storage class name -> (numpy dtype of the bytes on disk, numpy dtype handed out)
_STORAGES: dict[str, tuple[str, str]] = {
    "FloatStorage": ("<f4", "float32"),
    "DoubleStorage": ("<f8", "float64"),
    "HalfStorage": ("<f2", "float16"),
    "BFloat16Storage": ("<u2", "float32"),  # numpy has no bfloat16: widened by a bit shift
    "LongStorage": ("<i8", "int64"),
    "IntStorage": ("<i4", "int32"),
    "ShortStorage": ("<i2", "int16"),
    "CharStorage": ("i1", "int8"),
    "ByteStorage": ("u1", "uint8"),
    "BoolStorage": ("?", "bool"),
    "UntypedStorage": ("u1", "uint8"),  # torch >= 2 writes raw byte storages this way
}


class PthError(ValueError):
    """A .pth file that cannot be read safely: the message names the file and what is wrong."""


@dataclass(frozen=True)
class _StorageType:
    name: str  # key of _STORAGES


@dataclass(frozen=True)
class _Storage:
    key: str
    kind: str  # key of _STORAGES
    numel: int
    offset: int = 0  # legacy storage views: element offset into the root storage


@dataclass(frozen=True)
class _Dtype:
    name: str  # key of _DTYPES


# torch dtype name -> numpy dtype, for _rebuild_tensor_v3 (torch >= 2 writes the dtypes that have
# no typed storage class, e.g. uint16, as an untyped byte storage plus the dtype)
_DTYPES = {
    "float32": "<f4", "float64": "<f8", "float16": "<f2", "int64": "<i8", "int32": "<i4",
    "int16": "<i2", "int8": "i1", "uint8": "u1", "bool": "?", "uint16": "<u2", "uint32": "<u4",
    "uint64": "<u8",
}  # fmt: skip


@dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str | None = None  # v3: the byte storage is read as this numpy dtype


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_rest: Any) -> _Tensor:
    """Stand-in for torch._utils._rebuild_tensor and _rebuild_tensor_v2 (extra args ignored)."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
    ints = (offset, *size, *stride)
    if not all(isinstance(v, int) and v >= 0 for v in ints) or len(size) != len(stride):
        raise pickle.UnpicklingError("tensor with a malformed size, stride or offset")
    return _Tensor(storage, offset + storage.offset, tuple(size), tuple(stride))


def _rebuild_tensor_v3(
    storage: Any, offset: Any, size: Any, stride: Any, grad: Any, hooks: Any, dtype: Any, *_: Any
) -> _Tensor:
    """Stand-in for torch._utils._rebuild_tensor_v3: an untyped (byte) storage + a dtype."""
    t = _rebuild_tensor(storage, offset, size, stride)
    if not isinstance(dtype, _Dtype) or t.storage.kind != "UntypedStorage":
        raise pickle.UnpicklingError("_rebuild_tensor_v3 without a byte storage and a dtype")
    return _Tensor(t.storage, t.offset, t.size, t.stride, _DTYPES[dtype.name])


def _rebuild_parameter(data: Any, *_rest: Any) -> Any:
    """Stand-in for torch._utils._rebuild_parameter: an nn.Parameter is its tensor."""
    if not isinstance(data, _Tensor):
        raise pickle.UnpicklingError("parameter rebuilt from something that is not a tensor")
    return data


# (module, name) -> what the unpickler gets instead. Nothing else resolves.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in _STORAGES},
    **{("torch", name): _Dtype(name) for name in _DTYPES},
    ("torch.storage", "UntypedStorage"): _StorageType("UntypedStorage"),
}


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, storages: dict[str, _Storage] | None = None) -> None:
        super().__init__(file)
        self.storages = storages  # None: a pickle that must not reference storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise PthError(f"names the global {module}.{name}, which is not allowed") from None

    def persistent_load(self, pid: Any) -> _Storage:
        if self.storages is None or not isinstance(pid, tuple) or len(pid) < 5:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        tag, stype, key, _location, numel, *view = pid
        tag = tag.decode() if isinstance(tag, bytes) else tag
        if tag != "storage" or not isinstance(stype, _StorageType) or not isinstance(numel, int):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        key = str(key)
        root = self.storages.setdefault(key, _Storage(key, stype.name, numel))
        if root.kind != stype.name:
            raise pickle.UnpicklingError(f"storage {key} is read as two dtypes")
        if view and view[0] is not None:  # legacy view: (view_key, element offset, view size)
            _view_key, offset, _size = view[0]
            return _Storage(key, root.kind, root.numel, int(offset))
        return root


def _unpickle(f: BinaryIO, storages: dict[str, _Storage] | None) -> Any:
    return _SafeUnpickler(f, storages).load()


def _tensors(obj: Any, path: Path) -> dict[str, _Tensor]:
    """The state dict inside obj: obj itself, or obj['state_dict'] / obj['model']."""
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj:
        raise PthError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    for name, value in obj.items():
        if not isinstance(value, _Tensor):
            raise PthError(f"{path}: entry {name!r} is a {type(value).__name__}, not a tensor")
    return dict(obj)


def _readinto(f: BinaryIO, buf: np.ndarray, path: Path, what: str) -> None:
    view = memoryview(buf).cast("B")
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            raise PthError(f"{path}: truncated: {what} ends after {got} of {len(view)} bytes")
        got += n


def _arrays(
    tensors: dict[str, _Tensor], read_storage: Any, path: Path, big_endian: bool
) -> dict[str, np.ndarray]:
    """Read each storage once, cut its tensors out of it, let it go; keep the dict's order."""
    by_key: dict[str, list[str]] = {}
    for name, t in tensors.items():
        by_key.setdefault(t.storage.key, []).append(name)
    out: dict[str, np.ndarray] = {}
    for key, names in by_key.items():
        root = tensors[names[0]].storage
        disk, final = _STORAGES[root.kind]
        data = read_storage(key, root.numel, np.dtype(disk))
        if big_endian:
            data = data.view(data.dtype.newbyteorder(">")).astype(data.dtype.newbyteorder("="))
        for name in names:
            t = tensors[name]
            if t.dtype is None:
                out[name] = _cut(data, t, final, path, name)
            elif data.nbytes % np.dtype(t.dtype).itemsize:
                raise PthError(
                    f"{path}: tensor {name!r}: storage is not a whole number of {t.dtype}"
                )
            else:
                dt = np.dtype(t.dtype)
                out[name] = _cut(data.view(dt), t, dt.newbyteorder("=").name, path, name)
    return {name: out[name] for name in tensors}


def _cut(data: np.ndarray, t: _Tensor, final: str, path: Path, name: str) -> np.ndarray:
    if t.size and 0 in t.size:
        last = t.offset - 1
    else:
        last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride, strict=True))
    if last >= data.size:
        raise PthError(f"{path}: tensor {name!r} reaches past the end of its storage")
    if int(np.prod(t.size)) > max(data.size, 1):  # stride-0 views: no state dict has them, and a
        # hostile file could otherwise ask for any amount of memory
        raise PthError(f"{path}: tensor {name!r} has more elements than its storage")
    whole = t.offset == 0 and data.size == int(np.prod(t.size)) and _contiguous(t)
    if whole:  # the common case: one tensor owns its storage, no second copy needed
        arr = data.reshape(t.size)
    else:
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[t.offset :], shape=t.size, strides=[s * item for s in t.stride]
        )
        arr = np.array(view, order="C")
    if final == "float32" and data.dtype.kind == "u" and data.itemsize == 2:  # bfloat16
        return (arr.astype(np.uint32) << 16).view(np.float32)
    return np.asarray(arr, dtype=final, order="C")  # (ascontiguousarray would make 0-d 1-d)


def _contiguous(t: _Tensor) -> bool:
    expect = 1
    for n, s in zip(reversed(t.size), reversed(t.stride), strict=True):
        if n != 1 and s != expect:
            return False
        expect *= n
    return True


def _check_storage_entries(
    zf: zipfile.ZipFile, folder: str, tensors: dict[str, _Tensor], path: Path
) -> None:
    """Every storage entry exists, is stored (not compressed) and holds exactly the bytes its
    tensors' storage needs, checked in the central directory before any entry is read.

    torch.save writes storages uncompressed and torch.load refuses a record whose size differs
    from its storage; a compressed entry would be inflated here, so it is refused unread (a
    deflated entry of gigabytes of zeros is a few megabytes on disk)."""
    storages = {t.storage.key: t.storage for t in tensors.values()}
    for key, storage in storages.items():
        member = f"{folder}/data/{key}"
        try:
            info = zf.getinfo(member)
        except KeyError:
            raise PthError(f"{path}: storage {member} is missing from the archive") from None
        if info.compress_type != zipfile.ZIP_STORED:
            raise PthError(
                f"{path}: storage {member} is compressed (zip method {info.compress_type}); "
                "torch writes storages uncompressed"
            )
        need = storage.numel * np.dtype(_STORAGES[storage.kind][0]).itemsize
        if info.file_size != need:
            raise PthError(
                f"{path}: storage {member} holds {info.file_size} bytes, its tensors need {need}"
            )


def _read_zip(path: Path, f: BinaryIO) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(f) as zf:
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise PthError(f"{path}: zip archive without exactly one <folder>/data.pkl")
        folder = pkls[0].split("/")[0]
        storages: dict[str, _Storage] = {}
        with zf.open(pkls[0]) as pf:
            tensors = _tensors(_unpickle(pf, storages), path)
        _check_storage_entries(zf, folder, tensors, path)
        big = False
        if f"{folder}/byteorder" in zf.namelist():
            info = zf.getinfo(f"{folder}/byteorder")
            if info.file_size > 16:  # "little" or "big": never inflate a large entry
                raise PthError(
                    f"{path}: {info.filename} is {info.file_size} bytes, not a byte order"
                )
            big = zf.read(info).strip() == b"big"

        def read_storage(key: str, numel: int, dtype: np.dtype) -> np.ndarray:
            member = f"{folder}/data/{key}"
            buf = np.empty(numel, dtype)
            with zf.open(member) as sf:
                _readinto(sf, buf, path, member)
            return buf

        return _arrays(tensors, read_storage, path, big)


def _read_legacy(path: Path, f: BinaryIO) -> dict[str, np.ndarray]:
    if _unpickle(f, None) != LEGACY_MAGIC:
        raise PthError(f"{path}: not a PyTorch file (no zip archive, no legacy magic number)")
    if _unpickle(f, None) != LEGACY_PROTOCOL:
        raise PthError(f"{path}: unsupported legacy protocol version")
    sys_info = _unpickle(f, None)
    big = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
    storages: dict[str, _Storage] = {}
    tensors = _tensors(_unpickle(f, storages), path)
    keys = _unpickle(f, None)
    if not isinstance(keys, list) or set(map(str, keys)) != set(storages):
        raise PthError(f"{path}: the storage key list does not match the tensors")
    # Storages follow in key order, each as int64 element count + raw bytes: note where each is.
    where: dict[str, int] = {}
    pos = f.tell()
    size = f.seek(0, 2)
    for key in map(str, keys):
        f.seek(pos)
        head = f.read(8)
        if len(head) != 8:
            raise PthError(f"{path}: truncated: storage {key} is missing")
        (numel,) = struct.unpack(">q" if big else "<q", head)
        if numel != storages[key].numel or numel < 0:
            raise PthError(
                f"{path}: storage {key} holds {numel} elements, expected {storages[key].numel}"
            )
        where[key] = pos + 8
        pos += 8 + numel * np.dtype(_STORAGES[storages[key].kind][0]).itemsize
    if pos > size:  # checked before any storage is allocated
        raise PthError(f"{path}: truncated: the storages need {pos} bytes, the file has {size}")

    def read_storage(key: str, numel: int, dtype: np.dtype) -> np.ndarray:
        f.seek(where[key])
        buf = np.empty(numel, dtype)
        _readinto(f, buf, path, f"storage {key}")
        return buf

    return _arrays(tensors, read_storage, path, big)


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Tensor name -> numpy array of a .pth state dict, in the file's order; torch not needed.

    Accepts a bare state dict (what NVIDIA's ``save_network`` writes), or a dict whose
    ``state_dict`` (else ``model``) entry is one; in that case the wrapper's other entries
    (epoch, optimiser, ...) are ignored only if they contain allowed objects. Every value of the
    state dict must be a tensor. Arrays are fresh C-contiguous copies in the storage's dtype
    (Half -> float16, BFloat16 -> float32). Raises PthError (file + reason) for anything else:
    not a .pth, truncated, non-allowed globals in the pickle, non-tensor entries.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if zipfile.is_zipfile(f):
                f.seek(0)
                return _read_zip(path, f)
            f.seek(0)
            return _read_legacy(path, f)
    except PthError as exc:
        msg = str(exc)
        raise PthError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, TypeError) as exc:
        raise PthError(f"{path}: not a readable .pth ({type(exc).__name__}: {exc})") from None
    except (AttributeError, IndexError, KeyError, struct.error, OverflowError) as exc:
        raise PthError(f"{path}: malformed .pth ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise PthError(f"{path}: cannot read ({exc.strerror or exc})") from None

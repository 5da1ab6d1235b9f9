"""p2phd.interop.pth: torch-free .pth reading, both formats, and the unpickling allow-list.

The .pth fixtures were written by torch.save (tests/fixtures/make_nvidia_fixtures.py); the
hostile pickles are crafted here with the standard pickle module.
"""

import os
import pickle
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from p2phd.interop.pth import LEGACY_MAGIC, LEGACY_PROTOCOL, PthError, read_state_dict

FIX = Path(__file__).parent / "fixtures" / "nvidia"


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_every_dtype_and_layout_matches_torch(fmt):
    expected = np.load(FIX / "pth_cases.npz")
    got = read_state_dict(FIX / f"pth_cases_{fmt}.pth")
    assert list(got) == list(expected.files)  # the file's order
    for name, arr in got.items():
        want = expected[name]
        assert arr.dtype == want.dtype, name  # bf16 comes out as float32, like .float()
        assert arr.shape == want.shape, name
        np.testing.assert_array_equal(arr, want, err_msg=name)
        assert arr.flags.c_contiguous, name
    assert got["f16"].dtype == np.float16 and got["bf16"].dtype == np.float32
    # views of one storage come out as independent arrays
    got["shared_whole"][:] = -1
    assert got["at_offset"].min() >= 4
    got["f32"][:] = 0
    assert np.abs(got["transposed"]).sum() > 0


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_wrapped_state_dict(fmt):
    expected = np.load(FIX / "pth_wrapped.npz")
    got = read_state_dict(FIX / f"pth_wrapped_{fmt}.pth")
    assert list(got) == list(expected.files)
    for name in got:
        np.testing.assert_array_equal(got[name], expected[name])


class _Call:
    """Pickles as a call of fn(*args): what a hostile .pth does."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _legacy_file(path: Path, obj) -> Path:
    with open(path, "wb") as f:
        for part in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True}, obj, []):
            pickle.dump(part, f, protocol=2)
    return path


def _zip_file(path: Path, obj) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
        zf.writestr("archive/version", "3\n")
    return path


def _payloads(marker: Path):
    touch = f"touch {marker}"
    return {
        "os.system": _Call(os.system, touch),
        "builtins.eval": _Call(eval, f"open({str(marker)!r}, 'w')"),
        "subprocess": _Call(subprocess.call, ["touch", str(marker)]),
    }


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "subprocess"])
@pytest.mark.parametrize("writer", [_legacy_file, _zip_file])
def test_hostile_pickle_is_refused_and_never_runs(tmp_path, kind, writer):
    marker = tmp_path / "pwned"
    payload = {"weight": _payloads(marker)[kind]}
    path = writer(tmp_path / "evil.pth", payload)
    # the payload is real: plain pickle would run it
    with pytest.raises(PthError, match=r"evil\.pth.*not allowed") as err:
        read_state_dict(path)
    assert "\n" not in str(err.value)
    assert not marker.exists()
    pickle.loads(pickle.dumps(payload["weight"]))
    assert marker.exists()  # proves the payload would have run


def test_truncated_file_names_the_file(tmp_path):
    for fmt in ("legacy", "zip"):
        data = (FIX / f"pth_cases_{fmt}.pth").read_bytes()
        for cut in (len(data) // 3, len(data) - 5):
            path = tmp_path / f"cut_{fmt}_{cut}.pth"
            path.write_bytes(data[:cut])
            with pytest.raises(PthError, match=path.name):
                read_state_dict(path)


def test_not_a_state_dict_of_tensors(tmp_path):
    with pytest.raises(PthError, match=r"leaf\.pth.*'lr' is a float"):
        read_state_dict(_legacy_file(tmp_path / "leaf.pth", {"lr": 0.1}))
    with pytest.raises(PthError, match=r"list\.pth.*holds a list"):
        read_state_dict(_legacy_file(tmp_path / "list.pth", [1, 2]))
    (tmp_path / "text.pth").write_text("hello\n")
    with pytest.raises(PthError, match=r"text\.pth"):
        read_state_dict(tmp_path / "text.pth")
    with pytest.raises(PthError, match=r"missing\.pth"):
        read_state_dict(tmp_path / "missing.pth")


def test_sizes_are_checked_before_memory_is_taken(tmp_path):
    """A file claiming a huge storage (or a stride-0 tensor bigger than its storage) is refused
    without allocating it."""
    from pth_writer import write_legacy_pth

    arr = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    back = read_state_dict(write_legacy_pth(tmp_path / "ok.pth", arr))
    np.testing.assert_array_equal(back["w"], arr["w"])
    huge = write_legacy_pth(tmp_path / "huge.pth", arr, claim=10**12)
    with pytest.raises(PthError, match=r"huge\.pth: truncated: the storages need"):
        read_state_dict(huge)


def _zeros(n_bytes: int, chunk: int = 1 << 20):
    for start in range(0, n_bytes, chunk):
        yield bytes(min(chunk, n_bytes - start))


def test_zip_storage_entries_are_exactly_what_torch_writes(tmp_path, monkeypatch):
    """A zip storage entry that is compressed, shorter or longer than its storage is refused
    from the zip directory, one line naming the file and the entry, before any of it is read."""
    from pth_writer import write_zip_pth

    arr = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(2, np.float32)}
    back = read_state_dict(write_zip_pth(tmp_path / "ok.pth", arr))
    assert list(back) == ["w", "b"] and all(np.array_equal(back[k], arr[k]) for k in arr)
    need = {"0": 24, "1": 8}
    cases = {  # file -> (entry writer, zip method, what the message says)
        "deflated": (None, zipfile.ZIP_DEFLATED, "is compressed"),
        "bomb": (lambda k: _zeros(64 << 20), zipfile.ZIP_DEFLATED, "is compressed"),
        "short": (lambda k: _zeros(need[k] - 4), zipfile.ZIP_STORED, "holds 20 bytes"),
        "long": (lambda k: _zeros(need[k] + 4096), zipfile.ZIP_STORED, "holds 4120 bytes"),
    }
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self, name, *args, **kwargs):
        opened.append(getattr(name, "filename", name))
        return real_open(self, name, *args, **kwargs)

    for case, (entry, method, says) in cases.items():
        path = write_zip_pth(tmp_path / f"{case}.pth", arr, entry, method)
        if case == "bomb":  # 64 MiB of zeros deflate to a file of well under 1 MiB
            assert path.stat().st_size < (1 << 20)
        opened.clear()
        monkeypatch.setattr(zipfile.ZipFile, "open", spy)
        with pytest.raises(PthError) as err:
            read_state_dict(path)
        monkeypatch.setattr(zipfile.ZipFile, "open", real_open)
        msg = str(err.value)
        assert msg.startswith(f"{path}: storage {case}/data/0 ") and says in msg, msg
        assert "\n" not in msg
        assert opened == [f"{case}/data.pkl"], opened  # no storage entry was opened

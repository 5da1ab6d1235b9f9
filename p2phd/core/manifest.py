"""HDF5 manifest conventions shared by every verb (docs/layouts.md).

Root attributes on every manifest: ``schema`` ("p2phd.<kind>/<version>"), ``created_by``, ``argv``,
``options`` (JSON), ``created_at`` (UTC ISO), ``versions`` (JSON) and ``inputs`` (JSON list of
{"path", "sha256"}). Files are written as ``<name>.tmp`` and renamed when complete, so a manifest
that exists is whole; readers refuse a wrong kind, a newer schema or a damaged file in one line.

``python -m p2phd.manifest FILE`` prints a manifest's root attributes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py

from p2phd.core.cli import UsageError, WriteError, writing

# Current schema version of each kind of manifest this version of p2phd writes and reads.
SCHEMAS = {"dataset": 1, "features": 1, "clusters": 1, "render": 1}


def schema_name(kind: str) -> str:
    return f"p2phd.{kind}/{SCHEMAS[kind]}"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def input_record(path: str | os.PathLike, sha256: str | None = None) -> dict[str, str]:
    """Provenance of one input; hashes the file unless the caller already has its hash."""
    p = Path(path)
    digest = sha256 if sha256 is not None else (sha256_file(p) if p.is_file() else "")
    return {"path": str(p.resolve()), "sha256": digest}


def _provenance(
    kind: str,
    verb: str,
    options: dict[str, Any],
    inputs: Sequence[dict[str, str]],
    argv: Sequence[str] | None,
) -> dict[str, str]:
    from p2phd.core.runtime import versions

    return {
        "schema": schema_name(kind),
        "created_by": f"p2phd {verb} {versions()['p2phd']}",
        "argv": json.dumps(list(sys.argv if argv is None else argv)),
        "options": json.dumps(options, sort_keys=True, default=str),
        "created_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "versions": json.dumps(versions(), sort_keys=True),
        "inputs": json.dumps(list(inputs)),
    }


def tmp_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".tmp")


@contextmanager
def create(
    path: str | os.PathLike,
    kind: str,
    verb: str,
    options: dict[str, Any],
    inputs: Sequence[dict[str, str]] = (),
    argv: Sequence[str] | None = None,
    resume: bool = False,
) -> Iterator[h5py.File]:
    """Write a manifest atomically: yields the open ``<path>.tmp``, renamed onto path on success.

    With ``resume=True`` an existing ``<path>.tmp`` written with the same options is reopened
    (for verbs that continue after a kill); otherwise it is discarded. On an exception the
    temporary file is removed unless ``resume`` is set, in which case it is kept to resume from;
    a full disk always removes it and raises a WriteError naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    attrs = _provenance(kind, verb, options, inputs, argv)
    f = None
    if resume and tmp.exists():
        try:
            f = h5py.File(tmp, "a")
            if (
                f.attrs.get("schema") != attrs["schema"]
                or f.attrs.get("options") != attrs["options"]
            ):
                f.close()
                f = None
        except OSError:
            f = None
    if f is None:
        if tmp.exists():
            tmp.unlink()
        f = h5py.File(tmp, "w")
        f.attrs.update(attrs)
    ok = full = False
    try:
        with writing(path):
            try:
                yield f
            finally:
                f.close()  # flushes: may be where a full disk shows
        os.replace(tmp, path)
        ok = True
    except WriteError:
        full = True  # an HDF5 file whose write failed cannot be trusted, even to resume from
        raise
    finally:
        if not ok and (full or not resume) and tmp.exists():
            tmp.unlink()


def open_manifest(path: str | os.PathLike, kind: str) -> h5py.File:
    """Open a manifest read-only after checking it is whole and of the expected kind and schema."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such manifest")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        reason = str(exc).split("(")[0].strip().rstrip(",") or "unreadable"
        raise UsageError(
            f"{path}: not a readable HDF5 manifest (truncated or damaged?): {reason}"
        ) from None
    schema = f.attrs.get("schema", "")
    schema = schema.decode() if isinstance(schema, bytes) else str(schema)
    name, _, ver = schema.partition("/")
    if not name.startswith("p2phd."):
        f.close()
        raise UsageError(f"{path}: not a p2phd manifest (schema attribute {schema!r})")
    if name != f"p2phd.{kind}":
        f.close()
        raise UsageError(
            f"{path}: is a {name.removeprefix('p2phd.')} manifest, expected a {kind} manifest"
        )
    if not ver.isdigit() or int(ver) > SCHEMAS[kind]:
        f.close()
        raise UsageError(
            f"{path}: {kind} schema version {ver} is newer than this p2phd reads "
            f"({SCHEMAS[kind]}); upgrade p2phd"
        )
    return f


def read_attrs(f: h5py.File) -> dict[str, Any]:
    """Root attributes with the JSON ones decoded."""
    out: dict[str, Any] = {}
    for key, value in f.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        elif hasattr(value, "item") and getattr(value, "shape", None) == ():
            value = value.item()  # numpy scalar -> int/float/bool, so JSON shows real types
        if key in ("options", "versions", "inputs", "argv") and isinstance(value, str):
            value = json.loads(value)
        out[key] = value
    return out


class ManifestReader:
    """Read-only view of one kind of manifest: checked once on open, hash cached.

    Safe across fork(): h5py handles must not cross it, so a child process reopens the file.
    Subclasses set ``kind`` and read their tables in ``_load`` (raise UsageError if incomplete).
    """

    kind = ""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._f: h5py.File | None = open_manifest(self.path, self.kind)
        self._pid = os.getpid()
        self._sha: str | None = None
        try:
            self.attrs = read_attrs(self._f)
            self._load(self._f)
        except BaseException:
            self.close()
            raise

    def _load(self, f: h5py.File) -> None:
        """Check and read what the subclass keeps in memory."""

    def _file(self) -> h5py.File:
        if self._f is None or self._pid != os.getpid():
            self._f = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._f

    def sha256(self) -> str:
        if self._sha is None:
            self._sha = sha256_file(self.path)
        return self._sha

    def close(self) -> None:
        if self._f is not None and self._pid == os.getpid():
            self._f.close()
        self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for p in args:
        with h5py.File(p, "r") as f:
            print(json.dumps(read_attrs(f), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

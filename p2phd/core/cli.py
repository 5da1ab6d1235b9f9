"""What every verb shares at the command line: parsing, errors, exit codes, stdout discipline.

Contract (docs/verbs.md): stdout carries only the path of the artifact a verb wrote; logs
and progress go to stderr; exit 0 when done, 2 on bad usage or bad input (one line saying what and
where), 1 on anything else.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from argparse_dataclass import ArgumentParser

from p2phd.core import nvidia_options

T = TypeVar("T")


class UsageError(Exception):
    """Bad usage or bad input: the verb exits 2 with this one-line message."""


class WriteError(Exception):
    """Writing an output failed for want of space (exit 1): one line naming the file."""


class _OneLineParser(ArgumentParser):
    """argparse prints the whole usage block on error; we print one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _bool_fields(cls: type) -> set[str]:
    flags: set[str] = set()
    for f in dataclasses.fields(cls):
        if f.type in (bool, "bool"):
            flags.update(f.metadata.get("args", [f"--{f.name}"]))
    return flags


def _seed_style_booleans(argv: Sequence[str], bool_flags: set[str]) -> list[str]:
    """Accept the seed's ``--flag True`` / ``--flag False`` spelling beside plain ``--flag``.

    The MindSpore port parses booleans with ast.literal_eval, so its scripts say
    ``--instance_feat True``; users should be able to paste those commands.
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if arg in bool_flags and nxt in ("True", "False", "true", "false"):
            if nxt.lower() == "true":
                out.append(arg)
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def parse_options(cls: type[T], argv: Sequence[str] | None, prog: str, description: str) -> T:
    """Parse argv into the verb's flat option dataclass, then run its ``validate()`` if any.

    NVIDIA pix2pixHD's option names are accepted where they mean what one of the verb's options
    means (core/nvidia_options.py), refused with what to use instead where p2phd has no such
    meaning; they stay out of --help.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _OneLineParser(cls, prog=prog, description=description)
    try:
        nv = nvidia_options.rewrite(cls, argv, prog)
        for note in nv.notes:
            log(note)
        opts = parser.parse_args(_seed_style_booleans(nv.argv, _bool_fields(cls)))
        validate = getattr(opts, "validate", None)
        if validate is not None:
            validate()
        nvidia_options.check_against_run(opts, nv.run_checks, prog)
    except nvidia_options.Refused as exc:
        raise UsageError(str(exc)) from None
    return opts


def verbose() -> bool:
    """--verbose on the command line (or P2PHD_TRACEBACK=1): show tracebacks and library logs."""
    return bool(os.environ.get("P2PHD_TRACEBACK")) or "--verbose" in sys.argv


def _first_line(text: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def run_verb(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a verb's main with the exit-code contract; returns the exit status.

    Without --verbose, library warnings (joblib, h5py, MindSpore...) are silenced and failures are
    one line; --verbose (or P2PHD_TRACEBACK=1) shows both.
    """
    prog = Path(sys.argv[0]).name if argv is None else "p2phd"
    verbose_ = verbose() or "--verbose" in (argv or [])
    env_before = os.environ.get("PYTHONWARNINGS")
    with warnings.catch_warnings():
        if not verbose_:
            warnings.simplefilter("ignore")
            os.environ["PYTHONWARNINGS"] = "ignore"  # the worker processes too (joblib)
        try:
            return _run_main(main, argv, prog, verbose_)
        finally:
            if env_before is None:
                os.environ.pop("PYTHONWARNINGS", None)
            else:
                os.environ["PYTHONWARNINGS"] = env_before


def _run_main(main: Callable, argv: list[str] | None, prog: str, verbose_: bool) -> int:
    """main(argv) with the exit-code contract: 2 on UsageError, 1 (one line) on failure."""
    try:
        return int(main(argv) or 0)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence of a command-line tool
        if verbose_:
            traceback.print_exc()
        if isinstance(exc, WriteError):
            msg = str(exc)
        elif is_disk_full(exc):
            msg = f"no space left on the device ({_first_line(str(exc))})"
        else:
            msg = f"{type(exc).__name__}: {_first_line(str(exc))}"
        print(f"{prog}: failed: {msg}", file=sys.stderr)
        return 1


# -- where outputs go: checked before any work, and disk-full failures named ------------------
_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
# How HDF5 and MindSpore report the same errnos in their own messages.
_DISK_FULL_TEXT = ("No space left", "File too large", "Disk quota exceeded", "errno = 28")


def is_disk_full(exc: BaseException | None) -> bool:
    """True if exc (or an exception it was raised from) says the disk or file-size limit is full."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
            return True
        if any(t in str(exc) for t in _DISK_FULL_TEXT):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn a disk-full failure inside the block into a WriteError naming ``path``."""
    try:
        yield
    except Exception as exc:
        if is_disk_full(exc) and not isinstance(exc, WriteError):
            raise disk_full(path) from exc
        raise


def disk_full(path: str | os.PathLike) -> WriteError:
    return WriteError(
        f"no space left on the device writing {os.fspath(path)} "
        "(nothing was replaced; free some space and run again)"
    )


def check_writable(path: str | os.PathLike, what: str, folder: bool = False) -> Path:
    """Refuse (UsageError) an output path this process cannot create, before any work is done.

    ``path`` is the file (or, with ``folder=True``, the folder) a verb will write; ``what`` names
    the option it came from. Missing parent folders are fine (they are created), but the nearest
    existing one must be a folder we may write in.
    """
    p = Path(path).expanduser()
    if p.is_dir() and not folder:
        raise UsageError(f"{what} {p}: is a folder, expected a file name")
    if p.exists() and folder and not p.is_dir():
        raise UsageError(f"{what} {p}: exists and is not a folder")
    anc = p if (folder and p.is_dir()) else p.parent
    while not os.path.lexists(anc) and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise UsageError(f"{what} {p}: {anc} is not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {p}: cannot write in {anc} (permission denied or read-only)")
    return p


def emit(path: str | os.PathLike) -> None:
    """Print the artifact's path on stdout: the one thing a verb writes there."""
    print(os.fspath(path), flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_input(arg: str) -> str:
    """``-`` reads the path from stdin (so ``bin/prepare ... | bin/render ... -`` works)."""
    if arg != "-":
        return arg
    line = sys.stdin.readline().strip()
    if not line:
        raise UsageError("expected a manifest path on stdin ('-' given) but stdin was empty")
    return line


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield ``<target>.tmp``; rename it onto target only if the block succeeds.

    On any failure the temporary is removed and target is untouched; a full disk is reported as
    a WriteError naming target.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        with writing(target):
            yield tmp
        os.replace(tmp, target)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Atomically write pretty JSON."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike, schema: str, what: str) -> dict[str, Any]:
    """A JSON document of ours (run options, export sidecar), checked: parseable, of the kind
    ``schema`` names (e.g. ``p2phd.run/1``) and not newer than it; UsageError naming the file."""
    kind, _, version = schema.partition("/")
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: damaged {what} ({exc.msg})") from None
    found = str(doc.get("schema", "") if isinstance(doc, dict) else "")
    if not found.startswith(kind + "/"):
        raise UsageError(f"{path}: not a p2phd {what} (schema {found!r})")
    if not found.split("/")[1].isdigit() or int(found.split("/")[1]) > int(version):
        raise UsageError(
            f"{path}: {what} schema {found} is newer than this p2phd reads; upgrade p2phd"
        )
    return doc


def options_dict(opts: Any) -> dict[str, Any]:
    return dataclasses.asdict(opts)


def log_dry_run(opts: Any, plan: str) -> None:
    """--dry_run: the resolved options as JSON, then one line saying what would be written."""
    log(json.dumps(options_dict(opts), indent=2, sort_keys=True))
    log(plan)

"""What every verb shares at the command line: parsing, errors, exit codes, stdout discipline.

Contract (../shared/DESIGN.md): stdout carries only the path of the artifact a verb wrote; logs
and progress go to stderr; exit 0 when done, 2 on bad usage or bad input (one line saying what and
where), 1 on anything else.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from argparse_dataclass import ArgumentParser

T = TypeVar("T")


class UsageError(Exception):
    """Bad usage or bad input: the verb exits 2 with this one-line message."""


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
    """Parse argv into the verb's flat option dataclass, then run its ``validate()`` if any."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _OneLineParser(cls, prog=prog, description=description)
    opts = parser.parse_args(_seed_style_booleans(argv, _bool_fields(cls)))
    validate = getattr(opts, "validate", None)
    if validate is not None:
        validate()
    return opts


def run_verb(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a verb's main with the exit-code contract; returns the exit status."""
    prog = Path(sys.argv[0]).name if argv is None else "p2phd"
    try:
        return int(main(argv) or 0)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence of a command-line tool
        if os.environ.get("P2PHD_TRACEBACK") or "--verbose" in sys.argv:
            traceback.print_exc()
        print(f"{prog}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


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
    """Yield ``<target>.tmp``; rename it onto target only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        tmp.unlink()
    try:
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


def options_dict(opts: Any) -> dict[str, Any]:
    return dataclasses.asdict(opts)

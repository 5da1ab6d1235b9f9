"""Progress on stderr, one home for every verb: a tqdm bar on a terminal, plain lines elsewhere.

A bar redraws itself with carriage returns; written to a file (a log, a pipe, msrun's worker
logs) those redraws run together into one unreadable line. So when stderr is not a terminal, or
under msrun (whose console tails every worker's log), each redraw becomes one whole line without
the bar's block characters, at most one every ``P2PHD_PROGRESS_SECONDS`` (default 10 s), plus a
last one when the work ends.
"""

import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
PERIOD_ENV = "P2PHD_PROGRESS_SECONDS"
# What a plain line says: "render: 12/15 img [00:31<00:07, 0.39img/s]" (and the bar's postfix).
PLAIN_FORMAT = "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}<{remaining}, {rate_fmt}]{postfix}"


class _Lines:
    """A file for tqdm that turns each redraw (``\\r...``) into one whole line."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def plain_period() -> float:
    """Seconds between two plain progress lines."""
    return float(os.environ.get(PERIOD_ENV, "10"))


def is_terminal() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def bar(
    total: int,
    desc: str,
    unit: str = "img",
    *,
    plain: bool | None = None,
    initial: int = 0,
    transient: bool = False,
) -> Any:
    """A tqdm progress object on stderr (``update``, ``write``, ``close``; a context manager).

    ``plain``: whole lines (default: when stderr is not a terminal). ``transient``: work that
    repeats (a training epoch): on a terminal the bar is erased when done; as plain lines it
    says nothing unless it lasts longer than one period.
    """
    from tqdm import tqdm

    if plain is None:
        plain = not is_terminal()
    common = dict(total=total, desc=desc, unit=unit, initial=initial)
    if not plain:
        return tqdm(**common, file=sys.stderr, dynamic_ncols=True, leave=not transient)
    period = plain_period()
    return tqdm(
        **common,
        file=_Lines(sys.stderr),
        bar_format=PLAIN_FORMAT,
        mininterval=period,
        delay=period if transient else 0.0,
    )


def iterate(items: Iterable[T], total: int, desc: str, unit: str = "img") -> Iterator[T]:
    """``items`` as they come, counted on a ``bar``."""
    with bar(total, desc, unit) as b:
        for item in items:
            yield item
            b.update(1)

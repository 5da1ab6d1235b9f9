"""core.bars: progress on stderr as a tqdm bar on a terminal, and as whole plain lines in a file
(a log read later), at most one per period plus the last one."""

import io
import sys

import pytest

from p2phd.core import bars


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(monkeypatch: pytest.MonkeyPatch, stream: io.StringIO, n: int, **kw) -> str:
    monkeypatch.setattr(sys, "stderr", stream)
    with bars.bar(n, "render", **kw) as b:
        for _ in range(n):
            b.update(1)
    return stream.getvalue()


def test_a_file_gets_whole_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(bars.PERIOD_ENV, "0")  # every update may print: each is its own line
    text = _run(monkeypatch, io.StringIO(), 3)
    assert "\r" not in text and "\u2588" not in text  # no redraws, no bar characters
    lines = text.splitlines()
    assert lines[0].startswith("render: 0/3 img [") and lines[-1].startswith("render: 3/3 img [")
    assert all(ln.startswith("render: ") for ln in lines), lines


def test_plain_lines_are_periodic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(bars.PERIOD_ENV, "3600")  # one period longer than the work: first + last
    text = _run(monkeypatch, io.StringIO(), 50)
    assert [ln.split(" img")[0] for ln in text.splitlines()] == ["render: 0/50", "render: 50/50"]
    # a transient bar (a training epoch) says nothing unless it lasts a period
    assert _run(monkeypatch, io.StringIO(), 5, unit="step", transient=True) == ""


def test_a_terminal_gets_the_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _run(monkeypatch, _Tty(), 3)
    assert "\r" in text and "100%|" in text  # tqdm's bar, redrawn in place

"""tests/browser.py: the editor's browser tests find Debian's chromium or Playwright's own, and
on a machine with neither, make setup's note is one line saying how to get one."""

import shutil
from pathlib import Path

import browser
import pytest


def test_no_browser_gives_one_line_naming_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(browser, "DEBIAN", str(tmp_path / "no-chromium"))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "empty-cache"))  # nothing there
    assert browser.find_chromium() is None
    assert browser.main() == 0  # setup goes on
    err = capsys.readouterr().err
    (line,) = err.splitlines()
    assert "apt-get install chromium" in line and "playwright install chromium" in line


def test_debian_chromium_comes_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "chromium"
    fake.write_text("")
    monkeypatch.setattr(browser, "DEBIAN", str(fake))
    assert browser.find_chromium() == str(fake)

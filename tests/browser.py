"""The Chromium that the editor's browser tests drive through Playwright: Debian's ``chromium``
package, else the one Playwright downloaded itself (``playwright install chromium``, into its
cache). With neither, those tests skip with ``MISSING`` as the reason, and ``make setup`` runs
this file, which prints that one line (and exits 0: the rest of the suite needs no browser)."""

import shutil
import sys
from pathlib import Path

DEBIAN = "/usr/bin/chromium"
MISSING = (
    "needs Chromium for the editor's browser tests and found none: install Debian's "
    "(apt-get install chromium) or Playwright's (.venv/bin/playwright install chromium)"
)


def playwright_chromium() -> str | None:
    """The executable Playwright's own download would be, if it is there."""
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            path = pw.chromium.executable_path
    except Exception:  # no playwright, or its driver cannot start: no browser to use either
        return None
    return path if path and Path(path).is_file() else None


def find_chromium() -> str | None:
    """Debian's chromium (or a ``chromium`` on PATH), else Playwright's, else None."""
    for path in (DEBIAN, shutil.which("chromium")):
        if path and Path(path).is_file():
            return path
    return playwright_chromium()


def main() -> int:
    """make setup's note: one line when there is no browser; never a failure."""
    if find_chromium() is None:
        print(f"note: the editor's browser tests will skip: {MISSING}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

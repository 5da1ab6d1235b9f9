"""`bin/prepare` / `python -m p2phd.prepare`: dataset manifest from source folders (code in p2phd.data.prepare)."""

import sys

from p2phd.data.prepare import main

if __name__ == "__main__":
    from p2phd.core.cli import run_verb

    sys.exit(run_verb(main))

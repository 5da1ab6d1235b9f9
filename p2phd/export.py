"""`bin/export` / `python -m p2phd.export`: a run's generator as a MindIR (code in p2phd.deploy.export)."""

import sys

from p2phd.deploy.export import main

if __name__ == "__main__":
    from p2phd.core.cli import run_verb

    sys.exit(run_verb(main))

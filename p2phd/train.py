"""`bin/train` / `python -m p2phd.train`: train a run (code in p2phd.training.train)."""

import sys

from p2phd.training.train import main

if __name__ == "__main__":
    from p2phd.core.cli import run_verb

    sys.exit(run_verb(main))

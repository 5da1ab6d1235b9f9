"""`bin/precompute` / `python -m p2phd.precompute`: a trained encoder's features over a split (code in p2phd.features.precompute)."""

import sys

from p2phd.features.precompute import main

if __name__ == "__main__":
    from p2phd.core.cli import run_verb

    sys.exit(run_verb(main))

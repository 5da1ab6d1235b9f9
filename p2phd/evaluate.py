"""`bin/evaluate` / `python -m p2phd.evaluate`: FID and KID of a render (code in p2phd.metrics.evaluate)."""

import sys

from p2phd.metrics.evaluate import main

if __name__ == "__main__":
    from p2phd.core.cli import run_verb

    sys.exit(run_verb(main))

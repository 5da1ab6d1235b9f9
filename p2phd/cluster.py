"""`bin/cluster` / `python -m p2phd.cluster`: k-means styles per class (code in p2phd.features.cluster)."""

import sys

from p2phd.features.cluster import main

if __name__ == "__main__":
    from p2phd.core.cli import run_verb

    sys.exit(run_verb(main))

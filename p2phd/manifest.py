"""`python -m p2phd.manifest FILE`: print a manifest's attributes (code in p2phd.core.manifest)."""

import sys

from p2phd.core.manifest import main

if __name__ == "__main__":
    sys.exit(main())

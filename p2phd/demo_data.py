"""`python -m p2phd.demo_data`: write the demo's toy Cityscapes tree (code in p2phd.data.demo)."""

import sys

from p2phd.data.demo import main

if __name__ == "__main__":
    sys.exit(main())

"""`bin/render` / `python -m p2phd.render`: render every label map of a split (code in p2phd.rendering.render)."""

import sys

from p2phd.rendering.render import main

if __name__ == "__main__":
    from p2phd.core.cli import run_verb

    sys.exit(run_verb(main))

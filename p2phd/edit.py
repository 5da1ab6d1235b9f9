"""`bin/edit` / `python -m p2phd.edit`: the semantic editor's web server (code in p2phd.editing.edit)."""

import sys

from p2phd.editing.edit import main

if __name__ == "__main__":
    from p2phd.core.cli import run_verb

    sys.exit(run_verb(main))

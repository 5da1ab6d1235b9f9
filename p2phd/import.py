"""`bin/import` / `python -m p2phd.import`: NVIDIA pix2pixHD checkpoints -> a p2phd run folder
(code in p2phd.interop.importer). The module is named after the verb, so load it with importlib."""

import sys

from p2phd.interop.importer import main

if __name__ == "__main__":
    from p2phd.core.cli import run_verb

    sys.exit(run_verb(main))

"""Run a script as if some packages were not installed: ``python tests/without.py NAME[,NAME...]
SCRIPT [ARGS...]``. A finder first on ``sys.meta_path`` refuses those top-level modules with the
ModuleNotFoundError a missing package gives, then SCRIPT runs as ``__main__`` with ARGS."""

import runpy
import sys
from importlib.abc import MetaPathFinder


class Blocker(MetaPathFinder):
    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201 (importlib's)
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


if __name__ == "__main__":
    blocked, script, *args = sys.argv[1:]
    sys.meta_path.insert(0, Blocker(set(blocked.split(","))))
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")

#!/usr/bin/env python3
"""Launcher behind every bin/<verb> symlink: runs p2phd.<verb>.main in the project's venv.

Works from any directory, as an executable and as ``python bin/<verb>`` (which is how msrun
starts its workers).
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
VENV_PY = os.path.join(ROOT, ".venv", "bin", "python")
VERB = os.path.basename(sys.argv[0])

if os.path.exists(VENV_PY) and os.path.realpath(sys.prefix) != os.path.realpath(
    os.path.join(ROOT, ".venv")
):
    os.execv(VENV_PY, [VENV_PY, sys.argv[0], *sys.argv[1:]])

sys.path.insert(0, ROOT)
from importlib import import_module  # noqa: E402

from p2phd.core.cli import run_verb  # noqa: E402

sys.exit(run_verb(import_module(f"p2phd.{VERB}").main))

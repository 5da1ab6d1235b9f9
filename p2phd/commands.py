"""Installed commands: `p2phd-<verb>` (pyproject [project.scripts]) is bin/<verb>: run_verb over
p2phd.<verb>.main, the verb's module imported only when its command runs (`import_`: a keyword)."""

from importlib import import_module

from p2phd.core.cli import run_verb


def _command(verb: str):
    return lambda: run_verb(import_module(f"p2phd.{verb}").main)


prepare, train, precompute, cluster = map(_command, ("prepare", "train", "precompute", "cluster"))
render, import_, export, evaluate = map(_command, ("render", "import", "export", "evaluate"))
edit = _command("edit")

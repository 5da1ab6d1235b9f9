"""Where p2phd's outputs go by default: folders relative to the working directory (never to
where p2phd is installed), and the run folder's options file. Imports nothing of p2phd, so the
command-line layer (cli, nvidia_options) and the run layout (runs) can share it."""

from pathlib import Path

MANIFESTS_DIR = Path("manifests")  # prepare, precompute and cluster manifests
OUTPUTS_DIR = Path("outputs")  # run folders of train and import (--checkpoints_dir)
OPTIONS_FILE = "options.json"  # a run folder's resolved options (core/runs.py)

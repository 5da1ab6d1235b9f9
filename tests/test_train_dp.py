"""Data parallel under msrun on the CPU (backend mccl): 2 ranks train on different shards,
average their gradients and end with bitwise-equal parameters; only rank 0 writes."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from train_util import REPO, TINY, free_port, sample_manifest, stats

pytestmark = pytest.mark.slow  # trains under msrun: not in `make test-fast`


def test_two_ranks_under_msrun(tmp_path: Path) -> None:
    m = sample_manifest(tmp_path)
    venv_bin = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{venv_bin}:{os.environ.get('PATH', '')}")  # msrun runs `python`
    logs = tmp_path / "logs"
    cmd = [
        str(venv_bin / "msrun"),
        "--worker_num=2",
        "--local_worker_num=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        f"--log_dir={logs}",
        "--join=True",
        str(REPO / "bin" / "train"),
        str(m),
        "--name",
        "dp",
        *TINY,
        "--no_vgg_loss",
        "--niter",
        "1",
        "--niter_decay",
        "1",
        "--print_freq",
        "2",
    ]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    worker = {r: (logs / f"worker_{r}.log").read_text() for r in (0, 1)}
    assert p.returncode == 0, worker[0][-3000:] + worker[1][-3000:]

    digests = {r: re.findall(r"rank \d/2 parameter digest (\w+)", worker[r]) for r in (0, 1)}
    assert len(digests[0]) == 1 and digests[0] == digests[1]
    for epoch in (1, 2):
        shard = {
            r: re.findall(rf"rank \d/2 epoch {epoch} samples: (\S+)", worker[r])[0].split(",")
            for r in (0, 1)
        }
        # 8 frames on 2 ranks: 4 different frames each per epoch, together all 8
        assert len(shard[0]) == len(shard[1]) == 4
        assert not set(shard[0]) & set(shard[1]) and len(set(shard[0]) | set(shard[1])) == 8
    assert "outputs/dp" in worker[0] and "outputs/dp" not in worker[1]  # only rank 0 prints/writes
    run = tmp_path / "outputs" / "dp"
    assert [ln["step"] for ln in stats(run)] == [2, 4, 6, 8]  # 4 steps per epoch per rank
    assert (run / "state" / "step-00000008").is_dir()

"""bin/train --tensorboard: only rank 0 writes events, --no_html writes no page, and `make ... TB=1`
passes the flag. The events and the page's loss curves of a real run, read back by TensorBoard's
own loader against stats.jsonl across a kill and a resume, are checked on the resumed run of
tests/test_train_resume.py (train_util.check_board)."""

from pathlib import Path

import numpy as np
import pytest

from p2phd.training import train
from p2phd.training.progress import Progress


@pytest.mark.parametrize("is_main, no_html", [(False, False), (True, True)])
def test_only_rank_0_writes_and_no_html(tmp_path: Path, is_main: bool, no_html: bool) -> None:
    """Other msrun ranks open no event file; --no_html writes no page (TensorBoard still)."""
    o = train.TrainOptions(manifest="m.h5", name="r", tensorboard=True, no_html=no_html)
    p = Progress(o, tmp_path, is_main, steps_per_epoch=1)
    p.start(0)
    batch = {"label": np.zeros((1, 8, 8), np.int32), "photo": np.zeros((1, 3, 8, 8), np.float32)}
    p.display(1, 1, batch, np.zeros((1, 3, 8, 8), np.float32))
    p.close()
    assert (tmp_path / "tensorboard").exists() == is_main
    assert not (tmp_path / "web").exists()


def test_make_tb_1_trains_with_tensorboard() -> None:
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    plan = [
        subprocess.run(
            ["make", "-n", "train-512p", "DATA=/data/cityscapes", *tb],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout  # fmt: skip
        for tb in ([], ["TB=1"])
    ]
    assert "--tensorboard" not in plan[0] and "bin/train" in plan[0]
    assert plan[1].count("--tensorboard") == 1

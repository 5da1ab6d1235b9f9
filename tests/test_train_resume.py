"""Exact resume: N steps in one run == N/2 steps, kill -9, rerun the same command; and what the
user watches survives it: TensorBoard's events (each logged step and picture once, against
stats.jsonl) and the loss curves of the training page, redrawn."""

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from train_util import (
    TINY,
    TRAIN,
    check_board,
    here,
    sample_manifest,
    state_arrays,
    stats,
    train,
)

from p2phd.core import runs

pytestmark = pytest.mark.slow  # trains (five times): not in `make test-fast`

# 3 epochs of 8 samples = 24 steps; lr decays in epoch 3; E trains jointly; the image pool is on,
# so its contents and RNG must survive the kill too.
N = 24
OPTS = [
    *TINY,
    "--no_vgg_loss",
    "--instance_feat",
    "--pool_size",
    "3",
    "--niter",
    "1",
    "--niter_decay",
    "2",
    "--save_latest_freq",
    "4",
    "--print_freq",
    "2",
    "--display_freq",
    "8",
    "--keep",
    "2",
]
# The resumed run also writes TensorBoard events (its pictures at every --display_freq, 8 steps);
# run a without them: the two runs' numbers must not differ for it either.
B_OPTS = [*OPTS, "--tensorboard"]


def _latest_step(run: Path) -> int:
    pointer = run / "state" / "latest"
    if not pointer.exists():
        return 0
    try:
        return json.loads(
            (run / "state" / pointer.read_text().strip() / "progress.json").read_text()
        )["step"]
    except (OSError, ValueError):
        return 0


def _without_time(lines: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in ln.items() if k not in ("sec_per_step", "images_per_sec")} for ln in lines
    ]


def test_kill_and_resume_matches_one_run(tmp_path: Path) -> None:
    m = sample_manifest(tmp_path)
    # run a, the rerun and the continuation in this process (train_util.here); b is killed and
    # resumed in processes of its own, as a user's run is
    a = here("train", [m, "--name", "a", *OPTS], tmp_path)
    assert a.returncode == 0, a.stderr[-2000:]
    assert a.stdout.strip() == "outputs/a"

    cmd = [str(TRAIN), str(m), "--name", "b", *B_OPTS]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run_b = tmp_path / "outputs" / "b"
    deadline = time.time() + 300
    while _latest_step(run_b) < N // 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    killed_at = _latest_step(run_b)
    assert N // 2 <= killed_at < N
    # Lose the newest state too, as a kill while it was written would (latest still names the
    # one before): the steps logged and shown since are certainly redone on resume. (The kill
    # may land mid-prune: the previous state is the newest complete one below latest.)
    latest = runs.latest_state(run_b)
    older = [
        p.name
        for p in sorted(latest.parent.glob("step-*"))
        if p.name < latest.name and (p / "progress.json").is_file()
    ]
    shutil.rmtree(latest)
    (latest.parent / runs.LATEST).write_text(older[-1] + "\n")
    resumed_at = _latest_step(run_b)
    assert resumed_at == killed_at - 4 and any(ln["step"] > resumed_at for ln in stats(run_b))
    curves = run_b / "web" / "losses.png"
    drawn_before = curves.read_bytes()

    b = train([m, "--name", "b", *B_OPTS], tmp_path)
    assert b.returncode == 0, b.stderr[-2000:]
    assert "resuming outputs/b at epoch" in b.stderr and f", step {resumed_at}\n" in b.stderr

    run_a = tmp_path / "outputs" / "a"
    assert _without_time(stats(run_a)) == _without_time(stats(run_b))
    assert len(stats(run_a)) == N // 2
    sa = state_arrays(run_a / "state" / f"step-{N:08d}" / "state.ckpt")
    sb = state_arrays(run_b / "state" / f"step-{N:08d}" / "state.ckpt")
    assert sa.keys() == sb.keys()
    assert any(
        k.startswith("optG.moment1.netE.") for k in sa
    )  # E and Adam moments are in the state
    for k in sa:
        # the same kernels on the same data in the same order: equal in practice; atol 1e-6
        # (weights ~1e-1: a few float32 ulp) for a oneDNN reduction split differently in the
        # resumed process; a lost state (RNG, pool, moments) differs by >= 1e-4 after 12 steps
        np.testing.assert_allclose(sa[k], sb[k], rtol=0, atol=1e-6, err_msg=k)
    # only the newest --keep states remain
    assert sorted(p.name for p in (run_b / "state").glob("step-*")) == [
        f"step-{N - 4:08d}",
        f"step-{N:08d}",
    ]
    # TensorBoard: every step logged (2, 4, ... 24) and shown (8, 16, 24) once, the redone ones
    # included; the page's loss curves redrawn at the last step, above the pictures
    check_board(run_b, [8, 16, 24])
    page = (run_b / "web" / "index.html").read_text()
    assert page.index(f'<img src="losses.png?step={N}"') < page.index("epoch003_input_label.jpg")
    assert curves.read_bytes().startswith(b"\x89PNG") and curves.read_bytes() != drawn_before

    # rerunning a finished run does nothing; raising --niter_decay continues it
    again = here("train", [m, "--name", "b", *B_OPTS], tmp_path)
    assert again.returncode == 0 and "already trained" in again.stderr
    longer = list(B_OPTS)
    longer[longer.index("--niter_decay") + 1] = "3"
    more = here("train", [m, "--name", "b", *longer], tmp_path)
    assert more.returncode == 0, more.stderr[-2000:]
    assert stats(run_b)[-1]["step"] == N + 8 and stats(run_b)[-1]["epoch"] == 4
    check_board(run_b, [8, 16, 24, 32])  # the continued run's events append

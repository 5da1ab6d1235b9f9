"""The 512p -> 1024p recipe: --load_pretrain copies exactly the global trunk and D's scales 0-1,
--niter_fix_global keeps the trunk fixed for its epochs and then trains all of G with a fresh
Adam, and the learning rate follows NVIDIA's schedule at every epoch boundary."""

import numpy as np
import pytest
from train_util import N_TRAIN, state_arrays, stats, system_chain

from p2phd.training import schedule


@pytest.mark.slow  # trains (the system chain, shared with test_system.py)
def test_512p_to_1024p() -> None:
    """The system chain's 1024p run (tests/train_util.py, built once per session): bin/train
    --netG local --num_D 3 --load_pretrain <its 512p run (global, 2 D scales)> --niter 2
    --niter_decay 2 --niter_fix_global 1, on 4 frames per epoch (ngf 8 -> 4, as 16 -> 8)."""
    chain = system_chain()
    src_run = chain["512p"]
    src = state_arrays(src_run / "state" / f"step-{N_TRAIN:08d}" / "state.ckpt")  # its last

    stderr = (chain["work"] / "1024p.stderr").read_text()
    report = [ln for ln in stderr.splitlines() if ln.startswith("load_pretrain")]
    assert len(report) == 1
    assert (
        "(netD.scale0, netD.scale1, netG.model); new: netD.scale2, netG.model1_1, netG.model1_2"
        in report[0]
    )

    run = chain["1024p"]
    e1, e2, e4 = N_TRAIN, 2 * N_TRAIN, 4 * N_TRAIN  # the steps at the end of epochs 1, 2, 4
    states = {s: state_arrays(run / "state" / f"step-{s:08d}" / "state.ckpt") for s in (e1, e2, e4)}
    trunk = [k for k in states[e1] if k.startswith("netG.model.")]
    local = [k for k in states[e1] if k.startswith("netG.model1_")]
    assert trunk and local and all(k in src for k in trunk)
    # epoch 1: the trunk is exactly the 512p run's, the enhancer trains
    for k in trunk:
        np.testing.assert_array_equal(states[e1][k], src[k], err_msg=k)
    # epoch 2 on: the whole generator trains
    assert all(not np.array_equal(states[e2][k], src[k]) for k in trunk if k.endswith("weight"))
    assert any(not np.array_equal(states[e2][k], states[e1][k]) for k in local)
    # a fresh Adam over all of G at epoch 2 (its step count restarts), D's keeps counting
    assert states[e1]["optG.global_step"].item() == e1
    assert states[e2]["optG.global_step"].item() == e2 - e1
    assert states[e4]["optG.global_step"].item() == e4 - e1
    assert states[e4]["optD.global_step"].item() == e4
    # ... while the schedule continues where it is: lr per epoch as NVIDIA's (one line per epoch)
    lrs = [ln["lr"] for ln in stats(run)]
    expected = [schedule.lr_at(e, 2e-4, 2, 2) for e in (1, 2, 3, 4)]
    assert lrs == expected == [2e-4, 2e-4, 2e-4, 1e-4]
    assert np.isclose(states[e4]["optG.learning_rate"], 1e-4)  # stored in float32: rel 6e-8


def test_schedule_semantics() -> None:
    # NVIDIA: epochs 1..niter+1 at lr, then -lr/niter_decay per epoch; the last epoch at lr/niter_decay
    lr = [schedule.lr_at(e, 2e-4, 100, 100) for e in range(1, 201)]
    assert lr[:101] == [2e-4] * 101
    assert np.isclose(lr[101], 1.98e-4) and np.isclose(lr[199], 2e-6)  # float64 arithmetic
    assert schedule.global_fixed(10, 10) and not schedule.global_fixed(11, 10)
    assert not schedule.global_fixed(1, 0)

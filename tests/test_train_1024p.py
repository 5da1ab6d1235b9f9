"""The 512p -> 1024p recipe: --load_pretrain copies exactly the global trunk and D's scales 0-1,
--niter_fix_global keeps the trunk fixed for its epochs and then trains all of G with a fresh
Adam, and the learning rate follows NVIDIA's schedule at every epoch boundary."""

from pathlib import Path

import numpy as np
from train_util import TINY, sample_manifest, state_arrays, stats, train

from p2phd.training import schedule

BASE = [*TINY, "--no_vgg_loss", "--print_freq", "8", "--save_latest_freq", "8", "--keep", "10"]


def _arg(args: list[str], flag: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(flag) + 1] = value
    return out


def test_512p_to_1024p(tmp_path: Path) -> None:
    m = sample_manifest(tmp_path)
    p = train(
        [m, "--name", "g512", *_arg(BASE, "--ngf", "16"), "--niter", "1", "--niter_decay", "0"],
        tmp_path,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    src = state_arrays(tmp_path / "outputs" / "g512" / "state" / "step-00000008" / "state.ckpt")

    p = train(
        [
            m,
            "--name",
            "g1024",
            *BASE,
            "--netG",
            "local",
            "--num_D",
            "3",
            "--load_pretrain",
            "outputs/g512",
            "--niter",
            "2",
            "--niter_decay",
            "2",
            "--niter_fix_global",
            "1",
        ],
        tmp_path,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    report = [ln for ln in p.stderr.splitlines() if ln.startswith("load_pretrain")]
    assert len(report) == 1
    assert (
        "(netD.scale0, netD.scale1, netG.model); new: netD.scale2, netG.model1_1, netG.model1_2"
        in report[0]
    )

    run = tmp_path / "outputs" / "g1024"
    states = {s: state_arrays(run / "state" / f"step-{s:08d}" / "state.ckpt") for s in (8, 16, 32)}
    trunk = [k for k in states[8] if k.startswith("netG.model.")]
    local = [k for k in states[8] if k.startswith("netG.model1_")]
    assert trunk and local and all(k in src for k in trunk)
    # epoch 1: the trunk is exactly the 512p run's, the enhancer trains
    for k in trunk:
        np.testing.assert_array_equal(states[8][k], src[k], err_msg=k)
    # epoch 2 on: the whole generator trains
    assert all(not np.array_equal(states[16][k], src[k]) for k in trunk if k.endswith("weight"))
    assert any(not np.array_equal(states[16][k], states[8][k]) for k in local)
    # a fresh Adam over all of G at epoch 2 (its step count restarts), D's keeps counting
    assert states[8]["optG.global_step"].item() == 8
    assert states[16]["optG.global_step"].item() == 8
    assert states[32]["optG.global_step"].item() == 24
    assert states[32]["optD.global_step"].item() == 32
    # ... while the schedule continues where it is: lr per epoch as NVIDIA's
    lrs = [ln["lr"] for ln in stats(run)]
    expected = [schedule.lr_at(e, 2e-4, 2, 2) for e in (1, 2, 3, 4)]
    assert lrs == expected == [2e-4, 2e-4, 2e-4, 1e-4]
    assert np.isclose(states[32]["optG.learning_rate"], 1e-4)


def test_schedule_semantics() -> None:
    # NVIDIA: epochs 1..niter+1 at lr, then -lr/niter_decay per epoch; the last epoch at lr/niter_decay
    lr = [schedule.lr_at(e, 2e-4, 100, 100) for e in range(1, 201)]
    assert lr[:101] == [2e-4] * 101
    assert np.isclose(lr[101], 1.98e-4) and np.isclose(lr[199], 2e-6)
    assert schedule.global_fixed(10, 10) and not schedule.global_fixed(11, 10)
    assert not schedule.global_fixed(1, 0)

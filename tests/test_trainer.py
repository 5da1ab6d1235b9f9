# ruff: noqa: I001  (p2phd must be imported before MindSpore: it sets the oneDNN/GLOG env)
"""The training step in-process: modes that the subprocess tests of bin/train do not reach."""

import dataclasses

import numpy as np
import pytest

import p2phd  # noqa: F401
import mindspore as ms
from mindspore import nn

from p2phd.training.train import TrainOptions
from p2phd.training.trainer import Trainer
from train_util import assert_every_parameter_trains, trainable

pytestmark = pytest.mark.slow  # a compiled training step: not in `make test-fast`


@pytest.fixture(autouse=True)
def _graph_cpu():
    ms.set_context(mode=ms.GRAPH_MODE)


def _batch(rng: np.random.Generator, h: int = 32, w: int = 64) -> dict:
    """An RGB-input batch (--label_nc 0 --no_instance: the label is a picture in [-1, 1])."""
    inst = np.zeros((1, h, w), np.int32)
    return {
        "label": rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32),
        "inst": inst,
        "pool": inst,
        "photo": rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32),
        "feat": None,
    }


def test_batch_norm_local_bce_rgb_step_trains_every_parameter() -> None:
    """One compiled Trainer step in the modes no other training test reaches, together: --norm
    batch (running statistics move during a step, so BatchNorm is in training mode), the local
    enhancer with a 3-scale D, --no_lsgan (BCE through D's sigmoid) and RGB input without
    instances (--label_nc 0 --no_instance); every gradient of G and D finite and non-zero."""
    o = dataclasses.replace(
        TrainOptions(),
        label_nc=0,
        no_instance=True,
        netG="local",
        ngf=4,
        ndf=4,
        n_downsample_global=2,
        n_blocks_global=1,
        n_blocks_local=1,
        num_D=3,
        no_lsgan=True,
        norm="batch",
        no_vgg_loss=True,
        name="bn",
    )
    trainer = Trainer(o, max_instances=1)
    trainer.set_phase(fixed_global=False)
    means = {
        n: p.asnumpy().copy() for n, p in trainer.G.parameters_and_names() if "moving_mean" in n
    }
    assert means, "the generator has no BatchNorm layer"
    before = trainable(trainer.cells())
    result = trainer.step(_batch(np.random.default_rng(0)), step=0)
    moved = [
        n
        for n, p in trainer.G.parameters_and_names()
        if n in means and not np.array_equal(p.asnumpy(), means[n])
    ]
    assert moved, "BatchNorm running means did not move: the step ran in inference mode"
    assert np.isfinite([result.G_GAN, result.D_real, result.D_fake]).all()
    # --no_lsgan: each scale's patch map passes through a sigmoid before BCE
    assert sum(isinstance(c, nn.Sigmoid) for _, c in trainer.D.cells_and_names()) == o.num_D
    # the compiled G and D steps: every gradient finite and non-zero, on the Trainer's own graphs
    # (global+E with the VGG loss: tests/test_lowmem_conv.py)
    assert_every_parameter_trains(before, trainer.cells())

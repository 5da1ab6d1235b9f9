# ruff: noqa: I001  (p2phd must be imported before MindSpore: it sets the oneDNN/GLOG env)
"""The training step in-process: modes that the subprocess tests of bin/train do not reach."""

import dataclasses

import numpy as np
import pytest

import p2phd  # noqa: F401
import mindspore as ms

from p2phd.training.train import TrainOptions
from p2phd.training.trainer import Trainer
from train_util import assert_every_parameter_trains, trainable

pytestmark = pytest.mark.slow  # a compiled training step: not in `make test-fast`


@pytest.fixture(autouse=True)
def _graph_cpu():
    ms.set_context(mode=ms.GRAPH_MODE)


def _batch(rng: np.random.Generator, label_nc: int, h: int = 32, w: int = 64) -> dict:
    inst = rng.integers(0, 3, (1, h, w)).astype(np.int32)
    return {
        "label": rng.integers(0, label_nc, (1, h, w)).astype(np.int32),
        "inst": inst,
        "pool": inst,
        "photo": rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32),
        "feat": None,
    }


def test_batch_norm_trains_with_batch_statistics() -> None:
    """--norm batch: running statistics move during a step, so BatchNorm is in training mode."""
    o = dataclasses.replace(
        TrainOptions(),
        label_nc=5,
        ngf=4,
        ndf=4,
        n_downsample_global=2,
        n_blocks_global=1,
        norm="batch",
        no_vgg_loss=True,
        name="bn",
    )
    trainer = Trainer(o, max_instances=3)
    trainer.set_phase(fixed_global=False)
    means = {
        n: p.asnumpy().copy() for n, p in trainer.G.parameters_and_names() if "moving_mean" in n
    }
    assert means, "the generator has no BatchNorm layer"
    before = trainable(trainer.cells())
    result = trainer.step(_batch(np.random.default_rng(0), 5), step=0)
    moved = [
        n
        for n, p in trainer.G.parameters_and_names()
        if n in means and not np.array_equal(p.asnumpy(), means[n])
    ]
    assert moved, "BatchNorm running means did not move: the step ran in inference mode"
    assert np.isfinite([result.G_GAN, result.D_real, result.D_fake]).all()
    # the compiled G and D steps with batch norm: every gradient finite and non-zero (the
    # graph-mode check of tests/test_nets_models.py, on the Trainer's own graphs)
    assert_every_parameter_trains(before, trainer.cells())

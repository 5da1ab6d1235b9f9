"""Networks: exact parameter counts, shapes, 512p -> 1024p loading. (Graph-mode training steps
of every mode: tests/test_trainer.py, tests/test_lowmem_conv.py.)"""
# ruff: noqa: I001  (p2phd must be imported before MindSpore: it sets the oneDNN/GLOG env)

import dataclasses

import numpy as np
import pytest

import p2phd  # noqa: F401  (env fixes before MindSpore)
import mindspore as ms
from mindspore import Tensor

from p2phd.core import checkpoint
from p2phd import nets
from p2phd.core.options import DataOptions, ModelOptions


@dataclasses.dataclass
class Opts(DataOptions, ModelOptions):
    pass


@pytest.fixture(autouse=True)
def graph_mode():
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")


def small(**kw) -> Opts:
    base = dict(label_nc=5, ngf=8, ndf=8, nef=4, n_blocks_global=2, n_blocks_local=1)
    base.update(kw)
    return Opts(**base)


# ---------------------------------------------------------------- counts (build only)


def test_parameter_counts_match_reference():
    o512 = Opts()
    assert nets.g_input_nc(o512) == 36 and nets.d_input_nc(o512) == 39
    assert nets.describe(o512) == {"G": 182_546_755, "D": 5_603_202}
    feat = Opts(instance_feat=True)
    assert nets.g_input_nc(feat) == 39
    assert nets.describe(feat) == {"G": 182_556_163, "D": 5_603_202, "E": 788_803}
    o1024 = Opts(netG="local", ngf=32, num_D=3)
    assert nets.describe(o1024) == {"G": 182_857_059, "D": 8_404_803}
    assert nets.count_parameters(nets.build_discriminator(Opts(label_nc=38))) == 5_609_346


def test_input_channels_for_each_mode():
    assert nets.g_input_nc(Opts(no_instance=True)) == 35
    assert nets.g_input_nc(Opts(label_nc=0, input_nc=3, no_instance=True)) == 3
    assert nets.d_input_nc(Opts(label_nc=0, input_nc=3, no_instance=True)) == 6
    assert nets.g_input_nc(Opts(label_feat=True)) == 39
    assert nets.d_input_nc(Opts(label_feat=True)) == 39  # features never go to D


# ---------------------------------------------------------------- shapes (§13 scaled down)


def test_generator_and_discriminator_shapes():
    o = small(n_blocks_global=1)
    g = nets.build_generator(o)
    x = Tensor(np.random.default_rng(0).standard_normal((1, 6, 64, 128)).astype(np.float32))
    bottleneck = g.model[:16](x)  # pad/conv/norm/relu + 4 x (conv/norm/relu)
    assert bottleneck.shape == (1, 8 * 16, 4, 8)
    out = g(x).asnumpy()
    assert out.shape == (1, 3, 64, 128) and np.abs(out).max() <= 1.0
    d = nets.build_discriminator(o)
    preds = d(Tensor(np.zeros((1, nets.d_input_nc(o), 64, 128), np.float32)))
    assert len(preds) == 2 and all(len(p) == o.n_layers_D + 2 for p in preds)
    full = [tuple(t.shape[1:]) for t in preds[0]]
    assert full == [(8, 33, 65), (16, 17, 33), (32, 9, 17), (64, 10, 18), (1, 11, 19)]
    assert tuple(preds[1][-1].shape[1:]) == (1, 7, 11)  # next scale: input pooled to 32x64


def test_local_enhancer_and_encoder_shapes():
    o = small(netG="local", ngf=4, instance_feat=True)
    g = nets.build_generator(o)
    assert g(Tensor(np.zeros((2, nets.g_input_nc(o), 64, 96), np.float32))).shape == (2, 3, 64, 96)
    e = nets.build_encoder(o, 3)
    index = np.zeros((2, 32, 48), np.int32)
    index[:, :, 20:] = 1
    index[1, 10:, :] = 2
    image = np.random.default_rng(1).uniform(-1, 1, (2, 3, 32, 48)).astype(np.float32)
    feat = e(Tensor(image), Tensor(index)).asnumpy()
    assert feat.shape == (2, 3, 32, 48)
    for b in range(2):
        for i in np.unique(index[b]):
            vals = feat[b][:, index[b] == i]
            # one mean per instance broadcast back; atol: the float32 mean computed per pixel block
            np.testing.assert_allclose(vals, vals[:, :1].repeat(vals.shape[1], 1), atol=1e-6)


def test_no_ganfeat_discriminator_returns_patch_maps_only():
    o = small()
    o.no_ganFeat_loss = True  # type: ignore[attr-defined]
    d = nets.build_discriminator(o)
    preds = d(Tensor(np.zeros((1, nets.d_input_nc(o), 32, 32), np.float32)))
    assert [len(p) for p in preds] == [1, 1] and preds[0][0].shape == (1, 1, 7, 7)


# ---------------------------------------------------------------- loading by name


def test_512p_generator_loads_into_1024p(tmp_path):
    g512 = nets.build_generator(small(ngf=8))
    g1024 = nets.build_generator(small(netG="local", ngf=4))
    path = tmp_path / "g.ckpt"
    checkpoint.save(path, {"netG": g512}, {"epoch": 3})
    report = checkpoint.load(path, {"netG": g1024})
    assert not report.mismatched
    assert report.missing and all(
        n.startswith(("netG.model1_1.", "netG.model1_2.")) for n in report.missing
    )
    out_conv = len(g512.model) - 2  # the 7x7 output conv (model.38 at 9 blocks), before tanh
    assert sorted(report.unused) == [f"netG.model.{out_conv}.bias", f"netG.model.{out_conv}.weight"]
    src = dict(g512.parameters_and_names())
    for name, p in g1024.parameters_and_names():
        if name.startswith("model."):
            np.testing.assert_array_equal(p.asnumpy(), src[name].asnumpy())


def test_two_scale_discriminator_loads_into_three(tmp_path):
    d2, d3 = nets.build_discriminator(small(num_D=2)), nets.build_discriminator(small(num_D=3))
    checkpoint.save(tmp_path / "d.ckpt", {"netD": d2})
    report = checkpoint.load(tmp_path / "d.ckpt", {"netD": d3})
    assert report.missing and all(n.startswith("netD.scale2.") for n in report.missing)
    assert not report.unused and not report.mismatched

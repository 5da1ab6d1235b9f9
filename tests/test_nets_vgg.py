"""load_vgg19 reads the model zoo's vgg19.ckpt layout (with or without conv biases)."""
# ruff: noqa: I001  (p2phd must be imported before MindSpore: it sets the oneDNN/GLOG env)

import numpy as np
import pytest

import p2phd  # noqa: F401  (env fixes before MindSpore)
import mindspore as ms
from mindspore import Tensor

from p2phd.core.cli import UsageError
from p2phd.nets.layers import count_parameters
from p2phd.nets.vgg import VGG19Features, load_vgg19
from train_util import VGG_CONVS


@pytest.fixture(autouse=True)
def graph_mode():
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")


def _write_zoo_ckpt(path, rng, with_bias: bool, prefix: str = "") -> dict:
    """A random checkpoint named as the model zoo's VGG19 (plus the rest of that file's entries)."""
    entries, values = [], {}
    for i, (co, ci) in VGG_CONVS.items():
        values[f"layers.{i}.weight"] = (rng.standard_normal((co, ci, 3, 3)) * 0.05).astype(
            np.float32
        )
        if with_bias:
            values[f"layers.{i}.bias"] = rng.standard_normal(co).astype(np.float32)
    extra = {
        "layers.30.weight": np.ones((512, 512, 3, 3), np.float32),  # conv5_2: not used
        "classifier.0.weight": np.ones((8, 4), np.float32),
        "moments.layers.0.weight": np.ones((64, 3, 3, 3), np.float32),
    }
    for name, arr in {**values, **extra}.items():
        stored = name if name.startswith("moments.") else prefix + name
        entries.append({"name": stored, "data": Tensor(arr)})
    ms.save_checkpoint(entries, str(path))
    return values


def _np_conv3_relu(x, w, b):
    n, ci, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd), np.float64)
    for ky in range(3):
        for kx in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, ky : ky + h, kx : kx + wd], w[:, :, ky, kx])
    return np.maximum(out + b.reshape(1, -1, 1, 1), 0)


@pytest.mark.parametrize("with_bias,prefix", [(False, ""), (True, "network.")])
def test_load_zoo_layout(tmp_path, with_bias, prefix):
    rng = np.random.default_rng(0)
    path = tmp_path / "vgg19.ckpt"
    values = _write_zoo_ckpt(path, rng, with_bias, prefix)
    vgg = load_vgg19(path)
    assert count_parameters(vgg) == 0 and len(list(vgg.get_parameters())) == 26  # frozen
    for i in VGG_CONVS:
        conv = vgg.conv_at(i)
        np.testing.assert_array_equal(conv.weight.asnumpy(), values[f"layers.{i}.weight"])
        bias = values.get(f"layers.{i}.bias", np.zeros(VGG_CONVS[i][0], np.float32))
        np.testing.assert_array_equal(conv.bias.asnumpy(), bias)
    x = rng.uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    h1 = vgg(Tensor(x))[0].asnumpy()
    b0 = values.get("layers.0.bias", np.zeros(64, np.float32))
    # float32 3x3x3 conv (27 products of values < 1 with weights ~0.3) vs NumPy: ~1e-7 error
    np.testing.assert_allclose(h1, _np_conv3_relu(x, values["layers.0.weight"], b0), atol=1e-5)


def test_vgg19_feature_parameter_count():
    net = VGG19Features()
    assert sum(int(np.prod(p.shape)) for p in net.get_parameters()) == 12_944_960


def test_missing_or_wrong_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError) as err:
        load_vgg19(tmp_path / "nope.ckpt")
    message = str(err.value)
    assert "\n" not in message and "download.mindspore.cn" in message and "--no_vgg_loss" in message
    ms.save_checkpoint(
        [{"name": "other.weight", "data": Tensor(np.ones(2, np.float32))}],
        str(tmp_path / "other.ckpt"),
    )
    with pytest.raises(UsageError):
        load_vgg19(tmp_path / "other.ckpt")

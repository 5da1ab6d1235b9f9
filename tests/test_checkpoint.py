"""p2phd.checkpoint: prefixed names, meta, atomic writes, partial loads, optimizer state."""
# ruff: noqa: I001  (p2phd must be imported before MindSpore: it sets the oneDNN/GLOG env)

import os

import numpy as np
import pytest

import p2phd  # noqa: F401  (env fixes before MindSpore)
import mindspore as ms
from mindspore import Tensor, nn

from p2phd.core import checkpoint
from p2phd.nets.layers import conv, prefix_parameter_names


@pytest.fixture(autouse=True)
def graph_mode():
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")


class Tiny(nn.Cell):
    def __init__(self, cin=3, cout=4):
        super().__init__()
        self.model = nn.SequentialCell([conv(cin, cout, 3, 1, 1), nn.ReLU(), conv(cout, 2, 1)])

    def construct(self, x):
        return self.model(x)


def _params(cell):
    return {n: p.asnumpy().copy() for n, p in cell.parameters_and_names()}


def test_round_trip_with_meta_and_names(tmp_path):
    a, b = Tiny(), Tiny(5, 6)
    path = tmp_path / "G.ckpt"
    meta = {"epoch": 3, "step": 1200, "lr": 2e-4, "name": "run", "done": False, "sizes": [1, 2]}
    checkpoint.save(path, {"netG": a, "netE": b}, meta)
    assert sorted(os.listdir(tmp_path)) == ["G.ckpt"]  # no temporary file left behind
    stored = ms.load_checkpoint(str(path))
    assert "netG.model.0.weight" in stored and "netE.model.2.bias" in stored
    assert checkpoint.read_meta(path) == meta
    a2, b2 = Tiny(), Tiny(5, 6)
    report = checkpoint.load(path, {"netG": a2, "netE": b2})
    assert report.complete and not report.unused and len(report.loaded) == 8
    for src, dst in ((a, a2), (b, b2)):
        for name, value in _params(src).items():
            np.testing.assert_array_equal(value, _params(dst)[name])


def test_partial_load_reports_instead_of_raising(tmp_path):
    path = tmp_path / "x.ckpt"
    checkpoint.save(path, {"netG": Tiny(3, 4)})
    target = Tiny(3, 8)  # model.0 has other out channels, model.2 other in channels
    before = _params(target)
    report = checkpoint.load(path, {"netG": target, "netD": Tiny()})
    assert sorted(report.mismatched) == [
        "netG.model.0.bias",
        "netG.model.0.weight",
        "netG.model.2.weight",
    ]
    assert report.loaded == ["netG.model.2.bias"]
    assert len(report.missing) == 4 and all(n.startswith("netD.") for n in report.missing)
    assert report.unused == [] and not report.complete
    np.testing.assert_array_equal(_params(target)["model.0.weight"], before["model.0.weight"])


def test_failed_save_keeps_the_old_file(tmp_path):
    path = tmp_path / "G.ckpt"
    checkpoint.save(path, {"netG": Tiny()}, {"epoch": 1})
    with pytest.raises(ValueError):
        checkpoint.save(path, {"netG": Tiny()}, {"bad.key": 1})
    assert checkpoint.read_meta(path) == {"epoch": 1}
    assert sorted(os.listdir(tmp_path)) == ["G.ckpt"]


def test_adam_state_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((1, 3, 8, 8)).astype(np.float32))

    def make():
        net = Tiny()
        prefix_parameter_names(net, "netG")
        return net, nn.Adam(net.trainable_params(), learning_rate=2e-4, beta1=0.5, beta2=0.999)

    def loss_fn(net):
        def fn(x):
            return (net(x) ** 2).mean()

        return fn

    net, opt = make()
    step = ms.value_and_grad(loss_fn(net), None, opt.parameters)
    for _ in range(2):
        _, grads = step(x)
        opt(grads)
    path = tmp_path / "state.ckpt"
    checkpoint.save(path, {"netG": net, "optG": opt})
    names = set(ms.load_checkpoint(str(path)))
    assert "optG.moment1.netG.model.0.weight" in names and "optG.global_step" in names
    assert not any(n.startswith("optG.netG.") for n in names)  # weights are not stored twice

    net2, opt2 = make()
    report = checkpoint.load(path, {"netG": net2, "optG": opt2})
    assert report.complete and not report.unused
    assert int(opt2.global_step.asnumpy().reshape(-1)[0]) == 2
    np.testing.assert_array_equal(opt2.moment2[0].asnumpy(), opt.moment2[0].asnumpy())
    # a float32 scalar saved and loaded: equal (allclose's 1e-7 would also pass one rounding)
    np.testing.assert_allclose(opt2.beta1_power.asnumpy(), opt.beta1_power.asnumpy())
    # one more step from the restored state equals one more step of the original
    for n_, o_ in ((net, opt), (net2, opt2)):
        _, grads = ms.value_and_grad(loss_fn(n_), None, o_.parameters)(x)
        o_(grads)
    for name, value in _params(net).items():
        np.testing.assert_array_equal(value, _params(net2)[name])


def test_mindspores_memory_guard_counts_the_page_cache(tmp_path):
    """MindSpore 2.10 refuses a .ckpt larger than the free pages; p2phd makes its guard count
    MemAvailable (free + reclaimable cache), which is never less than the free pages."""
    from mindspore.train import serialization

    available = checkpoint.available_memory()
    if available is None:
        pytest.skip("no /proc/meminfo on this system: MindSpore's own guard stays")
    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    got = serialization._get_available_memory()
    # MemAvailable moves as other processes allocate between the two reads: a few MB, not the
    # page cache (the difference this test is about is GBs on a machine that has read files).
    assert abs(got - checkpoint.available_memory()) < 256 * 2**20
    assert got >= free - 256 * 2**20
    net = nn.Dense(3, 2)
    checkpoint.save(tmp_path / "a.ckpt", {"netG": net})
    names = {name for name, _ in checkpoint.named_parameters("netG", net)}
    assert names <= set(checkpoint.read(tmp_path / "a.ckpt"))

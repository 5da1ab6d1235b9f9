"""--amp (mixed precision) on this CPU: train --amp O2 learns with finite losses, and
render --amp gives the float32 render to within a stated tolerance. (Its speed-up is on
Ascend/GPU; here only correctness is checked.)"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from train_util import TINY, assert_learned, here, label_blind_l1, sample_manifest, stats

pytestmark = pytest.mark.slow  # trains (bin/train --amp O2) and renders: not in `make test-fast`


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("amp")


@pytest.fixture(scope="module")
def manifest(work: Path) -> Path:
    return sample_manifest(work)


@pytest.fixture(scope="module")
def amp_run(work: Path, manifest: Path) -> Path:
    args = [manifest, "--name", "amp", *TINY, "--no_vgg_loss", "--amp", "O2"]
    p = here("train", [*args, "--niter", "5", "--niter_decay", "0", "--print_freq", "8"], work)
    assert p.returncode == 0, p.stderr[-2000:]
    return work / "outputs" / "amp"


def test_train_amp_o2_learns_with_finite_losses(amp_run: Path, manifest: Path) -> None:
    from p2phd.core import runs, runtime
    from p2phd.data.dataset import Dataset
    from p2phd.nets import build_generator
    from p2phd.training import loop

    assert json.loads((amp_run / "options.json").read_text())["options"]["amp"] == "O2"
    lines = stats(amp_run)
    assert [ln["step"] for ln in lines] == [8, 16, 24, 32, 40]
    for ln in lines:
        for key in ("G_GAN", "G_GAN_Feat", "D_real", "D_fake"):
            assert math.isfinite(ln[key]), (key, ln)
    runtime.setup("CPU", False, 0)
    with Dataset(manifest) as ds:
        G, E, arch, _ = runs.load_inference(amp_run, ds.max_instances)
        trained = loop.l1_to_photos(G, ds, arch, E)
        runtime.seed_everything(0)
        untrained = loop.l1_to_photos(build_generator(arch), ds, arch)
        blind = label_blind_l1(ds, arch)
    assert_learned(trained, untrained, blind)  # the float32 learning test's bound


def _render(run: Path, manifest: Path, out: Path, *extra: str) -> dict[str, np.ndarray]:
    res = here("render", ["--run", run, manifest, "--out", out, *extra])
    assert res.returncode == 0, res.stderr[-2000:]
    pngs = sorted(out.rglob("*synthesized*.png")) or sorted(out.rglob("*.png"))
    assert pngs, f"no PNG under {out}"
    return {str(p.relative_to(out)): np.asarray(Image.open(p), np.int16) for p in pngs}


def test_render_amp_within_tolerance_of_float32(amp_run: Path, manifest: Path, work: Path) -> None:
    """8-bit renders: fp16 differs from fp32 by at most 4 levels, on average < 0.5 level
    (measured: max 1, mean 0.007 over the 8 frames). float16 keeps 11 significant bits (4.9e-4
    relative per rounding); a level is 7.8e-3 of tanh's [-1, 1], so the error through G's dozen
    layers flips a rounding now and then (1 level) and only compounds to a few levels where
    activations cancel; a broken cast or a float16 overflow gives tens of levels."""
    ref = _render(amp_run, manifest, work / "render-fp32")
    half = _render(amp_run, manifest, work / "render-fp16", "--amp")
    assert ref.keys() == half.keys()
    diffs = np.concatenate([np.abs(half[k] - ref[k]).ravel() for k in ref])
    assert diffs.max() <= 4, diffs.max()
    assert diffs.mean() < 0.5, diffs.mean()
    assert any(np.ptp(v) > 20 for v in ref.values())  # real pictures, not blank ones

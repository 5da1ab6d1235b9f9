"""System test: the demo's data generator, then the whole chain through the bin/ executables.

prepare -> train 512p -> train 1024p from it -> train 512p-feat -> precompute -> cluster ->
train 1024p-feat -> render, at the smallest sizes (64x32 and 128x64 images, ngf 8, 2
downsamplings, 1 residual block, one to four epochs of 4 frames), verbs chained by stdout paths
and `-`. Four verbs run as subprocesses the way a user (or the Makefile) runs them: prepare,
the 512p train (`prepare | train -`), cluster (`precompute`'s path on stdin) and render
(`prepare | render -`); the later trainings, precompute and the other renders run the same
mains in this process (train_util.here: no second MindSpore import). Each artifact is then
opened as what it claims to be. The chain (train_util.system_chain) is built once per session:
tests/test_train_1024p.py checks the 512p -> 1024p recipe on its 1024p run.
"""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from train_util import N_TEST, N_TRAIN, system_chain

pytestmark = pytest.mark.slow

# epochs of each run of the chain
EPOCHS = {"512p": 1, "1024p": 4, "512p-feat": 1, "1024p-feat": 2}


@pytest.fixture(scope="module")
def chain() -> dict[str, Path]:
    return system_chain()


def test_dataset_manifests(chain: dict[str, Path]) -> None:
    from p2phd.data.dataset import Dataset

    for key, split, n, size in (
        ("train64", "train", N_TRAIN, (32, 64)),
        ("train128", "train", N_TRAIN, (64, 128)),
        ("test128", "test", N_TEST, (64, 128)),
    ):
        with Dataset(chain[key]) as ds:
            assert ds.split == split and len(ds) == n and ds.label_nc == 35
            assert ds.has_instance and ds.has_photo
            s = ds.sample(0)
            assert s.label.shape == size and s.inst.shape == size and s.photo.shape == (*size, 3)
            assert s.label.max() < 35 and (s.inst >= 1000).any()  # things kept labelId*1000+k


def test_runs_load_with_their_architecture(chain: dict[str, Path]) -> None:
    from p2phd.core import runs

    expect = {
        "512p": ("global", False),
        "1024p": ("local", False),
        "512p-feat": ("global", True),
        "1024p-feat": ("local", True),
    }
    for key, (net_g, feat) in expect.items():
        run = chain[key]
        assert run == chain["runs"] / run.name and (run / "G.ckpt").is_file()
        doc = runs.read_options(run)
        assert doc["options"]["netG"] == net_g and doc["options"]["instance_feat"] == feat
        G, E, arch, meta = runs.load_inference(run, max_instances=32)
        assert arch.netG == net_g
        # the 512p-feat run carries its encoder; 1024p-feat reads precomputed features instead
        assert (E is not None) == (key == "512p-feat")
        assert int(meta["step"]) == N_TRAIN * EPOCHS[key]
    opts = runs.read_options(chain["1024p-feat"])["options"]
    assert Path(opts["load_features"]).resolve() == chain["features"].resolve()


def test_features_and_clusters(chain: dict[str, Path]) -> None:
    from p2phd.data.dataset import Dataset
    from p2phd.features.feature_manifest import FeatureManifest
    from p2phd.features.styles import Clusters

    fm = FeatureManifest(chain["features"])
    with Dataset(chain["train64"]) as ds:
        assert list(fm.names) == ds.names
        inst = ds.sample(0).inst
    assert fm.feat_num == 3 and tuple(fm.size) == (64, 128)
    m = fm.map(fm.names[0])
    assert m.shape == (3, 64, 128) and np.isfinite(m).all()
    # nearest upsampling of instance-averaged features: one value per object, none mixed
    big = np.kron(inst, np.ones((2, 2), inst.dtype))
    for iid in np.unique(big)[:5]:
        vals = m[:, big == iid]
        assert np.allclose(vals, vals[:, :1])  # copies of one value (allclose: float32 map)
    rows = fm.rows()
    assert len(rows["sample"]) > 0 and np.isfinite(rows["feature"]).all()
    cl = Clusters(chain["clusters"])
    assert cl.feat_num == 3 and cl.classes
    for c in cl.classes:
        assert 1 <= cl.k(c) <= 2 and np.isfinite(cl.centers(c)).all()


def test_render_folder_has_every_image_and_page(chain: dict[str, Path]) -> None:
    from p2phd.data.dataset import Dataset
    from p2phd.rendering.page import read_manifest

    with Dataset(chain["test128"]) as ds:
        names = ds.names
    for key in ("render", "render-1024p"):
        out = chain[key]
        assert out.is_dir()
        page = (out / "index.html").read_text()
        doc = read_manifest(out / "render.h5")
        assert sorted(r["name"] for r in doc["rows"]) == sorted(names)
        for name in names:
            png = out / f"{name}_synthesized.png"
            img = Image.open(png)
            assert img.format == "PNG" and img.size == (128, 64) and img.mode == "RGB"
            assert png.name in page
            arr = np.asarray(img)
            assert arr.std() > 0  # not a blank image
        assert len(re.findall(r"_synthesized\.png", page)) >= len(names)
    assert chain["render-1024p"] == chain["1024p"] / "render-test"
    settings = json.loads((chain["render"] / "render-settings.json").read_text())
    assert "clusters" in json.dumps(settings)

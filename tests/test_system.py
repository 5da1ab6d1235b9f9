"""System test: the demo's data generator, then the whole chain through the bin/ executables.

prepare -> train 512p -> train 1024p from it -> train 512p-feat -> precompute -> cluster ->
train 1024p-feat -> render, at the smallest sizes (64x32 and 128x64 images, ngf 8, 2
downsamplings, 1 residual block, one or two epochs of 4 frames), every verb a subprocess the way
a user (or the Makefile) runs it, verbs chained by stdout paths and `-`. Each artifact is then
opened as what it claims to be.
"""

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from p2phd.data import demo as demo_data

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "bin"
ARCH = [
    "--n_downsample_global",
    "2",
    "--n_blocks_global",
    "1",
    "--n_blocks_local",
    "1",
    "--ndf",
    "8",
    "--nef",
    "4",
    "--n_layers_D",
    "2",
    "--no_vgg_loss",
    "--print_freq",
    "4",
]
N_TRAIN, N_TEST = 4, 2

pytestmark = pytest.mark.slow


def verb(name: str, *args: str | Path, stdin: str | None = None, cwd: Path) -> Path:
    """Run bin/<name>; it must exit 0 and print exactly one line: the path it wrote."""
    r = subprocess.run(
        [str(BIN / name), *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )
    assert r.returncode == 0, f"bin/{name} failed ({r.returncode}):\n{r.stderr[-3000:]}"
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, f"bin/{name} stdout is not one path: {r.stdout!r}"
    path = Path(lines[0])
    return path if path.is_absolute() else cwd / path


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, Path]:
    w = tmp_path_factory.mktemp("system")
    data = demo_data.generate(
        w / "cityscapes", n_train=N_TRAIN, n_test=N_TEST, width=128, height=64, seed=1
    )
    runs, man = w / "outputs", w / "manifests"
    p: dict[str, Path] = {"work": w, "data": data, "runs": runs}

    def prepare(phase: str, size: int) -> Path:
        out = man / f"demo-{phase}-{size}.h5"
        return verb(
            "prepare",
            "--dataroot",
            data,
            "--phase",
            phase,
            "--load_size",
            size,
            "--jobs",
            2,
            "--out",
            out,
            cwd=w,
        )

    p["train64"], p["train128"] = prepare("train", 64), prepare("train", 128)
    common = ["--checkpoints_dir", runs, *ARCH]
    g512 = [
        "--netG",
        "global",
        "--ngf",
        "8",
        "--num_D",
        "2",
        "--load_size",
        "64",
        "--niter",
        "1",
        "--niter_decay",
        "0",
    ]
    g1024 = [
        "--netG",
        "local",
        "--ngf",
        "4",
        "--num_D",
        "3",
        "--resize_or_crop",
        "none",
        "--load_size",
        "128",
        "--niter",
        "1",
        "--niter_decay",
        "1",
        "--niter_fix_global",
        "1",
    ]
    # the 512p run reads its manifest path from stdin, as in `bin/prepare ... | bin/train -`
    p["512p"] = verb(
        "train", "-", "--name", "s512", *common, *g512, stdin=f"{p['train64']}\n", cwd=w
    )
    p["1024p"] = verb(
        "train",
        p["train128"],
        "--name",
        "s1024",
        *common,
        *g1024,
        "--load_pretrain",
        p["512p"],
        cwd=w,
    )
    p["512p-feat"] = verb(
        "train", p["train64"], "--name", "s512f", *common, *g512, "--instance_feat", cwd=w
    )
    p["features"] = verb(
        "precompute",
        "--run",
        p["512p-feat"],
        p["train64"],
        "--load_size",
        128,
        "--out",
        man / "s512f-features.h5",
        cwd=w,
    )
    p["clusters"] = verb(
        "cluster",
        "-",
        "--n_clusters",
        2,
        "--out",
        man / "s512f-clusters.h5",
        stdin=f"{p['features']}\n",
        cwd=w,
    )
    p["1024p-feat"] = verb(
        "train",
        p["train128"],
        "--name",
        "s1024f",
        *common,
        *g1024,
        "--load_pretrain",
        p["512p-feat"],
        "--instance_feat",
        "--load_features",
        p["features"],
        cwd=w,
    )
    # render the test split straight from prepare's stdout
    r = subprocess.run(
        f"{BIN}/prepare --dataroot {data} --phase test --load_size 128 --out "
        f"{man}/demo-test-128.h5 | {BIN}/render --run {p['1024p-feat']} - --clusters "
        f"{p['clusters']} --out {w}/render-feat",
        shell=True,
        capture_output=True,
        text=True,
        cwd=w,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    p["test128"], p["render"] = man / "demo-test-128.h5", Path(r.stdout.strip())
    p["render-1024p"] = verb("render", "--run", p["1024p"], p["test128"], cwd=w)
    return p


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
        assert int(meta["step"]) == N_TRAIN * (1 if key.startswith("512p") else 2)
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
        assert np.allclose(vals, vals[:, :1])
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

"""The feature pipeline end to end on the real Cityscapes sample at tiny size, via bin/:
512p-feat run -> precompute -> cluster -> 1024p-feat training step -> render with clusters.

Sizes: the 512p-feat run trains at 128x64 (scale_width 128), the 1024p-feat run at 256x128
(resize none) on feature maps precomputed from the 256-wide manifest (the encoder runs at the
512p run's 128x64 and its per-instance features are painted on the 256x128 instance maps).
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, sample_dir
from PIL import Image

from p2phd.core import checkpoint, manifest, runs
from p2phd.data.dataset import Dataset
from p2phd.features.feature_manifest import FeatureManifest
from p2phd.features.styles import Clusters
from p2phd.rendering.page import read_manifest

pytestmark = pytest.mark.slow

CAR = 26
COMMON = [
    "--nef",
    "4",
    "--ndf",
    "4",
    "--n_downsample_global",
    "2",
    "--n_blocks_global",
    "1",
    "--n_downsample_E",
    "2",
    "--n_layers_D",
    "2",
    "--no_vgg_loss",
    "--niter",
    "1",
    "--niter_decay",
    "0",
    "--lr",
    "0.002",
    "--device_target",
    "CPU",
]


def bin_(verb: str, *args: str | Path) -> str:
    p = subprocess.run([str(REPO / "bin" / verb), *map(str, args)], capture_output=True, text=True)
    assert p.returncode == 0, f"bin/{verb} failed:\n{p.stderr[-3000:]}"
    lines = p.stdout.splitlines()
    assert len(lines) == 1, p.stdout  # stdout carries only the artifact's path
    return lines[0]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    w = tmp_path_factory.mktemp("chain")
    out = {"w": w}
    for key, phase, size in (
        ("train128", "train", 128),
        ("train256", "train", 256),
        ("test256", "test", 256),
    ):
        out[key] = Path(
            bin_(
                "prepare",
                "--dataroot",
                sample_dir(),
                "--phase",
                phase,
                "--load_size",
                size,
                "--jobs",
                "2",
                "--out",
                w / f"{key}.h5",
            )
        )
    runs_dir = w / "outputs"
    out["f512"] = Path(
        bin_(
            "train",
            out["train128"],
            "--name",
            "f512",
            "--checkpoints_dir",
            runs_dir,
            "--netG",
            "global",
            "--ngf",
            "4",
            "--num_D",
            "1",
            "--resize_or_crop",
            "scale_width",
            "--load_size",
            "128",
            "--instance_feat",
            "--max_steps",
            "3",
            *COMMON,
        )
    )
    out["features"] = Path(
        bin_("precompute", "--run", out["f512"], out["train256"], "--out", w / "features.h5")
    )
    out["clusters"] = Path(
        bin_("cluster", out["features"], "--n_clusters", "3", "--out", w / "clusters.h5")
    )
    out["f1024"] = Path(
        bin_(
            "train",
            out["train256"],
            "--name",
            "f1024",
            "--checkpoints_dir",
            runs_dir,
            "--netG",
            "local",
            "--ngf",
            "2",
            "--n_blocks_local",
            "1",
            "--num_D",
            "2",
            "--resize_or_crop",
            "none",
            "--load_size",
            "256",
            "--instance_feat",
            "--load_features",
            out["features"],
            "--load_pretrain",
            out["f512"],
            "--max_steps",
            "2",
            *COMMON,
        )
    )
    render = ["--run", out["f1024"], out["test256"], "--clusters", out["clusters"]]
    for key, extra in (
        ("seed0", []),
        ("seed0_again", []),
        ("car0", ["--style", "car=0"]),
        ("car1", ["--style", "car=1"]),
    ):
        out[key] = Path(bin_("render", *render, "--out", w / key, *extra))
    return out


def test_each_step_records_what_it_used(chain: dict[str, Path]) -> None:
    fm = FeatureManifest(chain["features"])
    ckpt = chain["f512"] / "G.ckpt"
    assert fm.attrs["encoder_sha256"] == manifest.sha256_file(ckpt)
    assert fm.attrs["dataset_sha256"] == Dataset(chain["train256"]).sha256()
    assert fm.size == (128, 256) and list(fm.attrs["encoder_size"]) == [64, 128]
    ds = Dataset(chain["train256"])
    assert fm.names == ds.names and len(ds) == 8
    # instance-exact maps at the 1024p size: each instance of the 256-wide map holds one value
    rows = fm.rows()
    s = ds.sample(0)
    fmap = fm.map(s.name)
    for inst_id in rows["instance"][rows["sample"] == 0]:
        values = fmap[:, s.inst == inst_id]
        assert (values == values[:, :1]).all()
    cl = Clusters(chain["clusters"])
    assert json.loads(cl.attrs["features"])["sha256"] == fm.sha256()
    assert cl.k(CAR) == 3 and np.isfinite(cl.centers(CAR)).all()
    # the 1024p-feat run read those maps, started from the 512p-feat run and has no encoder
    opts = runs.read_options(chain["f1024"])["options"]
    assert Path(opts["load_features"]).resolve() == chain["features"].resolve()
    assert checkpoint.read_meta(chain["f1024"] / "G.ckpt")["step"] == 2
    assert runs.load_inference(chain["f1024"])[1] is None


def _pngs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*_synthesized.png"))}


def test_same_seed_renders_identical(chain: dict[str, Path]) -> None:
    a, b = _pngs(chain["seed0"]), _pngs(chain["seed0_again"])
    assert len(a) == 15 and a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    ma, mb = (
        read_manifest(chain["seed0"] / "render.h5"),
        read_manifest(chain["seed0_again"] / "render.h5"),
    )
    assert [r["style"] for r in ma["rows"]] == [r["style"] for r in mb["rows"]]
    assert ma["attrs"]["clusters_sha256"] == Clusters(chain["clusters"]).sha256()


def test_chosen_style_is_honoured(chain: dict[str, Path]) -> None:
    car0, car1 = _pngs(chain["car0"]), _pngs(chain["car1"])
    with_cars = 0
    for key, k in (("car0", 0), ("car1", 1)):
        for row in read_manifest(chain[key] / "render.h5")["rows"]:
            objects = json.loads(row["style"][0])
            assert all(centre == k for _, cls, centre in objects if cls == CAR)
    rows = read_manifest(chain["car0"] / "render.h5")["rows"]
    for row in rows:
        name = row["synthesized"][0]
        has_car = any(cls == CAR for _, cls, _ in json.loads(row["style"][0]))
        assert np.isfinite(car0[name].astype(float)).all()
        if has_car:
            with_cars += 1
            assert not np.array_equal(car0[name], car1[name]), (
                name
            )  # the car style changes the image
        else:
            np.testing.assert_array_equal(car0[name], car1[name])  # nothing else changed
    assert with_cars >= 5


def test_a_second_precompute_or_cluster_on_one_manifest_is_refused(
    chain: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    """Refused at once (before the encoder or k-means runs), the first writer's file untouched."""
    from conftest import held_by_child

    from p2phd.core.cli import run_verb
    from p2phd.features import cluster, precompute

    for key, main, argv in (
        ("features", precompute.main, ["--run", str(chain["f512"]), str(chain["train256"])]),
        ("clusters", cluster.main, [str(chain["features"]), "--n_clusters", "3"]),
    ):
        target = chain[key]
        before = manifest.sha256_file(target)
        with held_by_child(target) as pid:
            assert run_verb(main, [*argv, "--out", str(target)]) == 2
        err = capsys.readouterr().err
        assert f"--out {target}: is being written by another process (pid {pid})" in err
        assert manifest.sha256_file(target) == before

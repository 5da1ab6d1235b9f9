"""The feature pipeline end to end: 512p-feat run -> precompute -> cluster -> 1024p-feat training
-> render with clusters, on the system chain's runs (tests/train_util.py, built once per session
through bin/; its runs train on demo frames, tests/test_system.py checks that every artifact
opens as what it claims to be). The renders compared here (the same command again, each car
style) run in the chain's process.

Sizes: the 512p-feat run trains at 64x32; precompute runs its encoder at that size on the same
64-wide manifest and paints the per-instance features on the 128x64 instance maps the 1024p-feat
run trains on (nearest upsampling), which renders the test split with the clusters.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from train_util import N_TEST, N_TRAIN, system_chain

from p2phd.core import checkpoint, manifest, runs
from p2phd.data.dataset import Dataset
from p2phd.features.feature_manifest import FeatureManifest
from p2phd.features.styles import Clusters
from p2phd.rendering.page import read_manifest

pytestmark = pytest.mark.slow  # reads the system chain (trains once per session)

CAR = 26


@pytest.fixture(scope="module")
def chain() -> dict[str, Path]:
    return system_chain()


def test_each_step_records_what_it_used(chain: dict[str, Path]) -> None:
    fm = FeatureManifest(chain["features"])
    ckpt = chain["512p-feat"] / "G.ckpt"
    assert fm.attrs["encoder_sha256"] == manifest.sha256_file(ckpt)
    assert fm.attrs["dataset_sha256"] == Dataset(chain["train64"]).sha256()
    assert fm.size == (64, 128) and list(fm.attrs["encoder_size"]) == [32, 64]
    ds = Dataset(chain["train64"])
    assert fm.names == ds.names and len(ds) == N_TRAIN
    # instance-exact maps at the 1024p size: each instance of the 64-wide map, upsampled 2x as
    # precompute does (nearest), holds one value in the 128-wide map
    rows = fm.rows()
    s = ds.sample(0)
    fmap = fm.map(s.name)
    big = np.kron(s.inst, np.ones((2, 2), s.inst.dtype))
    for inst_id in rows["instance"][rows["sample"] == 0]:
        values = fmap[:, big == inst_id]
        assert values.size and (values == values[:, :1]).all()
    cl = Clusters(chain["clusters"])
    assert json.loads(cl.attrs["features"])["sha256"] == fm.sha256()
    assert cl.k(CAR) == 2 and np.isfinite(cl.centers(CAR)).all()  # --n_clusters 2
    # the 1024p-feat run read those maps, started from the 512p-feat run and has no encoder
    opts = runs.read_options(chain["1024p-feat"])["options"]
    assert Path(opts["load_features"]).resolve() == chain["features"].resolve()
    assert Path(opts["load_pretrain"]).resolve() == chain["512p-feat"].resolve()
    assert checkpoint.read_meta(chain["1024p-feat"] / "G.ckpt")["step"] == 2 * N_TRAIN
    assert runs.load_inference(chain["1024p-feat"])[1] is None


def _pngs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*_synthesized.png"))}


def test_same_seed_renders_identical(chain: dict[str, Path]) -> None:
    a, b = _pngs(chain["render"]), _pngs(chain["render-again"])
    assert len(a) == N_TEST and a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    ma, mb = (
        read_manifest(chain["render"] / "render.h5"),
        read_manifest(chain["render-again"] / "render.h5"),
    )
    assert [r["style"] for r in ma["rows"]] == [r["style"] for r in mb["rows"]]
    assert ma["attrs"]["clusters_sha256"] == Clusters(chain["clusters"]).sha256()


def test_chosen_style_is_honoured(chain: dict[str, Path]) -> None:
    car0, car1 = _pngs(chain["render-car0"]), _pngs(chain["render-car1"])
    with_cars = 0
    for key, k in (("render-car0", 0), ("render-car1", 1)):
        for row in read_manifest(chain[key] / "render.h5")["rows"]:
            objects = json.loads(row["style"][0])
            assert all(centre == k for _, cls, centre in objects if cls == CAR)
    rows = read_manifest(chain["render-car0"] / "render.h5")["rows"]
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
    assert with_cars >= 5  # of the N_TEST (6) demo frames


def test_a_second_precompute_or_cluster_on_one_manifest_is_refused(
    chain: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    """Refused at once (before the encoder or k-means runs), the first writer's file untouched."""
    from conftest import held_by_child

    from p2phd.core.cli import run_verb
    from p2phd.features import cluster, precompute

    for key, main, argv in (
        ("features", precompute.main, ["--run", str(chain["512p-feat"]), str(chain["train64"])]),
        ("clusters", cluster.main, [str(chain["features"]), "--n_clusters", "2"]),
    ):
        target = chain[key]
        before = manifest.sha256_file(target)
        with held_by_child(target) as pid:
            assert run_verb(main, [*argv, "--out", str(target)]) == 2
        err = capsys.readouterr().err
        assert f"--out {target}: is being written by another process (pid {pid})" in err
        assert manifest.sha256_file(target) == before

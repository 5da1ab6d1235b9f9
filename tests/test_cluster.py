"""bin/cluster: k-means per class equals scikit-learn's, the area filter, classes without rows,
the manifest kinds (no MindSpore needed: the feature manifests here are written directly)."""

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from sklearn.cluster import KMeans

from p2phd.core.cli import UsageError, run_verb
from p2phd.data.dataset import Dataset
from p2phd.features import cluster
from p2phd.features.feature_manifest import FeatureManifest, write_feature_manifest
from p2phd.features.styles import Clusters

CAR, PERSON, ROAD, BUS = 26, 24, 7, 28


def synthetic_rows(seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Rows of 4 samples: cars in 3 blobs (big), persons (big), road (1 per sample), buses all
    tiny (below 1/64 of the image), so only cars/persons/road qualify."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(4):
        inst, lab, feat, area = [], [], [], []
        for k in range(6):  # cars: three well separated blobs
            inst.append(CAR * 1000 + k)
            lab.append(CAR)
            feat.append(rng.normal([(-0.6, 0.0, 0.6)[k % 3]] * 3, 0.05))
            area.append(0.02 + 0.01 * k)
        for k in range(2):
            inst.append(PERSON * 1000 + k)
            lab.append(PERSON)
            feat.append(rng.normal(0.3, 0.2, 3))
            area.append(0.05)
        inst.append(BUS * 1000)
        lab.append(BUS)
        feat.append(rng.normal(0, 0.3, 3))
        area.append(0.01)  # below 1/64
        inst.append(ROAD)
        lab.append(ROAD)
        feat.append(rng.normal(-0.2, 0.1, 3))
        area.append(0.4)
        out.append(
            {
                "instance": np.array(inst, np.int32),
                "label": np.array(lab, np.int32),
                "feature": np.array(feat, np.float32),
                "area": np.array(area, np.float32),
            }
        )
    return out


def make_features(path: Path, seed: int = 0) -> Path:
    rows = synthetic_rows(seed)
    names = [f"city_{i:06d}_000019" for i in range(len(rows))]
    maps = [np.zeros((3, 4, 8), np.float32) for _ in rows]
    return write_feature_manifest(
        path, names, maps, rows, feat_num=3, label_nc=35, run_name="tiny_feat"
    )


@pytest.fixture
def features(tmp_path: Path) -> Path:
    return make_features(tmp_path / "f.h5")


def run_cluster(*args: str) -> int:
    return run_verb(cluster.main, list(args))


def test_centres_equal_scikit_learn(features: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    assert (
        run_cluster(
            str(features), "--n_clusters", "3", "--seed", "5", "--n_init", "4", "--out", str(out)
        )
        == 0
    )
    rows = FeatureManifest(features).rows()
    cl = Clusters(out)
    assert cl.feat_num == 3 and cl.label_nc == 35
    assert cl.classes == [ROAD, PERSON, CAR]
    for c in cl.classes:
        x = rows["feature"][(rows["label"] == c) & (rows["area"] > 1 / 64)]
        km = KMeans(n_clusters=min(3, len(x)), random_state=5, n_init=4).fit(x)
        np.testing.assert_array_equal(cl.centers(c), km.cluster_centers_.astype(np.float32))
        np.testing.assert_array_equal(
            cl.counts(c), np.bincount(km.labels_, minlength=len(km.cluster_centers_))
        )
        assert cl.counts(c).sum() == len(x)
    # the three car blobs are found: one centre near each (0.05: the blobs' own spread around
    # their centres, not round-off; the centres themselves equal scikit-learn's exactly above)
    np.testing.assert_allclose(np.sort(cl.centers(CAR)[:, 0]), [-0.6, 0.0, 0.6], atol=0.05)
    a = cl.attrs
    assert (a["n_clusters"], a["seed"], a["n_init"]) == (3, 5, 4)
    assert a["min_area"] == pytest.approx(1 / 64)  # stored as given; approx: float32 attrs
    assert '"sha256"' in a["features"] and str(features.resolve()) in a["features"]


def test_area_filter_and_classes_without_rows(features: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    assert run_cluster(str(features), "--out", str(out)) == 0
    cl = Clusters(out)
    # buses exist but are all below 1/64 of the image: no clusters; class 11 has no rows at all
    assert cl.k(BUS) == 0 and cl.centers(BUS) is None and cl.k(11) == 0
    without = cl.attrs["classes_without_clusters"].tolist()
    assert BUS in without and 11 in without and CAR not in without
    assert len(without) + len(cl.classes) == 35
    assert cl.k(CAR) == 10 and cl.k(PERSON) == 8 and cl.k(ROAD) == 4  # k = min(rows, n_clusters)
    # a stricter threshold drops the small cars (areas 0.02..0.07 -> keep > 0.045)
    strict = tmp_path / "strict.h5"
    assert (
        run_cluster(
            str(features), "--min_area", "0.045", "--n_clusters", "50", "--out", str(strict)
        )
        == 0
    )
    assert Clusters(strict).counts(CAR).sum() == 4 * 3
    # no threshold: the buses get clusters
    loose = tmp_path / "loose.h5"
    assert run_cluster(str(features), "--min_area", "0", "--out", str(loose)) == 0
    assert Clusters(loose).k(BUS) == 4


def test_manifests_refuse_other_kinds(features: Path, tmp_path: Path, tiny_manifest: Path) -> None:
    out = tmp_path / "c.h5"
    assert run_cluster(str(features), "--out", str(out)) == 0
    with pytest.raises(UsageError, match="is a features manifest, expected a clusters manifest"):
        Clusters(features)
    with pytest.raises(UsageError, match="is a clusters manifest, expected a features manifest"):
        FeatureManifest(out)
    with pytest.raises(UsageError, match="expected a dataset manifest"):
        Dataset(out)
    with pytest.raises(UsageError, match="is a dataset manifest"):
        FeatureManifest(tiny_manifest)
    # via the executable: exit 2, one line, nothing written
    bad_out = tmp_path / "bad.h5"
    p = subprocess.run(
        [str(REPO / "bin" / "cluster"), str(tiny_manifest), "--out", str(bad_out)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and p.stdout == ""
    assert len(p.stderr.strip().splitlines()) == 1 and "expected a features manifest" in p.stderr
    assert not bad_out.exists() and not Path(str(bad_out) + ".tmp").exists()


def test_bad_options_and_dry_run(
    features: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "c.h5"
    assert run_cluster(str(features), "--n_clusters", "0", "--out", str(out)) == 2
    assert run_cluster(str(features), "--min_area", "1.5", "--out", str(out)) == 2
    assert run_cluster(str(tmp_path / "missing.h5"), "--out", str(out)) == 2
    capsys.readouterr()
    assert run_cluster(str(features), "--dry-run", "--out", str(out)) == 0
    assert capsys.readouterr().out == "" and not out.exists()


def test_stdin_and_default_name(features: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.h5"
    p = subprocess.run(
        [str(REPO / "bin" / "cluster"), "-", "--out", str(out)],
        input=f"{features}\n",
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"{out}\n"
    assert cluster.default_out(FeatureManifest(features)).name == "tiny_feat-clusters.h5"

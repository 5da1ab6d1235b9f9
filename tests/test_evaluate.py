"""bin/evaluate and p2phd.metrics against pytorch-fid's own numbers.

The fixture (tests/fixtures/fid/, made by make_fid_fixtures.py with pytorch-fid and torch) is
pytorch-fid's FID Inception with seeded random weights, saved as a .pth with the real file's
key names, the pool3 features pytorch-fid computes for a few small images, the resized network
input, and the FID it reports between two sets. Here: the same .pth through p2phd's torch-free
reader into the MindSpore network, compared with those numbers; FID/KID behaviour; the verb on
a small render folder (cache reuse, metrics.json, the page) and its refusals of bad input.
"""

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import sample_manifest
from PIL import Image

from p2phd.core.cli import UsageError, run_verb
from p2phd.metrics import evaluate, fid
from p2phd.metrics import features as feats

FIX = Path(__file__).resolve().parent / "fixtures" / "fid"
A = [f"a{i}" for i in range(8)]
B = [f"b{i}" for i in range(8)]


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(FIX / "reference.npz") as z:
        return dict(z)


@pytest.fixture(scope="module")
def pth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fid") / "fid_inception_random.pth"
    with gzip.open(FIX / "fid_inception_random.pth.gz") as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


@pytest.fixture(scope="module")
def net(pth: Path):
    from p2phd.core import runtime

    runtime.setup("CPU")
    return feats.load_inception(pth)


def _features(net, images: list[np.ndarray], batch_size: int = 4) -> np.ndarray:
    sizes = [im.shape[:2] for im in images]
    return feats.extract(net, images, len(images), sizes, batch_size)


@pytest.fixture(scope="module")
def ours(net, ref) -> dict[str, np.ndarray]:
    """p2phd's features of the fixture images, batched as the fixture was (4 per call)."""
    return {
        "a": _features(net, [ref[k] for k in A]),
        "b": _features(net, [ref[k] for k in B]),
        "big": _features(net, [ref["big0"]]),
        "square": _features(net, [ref["square0"]]),
    }


def _rel(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Relative L2 error per image."""
    return np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)


def test_resize_matches_pytorch_fid(ref):
    """The network input for an upsampled (64x128) and a downsampled (320x480) image equals
    what pytorch-fid feeds its first block (F.interpolate bilinear, then 2x - 1)."""
    import mindspore as ms

    from p2phd.metrics.inception import Preprocess

    pre = Preprocess()
    for key in ("a0", "big0"):
        got = pre(ms.Tensor(feats.to_input([ref[key]]))).asnumpy()[0]
        want = ref[f"input_{key}"]
        assert got.shape == want.shape == (3, 299, 299)
        # float32 bilinear weights and a 2x - 1 on values in [-1, 1]: a few roundings of 6e-8
        # each in either framework; 1e-5 is far below a one-pixel shift (>= 1e-2 here)
        assert np.abs(got - want).max() < 1e-5, key


@pytest.mark.slow  # FID Inception features at 299x299
def test_features_match_pytorch_fid(ours, ref):
    for key in ("a", "b", "big", "square"):
        want = ref[f"feat_{key}"]
        assert ours[key].shape == want.shape
        assert ours[key].dtype == np.float64
        # float32 through ~95 convolutions (oneDNN here, MKL-DNN/ATen in torch) whose reductions
        # of up to 2048 * 9 products are summed in kernel- and thread-dependent orders: each layer
        # adds ~1e-6 relative, so the pool3 features agree to ~1e-5; 1e-4 leaves room for other
        # ISAs/thread counts while a wrong weight or layout gives >= 1e-2
        assert _rel(ours[key], want).max() <= 1e-4, key
    # not trivially equal: the images give different features
    assert _rel(ref["feat_a"][:1], ref["feat_b"][:1]).min() > 0.05


@pytest.mark.slow  # FID Inception features at 299x299
def test_fid_matches_pytorch_fid(ours, ref):
    want = float(ref["fid_ab"])  # pytorch-fid: its features, its sqrtm
    # The exact form on pytorch-fid's own features: this side is float64 sums and an 8x8 SVD
    # (1e-13 on any machine); `want` carries the sqrtm round-off of the fixture's machine, a
    # fixed 1.6e-5 in the file (within its bound _sqrtm_round_off, 8e-3 at d = 2048).
    assert abs(fid.fid_from_features(ref["feat_a"], ref["feat_b"]) - want) < 1e-4
    got = fid.fid_from_features(ours["a"], ours["b"])  # p2phd: its features, the exact form
    # Features within the float32 rounding above (1e-4 relative at most): FID, quadratic in
    # features of norm ~20, moves by ~1e-3 for independent 1e-4 errors on every feature (seen:
    # 1.0e-3 for such a perturbation), much less for the ~1e-5 the network gives
    assert abs(got - want) <= 1e-3, (got, want)


def _sqrtm_round_off(a: np.ndarray, b: np.ndarray) -> float:
    """How far an FID through sqrtm(s1 s2) may be from the exact value when s1 s2 is singular.

    sqrtm starts from the Schur form M = Q T Q*, and tr(sqrtm(M)) = sum of sqrt(T_ii): exactly
    the square roots of the computed eigenvalues. The QR algorithm computes them for M + E with
    |E|_2 ~ eps * |M|_2 (Golub & Van Loan; the factor d here covers the modest constant a given
    LAPACK, BLAS kernel and thread count give it), so the d - r zero eigenvalues of M (r = its
    rank) come out as values up to d * eps * |M|_2 of either sign, depending on the CPU, and
    their square roots, up to sqrt(d * eps * |M|_2) each, land in the trace, which FID counts
    twice. The non-zero eigenvalues move by ~eps * |M| / (2 sqrt(lambda)) only: a full-rank M
    gives a few eps relative.
    """
    s1, s2 = fid.statistics(a).sigma, fid.statistics(b).sigma
    m = s1 @ s2
    d, eps = len(m), np.finfo(np.float64).eps
    rank = min(len(a) - 1, len(b) - 1, d)  # np.cov of n centred vectors has rank n - 1
    return 2 * (d - rank) * np.sqrt(d * eps * np.linalg.norm(m, 2))


def test_frechet_distance_is_pytorch_fids(ref):
    """The sqrtm route (from statistics) equals pytorch-fid's calculate_frechet_distance on
    singular (8 images, 64 dims) and full-rank (100/120 samples, 32 dims) statistics, and the
    exact low-rank route equals it where it applies."""
    a, b = ref["feat_a"][:, :64], ref["feat_b"][:, :64]
    want = float(ref["fid_ab_64"])  # pytorch-fid's sqrtm, on the machine that made the fixture
    got = fid.frechet_distance(fid.statistics(a), fid.statistics(b))
    # Both numbers went through sqrtm of a singular product (57 zero eigenvalues): each is within
    # _sqrtm_round_off (1.4e-6 here) of the exact FID, so they are within twice that of each other
    # (seen: 4e-9 between two CPUs, 4e-8 from the exact value; a formula slip is >= 1e-2).
    bound = _sqrtm_round_off(a, b)
    assert 1e-7 < bound < 1e-5
    assert got == pytest.approx(want, rel=0, abs=2 * bound)
    # the exact low-rank form has no such round-off: only pytorch-fid's number carries it
    assert fid.fid_from_features(a, b) == pytest.approx(want, rel=0, abs=bound)
    x, y = ref["synth_x"], ref["synth_y"]
    # Full rank (eigenvalues of s1 s2 in [9e-5, 17]): sqrtm's error is ~d * eps * |M| / (2 *
    # sqrt(lambda_min)) on the trace, 2e-13 relative on this FID of 65, so 1e-12 leaves 5x.
    assert fid.frechet_distance(fid.statistics(x), fid.statistics(y)) == pytest.approx(
        float(ref["fid_synth"]), rel=1e-12
    )
    assert fid.fid_from_features(x, y) == pytest.approx(float(ref["fid_synth"]), rel=1e-12)
    # 20 and 30 samples in 32 dims: singular again (13 zero eigenvalues); only the sqrtm route
    # carries the round-off (seen: 6.8e-7, bound 1.4e-5)
    assert fid.fid_from_features(x[:20], y[:30]) == pytest.approx(
        fid.frechet_distance(fid.statistics(x[:20]), fid.statistics(y[:30])),
        rel=0,
        abs=_sqrtm_round_off(x[:20], y[:30]),
    )


@pytest.mark.slow  # FID Inception features at 299x299
def test_fid_zero_for_itself_and_grows_with_noise(net, ours, ref):
    """Set a against itself ~0; against noised copies of its first 4 images the FID grows with
    the noise (4 images per copy: one Inception call each)."""
    # float64 traces (~500) minus the same sum of singular values: a few eps * 500 = 1e-13
    assert abs(fid.fid_from_features(ours["a"], ours["a"])) < 1e-9
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((4, 64, 128, 3))
    scores = []
    for sigma in (6, 20, 60):
        noisy = [
            np.clip(ref[k] + sigma * noise[i], 0, 255).astype(np.uint8) for i, k in enumerate(A[:4])
        ]
        scores.append(fid.fid_from_features(ours["a"][:4], _features(net, noisy)))
    print("FID against noised copies (sigma 6, 20, 60):", scores)
    assert 0 < scores[0] < scores[1] < scores[2], scores


def test_kid_against_a_direct_formula():
    """Unbiased MMD^2 with k(x, y) = (x.y/d + 1)^3, one subset = the whole sets, written out."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 5)), rng.normal(0.5, 1.0, size=(6, 5))

    def k(u, v):
        return (u @ v / 5 + 1) ** 3

    m = 6
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    mean, std = fid.kid(x, y, subsets=3, subset_size=100)
    # float64 sums of 36 kernel values in another order: ~36 eps = 8e-15 relative
    assert mean == pytest.approx(xx + yy - 2 * xy, rel=1e-12) and std < 1e-12
    # subsets smaller than the sets vary; the same seed gives the same numbers
    a = fid.kid(x, y, subsets=20, subset_size=4, seed=3)
    assert a == fid.kid(x, y, subsets=20, subset_size=4, seed=3) and a[1] > 0
    far = fid.kid(x, y + 3, subsets=20, subset_size=4, seed=3)
    assert far[0] > a[0]


def test_wrong_or_missing_weights(pth, tmp_path):
    with pytest.raises(UsageError, match=r"not the FID Inception.*missing key 'Conv2d_1a_3x3"):
        feats.load_inception(FIX / "other_network.pth")
    with pytest.raises(
        UsageError, match=r"no such file.*releases/download/fid_weights.*--inception"
    ):
        feats.load_inception(tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle at all")
    with pytest.raises(UsageError, match="not a readable .pth") as err:
        feats.load_inception(tmp_path / "junk.pth")
    # one clean line that names the file and the reason once
    msg = str(err.value)
    assert "\n" not in msg and msg.count("junk.pth") == 1 and msg.count("not a readable") == 1
    (tmp_path / "cut.pth").write_bytes(b"")  # an interrupted download: EOFError
    with pytest.raises(UsageError) as err:
        feats.load_inception(tmp_path / "cut.pth")
    assert str(err.value).startswith(f"{tmp_path / 'cut.pth'}: not a readable .pth (EOFError")
    assert str(err.value).count("cut.pth") == 1
    # a state dict of the right network with one changed shape, or torchvision's 1000 classes
    from p2phd.interop.pth import read_state_dict
    from p2phd.metrics.inception import FIDInception, WeightsError, check_state_dict

    state = read_state_dict(pth)
    net = FIDInception()
    bad = dict(
        state, **{"Mixed_6b.branch7x7_2.conv.weight": np.zeros((128, 128, 7, 1), np.float32)}
    )
    with pytest.raises(
        WeightsError, match=r"Mixed_6b.branch7x7_2.conv.weight' has shape \(128, 128, 7, 1\)"
    ):
        check_state_dict(net, bad)
    bad = dict(state, **{"fc.weight": np.zeros((1000, 2048), np.float32)})
    with pytest.raises(WeightsError, match="1008-class"):
        check_state_dict(net, bad)
    bad = dict(state, **{"AuxLogits.fc.weight": np.zeros((1008, 768), np.float32)})
    with pytest.raises(WeightsError, match="unexpected key 'AuxLogits.fc.weight'"):
        check_state_dict(net, bad)


# ---------------------------------------------------------------------------------------------
# the verb on a render folder


def _render_folder(out: Path, manifest: Path, rows: list[int], blur: float = 2.0) -> Path:
    """A render folder as bin/render leaves it (its writers: PNGs, render.h5, index.html), whose
    'synthesized' images are blurred real photos, for the first rows of the manifest."""
    from PIL import ImageFilter

    from p2phd.data.dataset import Dataset
    from p2phd.rendering import files as rf
    from p2phd.rendering.page import write_manifest, write_page

    out.mkdir(parents=True)
    records = []
    with Dataset(manifest) as ds:
        for r in rows:
            s = ds.sample(r)
            files = rf.sample_files(s.name, 1, True)
            img = Image.fromarray(s.photo).filter(ImageFilter.GaussianBlur(blur))
            rf.save_png(np.asarray(img), out / files["synthesized"][0])
            rf.save_png(s.photo, out / files["real"])
            rf.save_png(s.label, out / files["label"])
            records.append(
                {
                    "row": r,
                    "name": s.name,
                    "files": files,
                    "size": list(s.photo.shape[:2]),
                    "seeds": [-1],
                    "variants": [0],
                    "styles": [""],
                }
            )
        attrs = {
            "dataset": str(manifest.resolve()),
            "dataset_sha256": ds.sha256(),
            "split": ds.split,
        }
    write_manifest(out / "render.h5", records, attrs, {}, [], None)
    write_page(out / "index.html", records, {"run": "fake", "split": "train"})
    return out


@pytest.fixture(scope="module")
def sample_train(tmp_path_factory) -> Path:
    # a private copy: the verb caches the real photos' features beside the manifest
    return sample_manifest("train", 128, copy_to=tmp_path_factory.mktemp("evaluate") / "manifests")


def _evaluate(capsys, *args) -> tuple[int, str, str]:
    rc = run_verb(evaluate.main, [str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.slow  # FID Inception features at 299x299
def test_verb_writes_metrics_and_reuses_the_cache(net, sample_train, pth, tmp_path, capsys):
    folder = _render_folder(tmp_path / "render-train", sample_train, rows=[0, 1, 2, 3])
    rc, out, err = _evaluate(capsys, folder, "--inception", pth, "--kid", "--kid_subsets", "5")
    assert rc == 0, err
    assert out == f"{folder / 'metrics.json'}\n"  # stdout: only the path
    m = json.loads((folder / "metrics.json").read_text())
    assert m["schema"] == "p2phd.metrics/1" and m["num_images"] == 4
    assert m["real"]["path"] == str(sample_train.resolve()) and len(m["real"]["sha256"]) == 64
    assert m["inception"]["sha256"] and m["render"]["manifest_sha256"]
    assert m["fid"] > 0 and m["kid"]["subset_size"] == 4
    cache = Path(m["cache"])
    assert cache.parent == sample_train.parent and "cached the real photos' features" in err
    stamp = cache.stat().st_mtime_ns
    assert f"{m['fid']:.4f}" in (folder / "index.html").read_text()

    rc, out, err = _evaluate(capsys, folder, "--inception", pth, "--kid", "--kid_subsets", "5")
    assert rc == 0, err
    assert "real photos' features from the cache" in err and "real photos:" not in err
    assert cache.stat().st_mtime_ns == stamp
    again = json.loads((folder / "metrics.json").read_text())
    assert again["fid"] == m["fid"] and again["kid"] == m["kid"]
    assert (folder / "index.html").read_text().count("<!-- metrics -->") == 1


def test_verb_refuses_bad_input(sample_train, pth, tmp_path, capsys, tiny_manifest):
    capsys.readouterr()  # the fixtures' output
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, err = _evaluate(capsys, empty, "--inception", pth)
    assert rc == 2 and out == "" and "no render.h5" in err and err.count("\n") == 1

    folder = _render_folder(tmp_path / "r2", sample_train, rows=[0, 1])
    rc, _, err = _evaluate(capsys, folder, "--inception", pth, "--real", tiny_manifest)
    assert rc == 2 and "2 of 2 rendered samples are not in" in err and "aachen_000000_000019" in err

    one = _render_folder(tmp_path / "r1", sample_train, rows=[0])
    rc, _, err = _evaluate(capsys, one, "--inception", pth)
    assert rc == 2 and "FID needs at least 2" in err

    rc, _, err = _evaluate(capsys, folder, "--inception", FIX / "other_network.pth")
    assert rc == 2 and "not the FID Inception" in err and "missing key" in err
    assert not (folder / "metrics.json").exists()

    rc, _, err = _evaluate(capsys, folder, "--inception", tmp_path / "nowhere.pth")
    assert rc == 2 and "pytorch-fid/releases/download" in err and "--inception" in err


def test_command_line(sample_train, tmp_path):
    """bin/evaluate as a command: '-' reads the folder from stdin; --dry-run writes nothing and
    prints nothing on stdout; bad input is one line on stderr and exit 2 (no MindSpore start)."""
    import subprocess
    import sys

    from conftest import REPO

    folder = _render_folder(tmp_path / "render-train", sample_train, rows=[0, 1, 2])
    cmd = [sys.executable, str(REPO / "bin" / "evaluate")]
    res = subprocess.run(
        [*cmd, "-", "--dry-run"], input=f"{folder}\n", capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0 and res.stdout == "", res.stderr
    assert f"would compare 3 renders in {folder}" in res.stderr
    assert not (folder / "metrics.json").exists()
    res = subprocess.run([*cmd, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert (
        res.stderr
        == f"evaluate: error: {tmp_path}: no render.h5 (not a finished render; run bin/render)\n"
    )

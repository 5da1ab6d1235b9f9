"""bin/precompute on a tiny feature run trained by bin/train: instance-exact maps from the trained
encoder, NEAREST upsampling without mixing, rows, provenance, resume, bad inputs."""

import contextlib
import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TINY_TRAIN, write_frame
from PIL import Image
from train_util import here

from p2phd.core import checkpoint, manifest, runs
from p2phd.core.cli import run_verb
from p2phd.data import prepare
from p2phd.data.dataset import Dataset
from p2phd.features import precompute
from p2phd.features.feature_manifest import FeatureManifest, FeatureWriter

pytestmark = pytest.mark.slow  # precompute on a run bin/train trained: not in `make test-fast`

TINY_RUN = [
    "--netG",
    "global",
    "--ngf",
    "4",
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
    "--num_D",
    "1",
    "--no_vgg_loss",
    "--load_size",
    "0",
    "--resize_or_crop",
    "none",
    "--niter",
    "1",
    "--niter_decay",
    "0",
    "--lr",
    "0.01",
    "--seed",
    "0",
]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 3-frame train split (64x128) and a feature run trained on it for 3 steps."""
    root = tmp_path_factory.mktemp("precompute")
    for i, name in enumerate(TINY_TRAIN):
        write_frame(root / "data", "train", name, seed=i)
    for i, name in enumerate(TINY_TRAIN[:2]):
        write_frame(root / "data", "test", name, seed=50 + i, photo=False)
    (root / "data" / "test_img").rmdir()
    for phase in ("train", "test"):
        data = ["--dataroot", root / "data", "--phase", phase, "--load_size", "0", "--jobs", "1"]
        p = here("prepare", [*data, "--out", root / f"{phase}.h5"])
        assert p.returncode == 0, p.stderr
    run = ["--name", "feat", "--checkpoints_dir", root / "outputs", "--instance_feat", *TINY_RUN]
    # --pynative: three steps cost less than compiling them; the tests read the trained E only
    p = here("train", [root / "train.h5", *run, "--pynative"])
    assert p.returncode == 0, p.stderr[-2000:]
    assert checkpoint.read_meta(root / "outputs" / "feat" / "G.ckpt")["step"] == 3
    return root


@pytest.fixture(scope="module")
def features(work: Path) -> Path:
    """The uninterrupted precompute at the manifest's size."""
    out = work / "features.h5"
    p = here("precompute", ["--run", work / "outputs" / "feat", work / "train.h5", "--out", out])
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout == f"{out}\n"
    return out


def run_precompute(*args: str) -> int:
    return run_verb(precompute.main, list(args))


def test_every_pixel_of_an_instance_holds_its_feature(work: Path, features: Path) -> None:
    fm, ds = FeatureManifest(features), Dataset(work / "train.h5")
    assert fm.names == ds.names and fm.feat_num == 3 and fm.size == (64, 128) and fm.label_nc == 35
    rows = fm.rows()
    for i, name in enumerate(ds.names):
        s, fmap = ds.sample(i), fm.map(name)
        assert fmap.shape == (3, 64, 128) and fmap.dtype == np.float32 and np.isfinite(fmap).all()
        mine = rows["sample"] == i
        assert sorted(rows["instance"][mine].tolist()) == np.unique(s.inst).tolist()
        assert rows["area"][mine].sum() == pytest.approx(1.0)  # float32 shares: rel 1e-6
        for inst_id, label, feat, area in zip(
            rows["instance"][mine],
            rows["label"][mine],
            rows["feature"][mine],
            rows["area"][mine],
            strict=True,
        ):
            where = s.inst == inst_id
            assert (fmap[:, where] == feat[:, None]).all()
            assert label == (inst_id if inst_id < 1000 else inst_id // 1000)  # Cityscapes rule
            assert area == pytest.approx(where.mean())  # float32 vs float64 share: rel 1e-6
        # different instances really differ (the encoder is not constant)
        assert len({tuple(f) for f in rows["feature"][mine]}) == mine.sum()
    ckpt = work / "outputs" / "feat" / "G.ckpt"
    a = fm.attrs
    assert a["encoder_checkpoint"] == str(ckpt.resolve())
    assert a["encoder_sha256"] == manifest.sha256_file(ckpt)
    assert a["dataset"] == str((work / "train.h5").resolve()) and a["dataset_sha256"] == ds.sha256()
    assert {r["sha256"] for r in a["inputs"]} == {a["encoder_sha256"], a["dataset_sha256"]}
    assert list(a["encoder_size"]) == [64, 128] and a["run_name"] == "feat"


def test_maps_come_from_the_trained_encoder(work: Path, features: Path) -> None:
    import mindspore as ms

    from p2phd.nets import build_encoder

    run = work / "outputs" / "feat"
    arch = runs.arch_from_dict(runs.read_options(run)["options"])
    ds = Dataset(work / "train.h5")
    s = ds.sample(0)
    index = np.unique(s.inst, return_inverse=True)[1].reshape(s.inst.shape).astype(np.int32)
    photo = (s.photo.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1)[None]

    def encode(load: bool) -> np.ndarray:
        ms.set_seed(0)  # the seed train initialised with
        enc = build_encoder(arch, ds.max_instances)
        if load:
            assert checkpoint.load(run / "G.ckpt", {"netE": enc}).complete
        enc.set_train(False)
        return enc(ms.Tensor(photo), ms.Tensor(index[None])).asnumpy()[0]

    fmap = FeatureManifest(features).map(s.name)
    # the same float32 encoder in precompute's graph and here: the same kernels, but oneDNN may
    # split the reductions differently per call shape/threads (features are O(1): 1e-6 = ~8 ulp);
    # a random encoder is 1e-3 away (below)
    np.testing.assert_allclose(fmap, encode(True), atol=1e-6)
    fresh = encode(False)
    assert np.abs(fmap - fresh).max() > 1e-3  # NVIDIA #156: precompute used a random encoder


@pytest.mark.parametrize(
    "size_args,size", [(["--size", "128x256"], (128, 256)), (["--load_size", "200"], (100, 200))]
)
def test_upsampled_maps_mix_no_instances(
    work: Path, features: Path, tmp_path: Path, size_args: list[str], size: tuple[int, int]
) -> None:
    out = tmp_path / "up.h5"
    assert (
        run_precompute(
            "--run",
            str(work / "outputs" / "feat"),
            str(work / "train.h5"),
            "--out",
            str(out),
            *size_args,
        )
        == 0
    )
    up, base, ds = FeatureManifest(out), FeatureManifest(features), Dataset(work / "train.h5")
    assert up.size == size
    np.testing.assert_array_equal(
        up.rows()["feature"], base.rows()["feature"]
    )  # E ran at the run's size
    rows = up.rows()
    for i, name in enumerate(ds.names):
        fmap = up.map(name)
        assert fmap.shape == (3, *size)
        inst = np.asarray(
            Image.fromarray(ds.sample(i).inst).resize(size[::-1], Image.Resampling.NEAREST)
        )
        mine = rows["sample"] == i
        table = dict(zip(rows["instance"][mine].tolist(), rows["feature"][mine], strict=True))
        for inst_id in np.unique(inst):
            assert (fmap[:, inst == inst_id] == table[int(inst_id)][:, None]).all()
        # no pixel holds a blend: every value is one of this sample's instance features
        values = {tuple(v) for v in fmap.reshape(3, -1).T}
        assert values == {tuple(f) for f in rows["feature"][mine]}


def test_resume_after_an_interrupted_run(
    work: Path,
    features: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    out = tmp_path / "resumed.h5"
    args = ["--run", str(work / "outputs" / "feat"), str(work / "train.h5"), "--out", str(out)]
    real_add, calls = FeatureWriter.add, []

    def dying_add(self, i, fmap, rows):
        if len(calls) == 1:
            raise KeyboardInterrupt  # as a kill after the first sample
        calls.append(i)
        real_add(self, i, fmap, rows)

    monkeypatch.setattr(FeatureWriter, "add", dying_add)
    assert run_precompute(*args) == 130
    assert not out.exists() and Path(f"{out}.tmp").exists()
    monkeypatch.setattr(FeatureWriter, "add", real_add)
    encoded = []
    real_encode = precompute.encode_sample
    monkeypatch.setattr(
        precompute,
        "encode_sample",
        lambda enc, s, arch: encoded.append(s.name) or real_encode(enc, s, arch),
    )
    capsys.readouterr()
    assert run_precompute(*args) == 0
    captured = capsys.readouterr()
    assert captured.out == f"{out}\n" and "resuming, 1 of 3 samples already written" in captured.err
    assert encoded == sorted(TINY_TRAIN)[1:]  # only the missing samples
    assert not Path(f"{out}.tmp").exists()
    got, want = FeatureManifest(out), FeatureManifest(features)
    for name in want.names:
        np.testing.assert_array_equal(got.map(name), want.map(name))
    for col, values in want.rows().items():
        np.testing.assert_array_equal(got.rows()[col], values)


def _kill_midway(cmd: list[str], tmp: Path, threshold: int) -> None:
    """Start cmd and SIGKILL it once its temporary manifest has grown past threshold bytes."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            if tmp.stat().st_size > threshold:
                proc.send_signal(signal.SIGKILL)
                break
        time.sleep(0.01)
    assert proc.wait() == -signal.SIGKILL and tmp.exists()


def test_resume_after_sigkill(work: Path, tmp_path: Path) -> None:
    """A real kill -9 in the middle of a longer run: the rerun continues and ends identical.

    A kill that lands inside an HDF5 flush can leave the temporary file unreadable; precompute
    then says so and starts afresh. That is rare, so we allow a few attempts to see a resume.
    """
    for i in range(30):
        write_frame(tmp_path / "many", "train", f"city_{i:06d}_000019", seed=i)
    data = tmp_path / "many.h5"
    assert (
        run_verb(
            prepare.main,
            [
                "--dataroot",
                str(tmp_path / "many"),
                "--load_size",
                "0",
                "--jobs",
                "1",
                "--out",
                str(data),
            ],
        )
        == 0
    )
    cmd = [str(REPO / "bin" / "precompute"), "--run", str(work / "outputs" / "feat"), str(data)]
    ref, out = tmp_path / "ref.h5", tmp_path / "killed.h5"
    assert run_precompute(*cmd[1:], "--out", str(ref)) == 0  # in-process: no start-up cost
    want = FeatureManifest(ref)
    resumed = []
    for _attempt in range(3):
        out.unlink(missing_ok=True)
        _kill_midway([*cmd, "--out", str(out)], Path(f"{out}.tmp"), ref.stat().st_size // 3)
        assert not out.exists()
        p = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True)
        assert p.returncode == 0 and p.stdout == f"{out}\n", p.stderr
        got = FeatureManifest(out)
        for name in want.names:
            np.testing.assert_array_equal(got.map(name), want.map(name))
        for col, values in want.rows().items():
            np.testing.assert_array_equal(got.rows()[col], values)
        got.close()
        done = re.search(r"resuming, (\d+) of 30 samples already written", p.stderr)
        if done:
            resumed.append(int(done.group(1)))
            break
        assert "starting afresh" in p.stderr, p.stderr[-500:]
    assert resumed and 0 < resumed[0] < 30


def _fake_run(work: Path, name: str, **changes) -> Path:
    """A copy of the feature run with edited options (and optionally another checkpoint)."""
    src, dst = work / "outputs" / "feat", work / "outputs" / name
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    doc = runs.read_options(src)
    doc["options"].update(changes)
    (dst / "options.json").write_text(json.dumps(doc))
    shutil.copy(src / "G.ckpt", dst / "G.ckpt")
    return dst


def test_bad_inputs_exit_2_and_write_nothing(
    work: Path, features: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    from p2phd.nets import build_generator

    no_feat = _fake_run(work, "nofeat", instance_feat=False)
    loaded = _fake_run(work, "loaded", load_features=str(features))
    no_enc = _fake_run(work, "noenc")
    arch = runs.arch_from_dict(runs.read_options(no_enc)["options"])
    checkpoint.save(no_enc / "G.ckpt", {"netG": build_generator(arch)}, {"step": 1})
    no_ckpt = _fake_run(work, "nockpt")
    (no_ckpt / "G.ckpt").unlink()
    train, test = str(work / "train.h5"), str(work / "test.h5")
    cases = [
        ([str(no_feat), train], "not a feature run"),
        ([str(loaded), train], "has no encoder"),
        ([str(no_enc), train], "holds no encoder weights"),
        ([str(no_ckpt), train], "no G.ckpt"),
        ([str(work / "outputs" / "feat"), test], "no photos"),
        ([str(work / "outputs" / "feat"), str(features)], "expected a dataset manifest"),
        ([str(tmp_path), train], "not a p2phd run folder"),
    ]
    out = tmp_path / "bad.h5"
    for (run, data), message in cases[:-1]:  # in-process (cheap) ...
        capfd.readouterr()
        assert run_precompute("--run", run, data, "--out", str(out)) == 2, message
        err = capfd.readouterr()
        assert err.out == "" and len(err.err.strip().splitlines()) == 1 and message in err.err, (
            err.err
        )
        assert not out.exists() and not Path(f"{out}.tmp").exists()
    (run, data), message = cases[-1]  # ... and once through the executable
    p = subprocess.run(
        [str(REPO / "bin" / "precompute"), "--run", run, data, "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and p.stdout == "" and len(p.stderr.strip().splitlines()) == 1
    assert message in p.stderr and not out.exists() and not Path(f"{out}.tmp").exists()
    assert run_precompute("--run", str(work / "outputs" / "feat"), train, "--size", "64") == 2
    assert (
        run_precompute(
            "--run", str(work / "outputs" / "feat"), train, "--size", "8x8", "--load_size", "8"
        )
        == 2
    )


def test_dry_run_and_stdin(work: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "dry.h5"
    assert (
        run_precompute(
            "--run",
            str(work / "outputs" / "feat"),
            str(work / "train.h5"),
            "--out",
            str(out),
            "--dry-run",
        )
        == 0
    )
    captured = capsys.readouterr()
    assert captured.out == "" and "would write" in captured.err and not out.exists()
    p = subprocess.run(
        [
            str(REPO / "bin" / "precompute"),
            "--run",
            str(work / "outputs" / "feat"),
            "-",
            "--out",
            str(out),
        ],
        input=f"{work / 'train.h5'}\n",
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0 and p.stdout == f"{out}\n", p.stderr
    assert precompute.default_out(str(work / "outputs" / "feat")).name == "feat-features.h5"


def test_label_feat_pools_per_label_region(work: Path, tmp_path: Path) -> None:
    from p2phd.nets import build_encoder, build_generator

    run = _fake_run(work, "labelfeat", instance_feat=False, label_feat=True)
    arch = runs.arch_from_dict(runs.read_options(run)["options"])
    checkpoint.save(
        run / "G.ckpt", {"netG": build_generator(arch), "netE": build_encoder(arch, 35)}
    )
    out = tmp_path / "lf.h5"
    assert run_precompute("--run", str(run), str(work / "train.h5"), "--out", str(out)) == 0
    fm, ds = FeatureManifest(out), Dataset(work / "train.h5")
    assert fm.label_feat
    rows = fm.rows()
    np.testing.assert_array_equal(rows["instance"], rows["label"])  # one row per label region
    s = ds.sample(0)
    fmap = fm.map(s.name)
    for c in np.unique(s.label):
        region = fmap[:, s.label == c]
        assert (region == region[:, :1]).all()  # all cars share one feature: pooled per class


def test_a_stale_tmp_from_other_inputs_is_not_resumed(tmp_path: Path) -> None:
    """Resuming keeps only samples made by the same encoder from the same dataset."""
    attrs = {
        "feat_num": 3,
        "label_nc": 35,
        "label_feat": False,
        "encoder_sha256": "a" * 64,
        "dataset_sha256": "d" * 64,
    }
    rows = {
        "instance": np.array([7], np.int32),
        "label": np.array([7], np.int32),
        "feature": np.zeros((1, 3), np.float32),
        "area": np.ones(1, np.float32),
    }
    path = tmp_path / "f.h5"
    with (
        pytest.raises(KeyboardInterrupt),
        manifest.create(path, "features", "precompute", {}, resume=True) as f,
    ):
        FeatureWriter(f, ["a", "b"], attrs).add(0, np.zeros((3, 2, 2), np.float32), rows)
        raise KeyboardInterrupt
    with manifest.create(path, "features", "precompute", {}, resume=True) as f:
        assert FeatureWriter(f, ["a", "b"], attrs).done(0)  # same inputs: kept
        w = FeatureWriter(f, ["a", "b"], {**attrs, "encoder_sha256": "b" * 64})
        assert not w.done(0)  # another checkpoint: cleared
        for i in range(2):
            w.add(i, np.ones((3, 2, 2), np.float32), rows)
        w.finish()
    fm = FeatureManifest(path)
    assert fm.attrs["encoder_sha256"] == "b" * 64 and (fm.map("a") == 1).all()
    assert fm.rows()["sample"].tolist() == [0, 1] and fm.size == (2, 2)

"""p2phd as users install it: the wheel carries the package and its commands, and the verbs write
their default outputs under the working directory, never inside the package.

The wheel is built without build isolation and installed with --no-deps into a folder on
PYTHONPATH, so nothing is fetched: the dependencies are those of the test's own venv.
"""

import gzip
import io
import os
import shutil
import subprocess
import sys
import zipfile
from contextlib import redirect_stdout
from pathlib import Path

import h5py
import pytest

pytestmark = pytest.mark.slow  # builds and installs the wheel, runs verbs: not in test-fast

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "p2phd"
FID_WEIGHTS = REPO / "tests" / "fixtures" / "fid" / "fid_inception_random.pth.gz"
NVIDIA_FEAT_RUN = REPO / "tests" / "fixtures" / "nvidia" / "tiny_local_feat"  # has an encoder
TINY_TRAIN = [
    "--ngf", "4", "--ndf", "4", "--n_downsample_global", "2", "--n_blocks_global", "1",
    "--num_D", "1", "--n_layers_D", "1", "--load_size", "128", "--no_vgg_loss",
    "--niter", "1", "--niter_decay", "0", "--max_steps", "1", "--pynative",
]  # fmt: skip
VERBS = sorted(p.name for p in (REPO / "bin").iterdir() if not p.name.startswith("_"))


def package_files() -> set[str]:
    """Every file of the package tree as the wheel names it (no caches)."""
    return {
        p.relative_to(REPO).as_posix()
        for p in PKG.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def build_wheel(tmp: Path) -> Path:
    """pip wheel of a copy of the sources (an in-tree build would leave build/ in the checkout)."""
    src = tmp / "src"
    shutil.copytree(PKG, src / "p2phd", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "pyproject.toml", src)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-index", "--no-build-isolation", "-w", tmp / "dist", src],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp / "dist").glob("p2phd-*.whl")
    return wheel


def test_wheel_installs_every_verb_as_a_command(tmp_path: Path, tiny_cityscapes: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = z.read(entry_points).decode()
    missing = package_files() - names
    assert not missing, f"not in the wheel (package data?): {sorted(missing)}"
    for verb in VERBS:  # every bin/<verb> is also an installed command
        assert f"p2phd-{verb} = p2phd.commands:" in scripts, verb

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
        + ["--disable-pip-version-check", "--target", site, wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "work"  # a working directory outside the checkout
    work.mkdir()
    env = dict(
        os.environ, PYTHONPATH=str(site), PATH=f"{site / 'bin'}{os.pathsep}{os.environ['PATH']}"
    )
    env.pop("P2PHD_TRACEBACK", None)

    def run(*cmd: str | Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(c) for c in cmd], cwd=work, env=env, capture_output=True, text=True, timeout=300
        )

    where = run(sys.executable, "-c", "import p2phd; print(p2phd.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(site), where  # the wheel's, not the checkout

    helped = run("p2phd-render", "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: render") and "--run RUN" in helped.stdout

    # As msrun starts a worker: `python <script> args`. stdout: the manifest under `work`.
    prepared = run(
        sys.executable, site / "bin" / "p2phd-prepare", "--dataroot", tiny_cityscapes,
        "--load_size", "0", "--jobs", "1",
    )  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr
    assert prepared.stdout == "manifests/tiny_cityscapes-train-orig.h5\n"
    assert (work / prepared.stdout.strip()).is_file()
    assert not (site / "p2phd" / "manifests").exists()

    bad = run("p2phd-train", "--name", "x")  # the exit-code contract of bin/<verb>
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("p2phd-train: error: give the dataset manifest"), bad.stderr


def package_snapshot() -> dict[str, int]:
    """Files of the package tree (and the checkout's own output folders) with their mtimes."""
    trees = [PKG, REPO / "manifests", REPO / "outputs"]
    return {
        str(p): p.stat().st_mtime_ns
        for tree in trees
        if tree.is_dir()
        for p in tree.rglob("*")
        if "__pycache__" not in p.parts
    }


def test_default_outputs_go_to_the_working_directory(
    tmp_path: Path, tiny_cityscapes: Path, monkeypatch
) -> None:
    """Every verb without --out / --checkpoints_dir, from a folder outside the checkout: each
    output lands where docs/verbs.md's table says, relative to that folder; the package and the
    checkout gain nothing."""
    from p2phd.core.cli import run_verb
    from p2phd.data import prepare
    from p2phd.deploy import export
    from p2phd.features import cluster, precompute
    from p2phd.interop import importer
    from p2phd.metrics import evaluate
    from p2phd.rendering import render
    from p2phd.training import train

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    weights = tmp_path / "inception.pth"
    weights.write_bytes(gzip.decompress(FID_WEIGHTS.read_bytes()))
    before = package_snapshot()

    def run(verb, *argv: str | Path) -> Path:
        buf = io.StringIO()  # the verbs run in this process: cheaper than a child each
        with redirect_stdout(buf):
            rc = run_verb(verb.main, [str(a) for a in argv])
        assert rc == 0, f"{verb.__name__} exit {rc}"
        (line,) = buf.getvalue().splitlines()
        return Path(line)

    data = ["--dataroot", tiny_cityscapes, "--load_size", "0", "--jobs", "1"]
    train_h5 = run(prepare, *data)
    test_h5 = run(prepare, *data, "--phase", "test")
    assert (train_h5, test_h5) == (
        Path("manifests/tiny_cityscapes-train-orig.h5"),
        Path("manifests/tiny_cityscapes-test-orig.h5"),
    )
    first2 = run(prepare, *data, "--max_samples", "2")  # NVIDIA's --max_dataset_size
    assert first2 == Path("manifests/tiny_cityscapes-train-orig-first2.h5")
    trained = run(train, train_h5, "--name", "tiny", *TINY_TRAIN)
    assert trained == Path("outputs/tiny") and (trained / "G.ckpt").is_file()
    nv = run(importer, NVIDIA_FEAT_RUN, "--pynative")
    assert nv == Path("outputs/tiny_local_feat_nvidia") and (nv / "G.ckpt").is_file()
    feats = run(precompute, "--run", nv, train_h5, "--pynative")
    assert feats == Path("manifests/tiny_local_feat_nvidia-features.h5")
    clusters = run(cluster, feats, "--n_clusters", "2")
    assert clusters == Path("manifests/tiny_local_feat_nvidia-clusters.h5")
    rendered = run(render, "--run", trained, train_h5, "--pynative", "--how_many", "2")
    assert rendered == trained / "render-train" and (rendered / "index.html").is_file()
    assert len(list(rendered.glob("*_synthesized.png"))) == 2  # NVIDIA's --how_many
    exported = run(export, "--run", trained, "--pynative")
    assert exported == trained / "tiny-64x128.mindir" and exported.is_file()
    metrics = run(evaluate, rendered, "--inception", weights, "--pynative")
    assert metrics == rendered / "metrics.json" and metrics.is_file()
    with h5py.File(first2) as f:
        assert f.attrs["num_samples"] == 2
    assert (work / "manifests").is_dir() and (work / "outputs").is_dir()
    assert package_snapshot() == before

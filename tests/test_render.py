"""bin/render: the 15 real test label maps with a tiny trained run, resume after SIGKILL, shards +
merge, refusal of mismatched inputs, feature runs (clusters, variants, styles, encoded photos)
and --original_size. Tiny: ngf 4, 2 downsamplings, 1 residual block, 64x128 images."""

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import REPO, sample_manifest, write_ab_pairs
from PIL import Image
from train_util import feature_run as _feature_run
from train_util import hand_clusters as _clusters
from train_util import here

from p2phd.core import manifest, runs
from p2phd.core.cli import run_verb
from p2phd.data import prepare
from p2phd.data.dataset import Dataset
from p2phd.rendering import render
from p2phd.rendering.page import read_manifest

pytestmark = pytest.mark.slow  # renders with a run bin/train trained: not in `make test-fast`

BIN = REPO / "bin"
TEST_NAMES = 15
# G's depth for the runs here: 2 downsamplings, 1 block. Every render compiles G and runs it on
# up to 15 maps; NVIDIA's default depth (4, 9) costs 1.7 CPU s more per render, nothing asserted.
SHALLOW = dict(n_downsample_global=2, n_blocks_global=1)


def _prepare(root: Path, out: Path, *extra: str) -> Path:
    assert (
        run_verb(prepare.main, ["--dataroot", str(root), "--jobs", "1", "--out", str(out), *extra])
        == 0
    )
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("render")


@pytest.fixture(scope="module")
def test_manifest(work: Path) -> Path:
    """The sample's 15 test label maps (+ instance maps, no photos) at 64x128."""
    return sample_manifest("test", 128, copy_to=work)


@pytest.fixture(scope="module")
def train_manifest(work: Path) -> Path:
    """The sample's 8 train frames with photos at 64x128."""
    return sample_manifest("train", 128, copy_to=work)


@pytest.fixture(scope="module")
def trained_run(work: Path, train_manifest: Path) -> Path:
    """A tiny run made by train (one step, in this process): options.json and G.ckpt as train
    writes them."""
    args = [
        train_manifest,
        "--name",
        "tiny",
        "--checkpoints_dir",
        work,
        "--ngf",
        "4",
        "--ndf",
        "4",
        "--num_D",
        "1",
        "--n_downsample_global",
        SHALLOW["n_downsample_global"],
        "--n_blocks_global",
        SHALLOW["n_blocks_global"],
        "--load_size",
        "128",
        "--no_vgg_loss",
        "--niter",
        "1",
        "--niter_decay",
        "0",
        "--max_steps",
        "1",
        "--pynative",  # one step: cheaper than compiling it; these tests use the weights only
    ]
    res = here("train", args)
    assert res.returncode == 0, res.stderr[-2000:]
    run = Path(res.stdout.strip())
    assert (run / "G.ckpt").is_file()
    return run


def _render_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BIN / "render"), *args], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def reference(work: Path, trained_run: Path, test_manifest: Path) -> Path:
    """An uninterrupted render of the test split through the command line."""
    out = work / "reference"
    res = _render_cli("--run", str(trained_run), str(test_manifest), "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout == f"{out}\n"  # stdout carries only the output folder
    return out


def _pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def _generator(run: Path):
    """(G loaded from the run's G.ckpt in inference mode, its architecture)."""
    from p2phd.core import checkpoint
    from p2phd.nets import build_generator

    arch = runs.arch_from_dict(runs.read_options(run)["options"])
    G = build_generator(arch)
    assert checkpoint.load(run / "G.ckpt", {"netG": G}).complete
    G.set_train(False)
    return G, arch


def _generator_output(G, arch, ds: Dataset, i: int) -> np.ndarray:
    """G's float output for sample i, with the input built here in NumPy (one-hot | edge)."""
    import mindspore as ms

    s = ds.sample(i)
    onehot = (np.arange(arch.label_nc)[:, None, None] == s.label[None]).astype(np.float32)
    inst = s.inst
    edge = np.zeros(inst.shape, bool)
    dx, dy = inst[:, 1:] != inst[:, :-1], inst[1:, :] != inst[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    x = np.concatenate([onehot, edge[None].astype(np.float32)])[None]
    return G(ms.Tensor(x)).asnumpy()[0]


def test_renders_every_test_label_map(
    reference: Path, trained_run: Path, test_manifest: Path
) -> None:
    ds = Dataset(test_manifest)
    assert len(ds) == TEST_NAMES
    synth = sorted(p.name for p in reference.glob("*_synthesized.png"))
    assert synth == sorted(f"{n}_synthesized.png" for n in ds.names)
    assert all(re.fullmatch(r"frankfurt_\d{6}_\d{6}_synthesized\.png", n) for n in synth)
    assert sorted(p.name for p in reference.glob("*_label.png")) == sorted(
        f"{n}_label.png" for n in ds.names
    )
    assert not list(reference.glob("*_real.png"))  # the test split has no photos
    page = (reference / "index.html").read_text()
    assert page.count("<tr><td>frankfurt_") == TEST_NAMES
    for n in ds.names:
        assert f'src="{n}_synthesized.png"' in page and f'src="{n}_label.png"' in page
    m = read_manifest(reference / "render.h5")
    assert [r["name"] for r in m["rows"]] == ds.names
    assert m["attrs"]["schema"] == "p2phd.render/1" and m["attrs"]["complete"]
    assert m["attrs"]["checkpoint_sha256"] == manifest.sha256_file(trained_run / "G.ckpt")
    assert m["attrs"]["dataset_sha256"] == ds.sha256()
    assert all(r["size"] == [64, 128] for r in m["rows"])

    # Pixels: clip(round((x+1)/2*255)) of G's output, G run here on an input built in NumPy.
    differs_from_truncation = False
    G, arch = _generator(trained_run)  # one G (one graph compile) for the three samples
    for i in (0, 7, 14):
        y = _generator_output(G, arch, ds, i)
        scaled = ((y.astype(np.float64) + 1) / 2 * 255).transpose(1, 2, 0)
        want = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
        got = np.asarray(Image.open(reference / f"{ds.names[i]}_synthesized.png"))
        assert got.dtype == np.uint8 and got.shape == (64, 128, 3)
        # G compiled here and G in render's engine (the default: an ONNX engine on the CPU,
        # docs/render-engines.md) sum in another order: float32 steps of ~1e-6 (OpenVINO's up to
        # a few 1e-5) of G's output, i.e. < 1e-2 of a level (1/127.5). That flips a level only
        # where the value sits that close to a .5 boundary: equal everywhere else.
        on_boundary = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-2
        np.testing.assert_array_equal(got[~on_boundary], want[~on_boundary])
        assert np.abs(got.astype(int) - want)[on_boundary].max(initial=0) <= 1
        assert on_boundary.mean() < 0.05
        truncated = ((y + 1) / 2 * 255).astype(np.uint8).transpose(1, 2, 0)
        differs_from_truncation |= bool((truncated != got).any())
        label_png = np.asarray(Image.open(reference / f"{ds.names[i]}_label.png"))
        from p2phd.core.palette import colourise

        np.testing.assert_array_equal(label_png, colourise(ds.sample(i).label, 35))
    assert differs_from_truncation  # the check can tell rounding from the seed's truncation


def test_kill_mid_render_then_resume(
    work: Path, reference: Path, trained_run: Path, test_manifest: Path, capfd
) -> None:
    out = work / "killed"
    # Let the real verb run in a subprocess and SIGKILL itself while writing the 6th image,
    # after a partial temporary exists: the harshest interruption there is.
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(REPO)!r})
from p2phd.rendering import render
from p2phd.rendering import files as rf
from p2phd.core.cli import run_verb
orig, n = rf.save_png, [0]
def dying(array, path):
    if path.name.endswith("_synthesized.png"):
        n[0] += 1
        if n[0] == 6:
            rf.tmp_name(path).write_bytes(b"partial")
            os.kill(os.getpid(), signal.SIGKILL)
    orig(array, path)
rf.save_png = dying
sys.exit(run_verb(render.main, ["--run", {str(trained_run)!r}, {str(test_manifest)!r}, "--out", {str(out)!r}]))
"""
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == -9, res.stderr[-2000:]
    assert list(out.glob(".*.tmp"))  # the killed writer left its temporary behind
    done = {
        n
        for n in Dataset(test_manifest).names
        if (out / f"{n}_synthesized.png").exists() and (out / f"{n}_label.png").exists()
    }
    assert 0 < len(done) < TEST_NAMES and not (out / "render.h5").exists()
    before = {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in out.glob("*.png")
        if p.name.rsplit("_", 1)[0] in done
    }

    capfd.readouterr()
    assert (
        run_verb(render.main, ["--run", str(trained_run), str(test_manifest), "--out", str(out)])
        == 0
    )
    err = capfd.readouterr().err
    assert f"{TEST_NAMES - len(done)} of {TEST_NAMES} samples" in err  # only the missing ones
    after = {name: (out / name).stat() for name in before}
    assert all((st.st_ino, st.st_mtime_ns) == before[name] for name, st in after.items())
    assert not list(out.glob(".*.tmp"))  # the dead writer's temporary was removed
    assert _pngs(out) == _pngs(reference)  # identical to the uninterrupted render
    assert len(read_manifest(out / "render.h5")["rows"]) == TEST_NAMES


def test_two_shards_and_merge_equal_one_render(
    work: Path, trained_run: Path, test_manifest: Path
) -> None:
    # Batches of 2: shard 1's last sample (row 13) is alone in its batch, while the single render
    # pairs it with row 12; padding every call to --batch_size keeps the pixels identical.
    single = work / "single-bs2"
    assert (
        run_verb(
            render.main,
            [
                "--run",
                str(trained_run),
                str(test_manifest),
                "--out",
                str(single),
                "--batch_size",
                "2",
            ],
        )
        == 0
    )
    out = work / "sharded"
    base = ["--run", str(trained_run), str(test_manifest), "--out", str(out), "--batch_size", "2"]
    assert run_verb(render.main, [*base, "--shard", "0/2"]) == 0
    assert len(list(out.glob("*_synthesized.png"))) == 8
    assert run_verb(render.main, [*base, "--merge"]) == 2  # shard 1 is still missing
    assert not (out / "render.h5").exists() and not (out / "index.html").exists()
    assert run_verb(render.main, [*base, "--shard", "1/2"]) == 0
    shard0 = read_manifest(out / "render-shard-0-of-2.h5")
    shard1 = read_manifest(out / "render-shard-1-of-2.h5")
    assert [r["row"] for r in shard0["rows"]] == list(range(0, 15, 2))
    assert [r["row"] for r in shard1["rows"]] == list(range(1, 15, 2))
    assert not shard0["attrs"]["complete"]
    assert run_verb(render.main, [*base, "--merge"]) == 0
    assert _pngs(out) == _pngs(single)
    merged, ref = read_manifest(out / "render.h5"), read_manifest(single / "render.h5")
    assert merged["rows"] == ref["rows"] and merged["attrs"]["complete"]
    assert (out / "index.html").read_text().count("<tr><td>frankfurt_") == TEST_NAMES


def _refused(args: list[str], out: Path, capfd, match: str) -> None:
    capfd.readouterr()
    assert run_verb(render.main, [*args, "--out", str(out)]) == 2
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err
    assert not out.exists()


def test_mismatched_inputs_exit_2_and_write_nothing(
    work: Path, trained_run: Path, test_manifest: Path, tiny_cityscapes: Path, tmp_path: Path, capfd
) -> None:
    out = tmp_path / "never"
    no_ckpt = tmp_path / "no_ckpt"
    no_ckpt.mkdir()
    shutil.copy(trained_run / "options.json", no_ckpt / "options.json")
    _refused(["--run", str(no_ckpt), str(test_manifest)], out, capfd, "no generator checkpoint")

    other_nc = _prepare(
        tiny_cityscapes,
        tmp_path / "nc40.h5",
        "--phase",
        "test",
        "--label_nc",
        "40",
        "--load_size",
        "0",
    )
    _refused(["--run", str(trained_run), str(other_nc)], out, capfd, "label_nc 40.*label_nc 35")
    no_inst = _prepare(
        tiny_cityscapes,
        tmp_path / "noinst.h5",
        "--phase",
        "test",
        "--no_instance",
        "--load_size",
        "0",
    )
    _refused(["--run", str(trained_run), str(no_inst)], out, capfd, "instance maps")

    feat_run = tmp_path / "feat_run"
    feat_run.mkdir()
    doc = runs.read_options(trained_run)
    runs.write_options(feat_run, {**doc["options"], "instance_feat": True}, doc["dataset"])
    shutil.copy(trained_run / "G.ckpt", feat_run / "G.ckpt")
    _refused(["--run", str(feat_run), str(test_manifest)], out, capfd, "--clusters")
    _refused(
        ["--run", str(trained_run), str(test_manifest), "--shard", "2/2"], out, capfd, "--shard"
    )

    # The command line: exit status 2, one line on stderr, nothing on stdout.
    res = _render_cli("--run", str(no_ckpt), str(test_manifest), "--out", str(out))
    assert res.returncode == 2 and res.stdout == "" and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists()
    # --dry-run checks and reports but writes nothing.
    assert (
        run_verb(
            render.main,
            ["--run", str(trained_run), str(test_manifest), "--out", str(out), "--dry-run"],
        )
        == 0
        and not out.exists()
    )


def test_feature_run_with_clusters_variants_and_encoded_photos(
    work: Path, train_manifest: Path, tmp_path: Path
) -> None:
    run = _feature_run(tmp_path / "feat", train_manifest)
    clusters = _clusters(tmp_path / "clusters.h5")
    out = tmp_path / "styles"
    args = [
        "--run",
        str(run),
        str(train_manifest),
        "--clusters",
        str(clusters),
        "--out",
        str(out),
        "--variants",
        "2",
        "--style",
        "car=1",
        "--batch_size",
        "2",
    ]
    assert run_verb(render.main, args) == 0
    ds = Dataset(train_manifest)
    m = read_manifest(out / "render.h5")
    assert m["attrs"]["mode"] == "clusters" and len(m["rows"]) == len(ds) == 8
    for r in m["rows"]:
        assert r["synthesized"] == [
            f"{r['name']}_synthesized_v0.png",
            f"{r['name']}_synthesized_v1.png",
        ]
        assert r["real_image"] == f"{r['name']}_real.png" and r["variant"] == [0, 1]
        for style in r["style"]:
            objects = json.loads(style)
            assert all(centre == 1 for _, cls, centre in objects if cls == 26)  # user's choice
            assert all(centre == -1 for _, cls, centre in objects if cls not in (7, 26))
    road_draws = {
        tuple(c for _, cls, c in json.loads(s) if cls == 7) for r in m["rows"] for s in r["style"]
    }
    assert len(road_draws) > 1  # seeded draws differ between samples/variants
    v0 = np.asarray(Image.open(out / m["rows"][0]["synthesized"][0]))
    v1 = np.asarray(Image.open(out / m["rows"][0]["synthesized"][1]))
    assert v0.shape == (64, 128, 3) and not np.isnan(v0).any()
    real = np.asarray(Image.open(out / m["rows"][0]["real_image"]))
    np.testing.assert_array_equal(real, ds.sample(0).photo)
    page = (out / "index.html").read_text()
    assert "<th>variant 1</th>" in page and "<th>real</th>" in page
    if (v0 == v1).all():  # the two draws may coincide for sample 0; some sample must differ
        assert any(r["style"][0] != r["style"][1] for r in m["rows"])

    enc = tmp_path / "encoded"
    assert (
        run_verb(
            render.main,
            ["--run", str(run), str(train_manifest), "--use_encoded_image", "--out", str(enc)],
        )
        == 0
    )
    m = read_manifest(enc / "render.h5")
    assert m["attrs"]["mode"] == "encoded" and all(r["style"] == ["encoded"] for r in m["rows"])
    assert len(list(enc.glob("*_synthesized.png"))) == 8
    # Other settings into the same folder are refused; --overwrite replaces the renders.
    assert run_verb(render.main, args[:-6] + ["--out", str(enc)]) == 2
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(enc / "holiday.png")  # not render's
    assert run_verb(render.main, args[:-6] + ["--out", str(enc), "--overwrite"]) == 0
    assert read_manifest(enc / "render.h5")["attrs"]["mode"] == "clusters"
    assert (enc / "holiday.png").exists()


def test_original_size_and_a_run_trained_at_another_size(
    trained_run: Path, tiny_cityscapes: Path, tmp_path: Path
) -> None:
    # Stored at 32x64 (sources are 64x128); the run was trained at width 128, so G sees 64x128.
    small = _prepare(tiny_cityscapes, tmp_path / "small.h5", "--phase", "test", "--load_size", "64")
    args = ["--run", str(trained_run), str(small)]
    assert run_verb(render.main, [*args, "--out", str(tmp_path / "a")]) == 0
    assert run_verb(render.main, [*args, "--out", str(tmp_path / "b"), "--original_size"]) == 0
    for name in Dataset(small).names:
        a = Image.open(tmp_path / "a" / f"{name}_synthesized.png")
        b = Image.open(tmp_path / "b" / f"{name}_synthesized.png")
        assert (a.height, a.width) == (32, 64) and (b.height, b.width) == (64, 128)
        assert Image.open(tmp_path / "b" / f"{name}_label.png").size == (128, 64)
    with h5py.File(tmp_path / "b" / "render.h5") as f:
        assert f["size"][()].tolist() == [[64, 128]] * 2 and bool(f.attrs["original_size"])


def test_style_words_do_not_swallow_the_manifest() -> None:
    argv = ["--run", "r", "--style", "car=3", "person=1", "m.h5", "--style", "bus=0"]
    assert render.join_style_args(argv) == ["--run", "r", "m.h5", "--style", "car=3,person=1,bus=0"]
    assert render.parse_shard("1/3") == (1, 3)


def test_rgb_input_run_from_stdin_into_the_default_folder(tmp_path: Path) -> None:
    """label_nc 0 (RGB inputs, no instances), the manifest path on stdin, <run>/render-<split>."""
    from p2phd.core import checkpoint

    write_ab_pairs(tmp_path / "ab")
    man = _prepare(
        tmp_path / "ab", tmp_path / "ab.h5", "--label_nc", "0", "--no_instance", "--load_size", "0"
    )
    run = tmp_path / "rgb_run"
    run.mkdir()
    arch = runs.ArchOptions(ngf=4, load_size=128, label_nc=0, no_instance=True, **SHALLOW)
    runs.write_options(run, dataclasses.asdict(arch), {"path": str(man), "sha256": ""})
    from p2phd.nets import build_generator

    checkpoint.save(run / "G.ckpt", {"netG": build_generator(arch)}, {"epoch": 1, "step": 1})
    res = subprocess.run(
        [sys.executable, str(BIN / "render"), "--run", str(run), "-"],
        input=f"{man}\n",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = run / "render-train"
    assert res.stdout == f"{out}\n"
    ds = Dataset(man)
    for i, name in enumerate(ds.names):
        s = ds.sample(i)
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{name}_label.png")), s.label)
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{name}_real.png")), s.photo)
        assert Image.open(out / f"{name}_synthesized.png").size == (128, 64)
    assert (out / "index.html").read_text().count("<th>real</th>") == 1


def _capped_render(*args: str, fsize: int) -> subprocess.CompletedProcess:
    """bin/render with every file it writes capped at fsize bytes (as a full disk: EFBIG)."""
    import resource
    import signal

    def cap() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, str(BIN / "render"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=cap,
    )


def test_disk_full_and_a_second_renderer(
    reference: Path, trained_run: Path, test_manifest: Path, tmp_path: Path, capsys
) -> None:
    from conftest import held_by_child

    out = tmp_path / "r"
    shutil.copytree(reference, out)
    args = ["--run", str(trained_run), str(test_manifest), "--out", str(out)]
    # another process renders into the folder (or the same shard): refused at once
    for tag, extra in (("", []), ("shard-1-of-2", ["--shard", "1/2"])):
        with held_by_child(out, tag) as pid:
            assert run_verb(render.main, [*args, *extra]) == 2
        assert f"is being written by another process (pid {pid})" in capsys.readouterr().err
    # the disk fills while the writer threads save the one missing sample's PNGs
    victim = sorted(out.glob("*_synthesized.png"))[3]
    size = victim.stat().st_size
    victim.unlink()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert (out / "render-settings.json").stat().st_size < size // 2
    res = _capped_render(*args, fsize=size // 2)
    assert res.returncode == 1 and res.stdout == "", res.stderr[-2000:]
    failed = re.findall(r"render: failed: .*", res.stderr)
    assert failed == [
        f"render: failed: no space left on the device writing {victim} "
        "(nothing was replaced; free some space and run again)"
    ], res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before  # the earlier renders intact, nothing partial, no temporaries
    assert not (tmp_path / ".r.lock").exists()  # the render's (the killed children's may stay)

"""bin/export and bin/render --mindir on the 15 real test label maps at 64x128 (tiny random runs).

The exported MindIR, loaded with mindspore.load + nn.GraphCell, must give byte-identical PNGs to
bin/render from the checkpoint, for a global (512p-style) run, a local-enhancer (1024p-style) run
with --uint8 and batch 2, and an instance-feature run with a feature map built by precompute +
cluster. Bad input exits 2 with one line naming what is wrong (ONNX: tests/test_onnx.py).
"""

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, sample_manifest, write_ab_pairs
from PIL import Image
from train_util import here

from p2phd.core import manifest, runs
from p2phd.core.cli import run_verb
from p2phd.data import prepare
from p2phd.data.dataset import Dataset
from p2phd.deploy import export, sidecar
from p2phd.rendering import render
from p2phd.rendering.page import read_manifest

pytestmark = pytest.mark.slow  # exports and renders MindIRs: not in `make test-fast`

TINY = dict(ngf=4, nef=4, n_downsample_global=2, n_blocks_global=1, n_blocks_local=1)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("export")


def _prepare(out: Path, phase: str) -> Path:
    """The sample's split at 64x128 (conftest's, prepared once per session), copied to out."""
    return Path(shutil.copy(sample_manifest(phase, 128), out))


@pytest.fixture(scope="module")
def test_manifest(work: Path) -> Path:
    """The 15 real test label + instance maps at 64x128 (no photos)."""
    return _prepare(work / "test.h5", "test")


def make_run(folder: Path, dataset: Path, seed: int = 0, **arch_kw) -> Path:
    """A run folder as train leaves it (options.json + G.ckpt) with random weights."""
    from p2phd.core import checkpoint, runtime
    from p2phd.nets import build_encoder, build_generator

    runtime.setup("CPU", seed=seed)
    arch = runs.ArchOptions(load_size=128, **{**TINY, **arch_kw})
    folder.mkdir(parents=True)
    runs.write_options(folder, dataclasses.asdict(arch), {"path": str(dataset), "sha256": ""})
    cells = {"netG": build_generator(arch)}
    if arch.use_features():
        cells["netE"] = build_encoder(arch, 1)
    checkpoint.save(folder / "G.ckpt", cells, {"epoch": 3, "step": 7})
    return folder


def _synth(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*_synthesized.png"))}


def _export(*args: str) -> Path:
    res = here("export", list(args))  # in this process; test_onnx runs bin/export itself
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    assert len(lines) == 1, res.stdout  # stdout carries only the file written
    return Path(lines[0])


def _same_renders(run: Path, model: Path, man: Path, tmp: Path, *extra: str) -> Path:
    """Render from the checkpoint and from the MindIR, both in MindSpore: byte-identical PNGs."""
    a, b = tmp / "from-ckpt", tmp / "from-mindir"
    ckpt = ["--run", str(run), "--engine", "mindspore"]
    assert run_verb(render.main, [*ckpt, str(man), "--out", str(a), *extra]) == 0
    assert run_verb(render.main, ["--mindir", str(model), str(man), "--out", str(b), *extra]) == 0
    pa, pb = _synth(a), _synth(b)
    assert len(pa) == len(Dataset(man)) and pa.keys() == pb.keys()
    assert [k for k in pa if pa[k] != pb[k]] == []
    # the same page and render manifest, naming the MindIR as what rendered
    ma, mb = read_manifest(a / "render.h5"), read_manifest(b / "render.h5")
    assert [r["synthesized"] for r in ma["rows"]] == [r["synthesized"] for r in mb["rows"]]
    assert mb["attrs"]["checkpoint_sha256"] == manifest.sha256_file(model)
    assert mb["attrs"]["epoch"] == 3 and mb["attrs"]["step"] == 7
    assert (b / "index.html").is_file()
    return a


def test_global_run_mindir_matches_render(work: Path, test_manifest: Path, tmp_path: Path) -> None:
    import mindspore as ms
    from mindspore import nn

    from p2phd.core.palette import to_uint8

    run = make_run(tmp_path / "g512", test_manifest)
    model = _export("--run", str(run))  # size from the run's manifest: 64x128
    assert model == run / "g512-64x128.mindir" and model.is_file()
    side = json.loads(sidecar.path_for(model).read_text())
    assert side["schema"] == "p2phd.export/1" and side["size"] == [64, 128]
    assert side["run"]["checkpoint_sha256"] == manifest.sha256_file(run / "G.ckpt")
    assert side["sha256"] == manifest.sha256_file(model) and side["label_nc"] == 35
    assert [(i["name"], i["dtype"], i["shape"]) for i in side["inputs"]] == [
        ("label", "int32", [1, 64, 128]),
        ("instance", "int32", [1, 64, 128]),
    ]
    assert side["output"]["shape"] == [1, 3, 64, 128] and side["versions"]["mindspore"]
    ref = _same_renders(run, model, test_manifest, tmp_path)

    # A deployment without p2phd: raw label ids and raw Cityscapes instance ids (26001...),
    # not render's renumbered index, into the GraphCell; the pixels are still render's.
    net = nn.GraphCell(ms.load(str(model)))
    ds = Dataset(test_manifest)
    for i in (0, 7):
        s = ds.sample(i)
        out = net(ms.Tensor(s.label[None].astype(np.int32)), ms.Tensor(s.inst[None]))
        png = np.asarray(Image.open(ref / f"{s.name}_synthesized.png"))
        np.testing.assert_array_equal(to_uint8(out.asnumpy()[0]), png)


def test_local_enhancer_uint8_batch2_mindir_matches_render(
    work: Path, test_manifest: Path, tmp_path: Path
) -> None:
    run = make_run(tmp_path / "l1024", test_manifest, seed=1, netG="local", resize_or_crop="none")
    out = tmp_path / "deploy" / "local.mindir"
    assert _export("--run", str(run), "--uint8", "--batch_size", "2", "--out", str(out)) == out
    side = json.loads(sidecar.path_for(out).read_text())
    assert side["output"]["dtype"] == "uint8" and side["output"]["shape"] == [2, 64, 128, 3]
    assert side["stride"] == 8
    # 15 samples in batches of 2: the last call is padded exactly as render pads it
    _same_renders(run, out, test_manifest, tmp_path, "--batch_size", "2")


def test_feature_run_with_cluster_built_maps(
    work: Path, test_manifest: Path, tmp_path: Path
) -> None:
    from p2phd.features import cluster, precompute

    train = _prepare(work / "train.h5", "train")
    run = make_run(tmp_path / "feat", train, seed=2, instance_feat=True)
    feats = tmp_path / "features.h5"
    clusters = tmp_path / "clusters.h5"
    assert run_verb(precompute.main, ["--run", str(run), str(train), "--out", str(feats)]) == 0
    args = [str(feats), "--n_clusters", "2", "--n_init", "1", "--out", str(clusters)]
    assert run_verb(cluster.main, args) == 0
    model = tmp_path / "feat.mindir"
    assert run_verb(export.main, ["--run", str(run), "--out", str(model)]) == 0
    side = json.loads(sidecar.path_for(model).read_text())
    assert [i["name"] for i in side["inputs"]] == ["label", "instance", "features"]
    assert side["inputs"][2]["shape"] == [1, 3, 64, 128] and side["feat_num"] == 3
    _same_renders(run, model, test_manifest, tmp_path, "--clusters", str(clusters))
    # an exported graph has no encoder: --use_encoded_image is refused
    enc = ["--mindir", str(model), str(train), "--use_encoded_image", "--out", str(tmp_path / "e")]
    assert run_verb(render.main, enc) == 2


def _exit2(capsys, args: list[str], *words: str) -> str:
    assert run_verb(export.main, args) == 2
    err = capsys.readouterr()
    line = err.err.strip()
    assert err.out == "" and "\n" not in line, err
    for w in words:
        assert w in line, line
    return line


def test_bad_input_exits_2_naming_it(test_manifest: Path, tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path / "r", test_manifest)
    out = ["--out", str(tmp_path / "x.mindir")]
    _exit2(capsys, ["--run", str(run), "--size", "66x130", *out], "66x130", "multiples of 4")
    line = _exit2(capsys, ["--run", str(run), "--size", "66x130", *out])
    assert "64x128, 64x132, 68x128, 68x132" in line  # the nearest sizes G can take
    _exit2(capsys, ["--run", str(run), "--format", "TFLITE"], "--format", "TFLITE")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    _exit2(capsys, ["--run", str(run), "--out", str(blocker / "m.mindir")], str(blocker))
    _exit2(capsys, ["--run", str(run), "--out", str(tmp_path / "m.onnx")], "MINDIR", ".mindir")
    no_ckpt = tmp_path / "untrained"
    no_ckpt.mkdir()
    (no_ckpt / "options.json").write_text((run / "options.json").read_text())
    _exit2(capsys, ["--run", str(no_ckpt), *out], "G.ckpt", str(no_ckpt))
    _exit2(capsys, ["--run", str(tmp_path / "nowhere"), *out], "nowhere", "options.json")
    # --dry-run checks everything and writes nothing
    assert run_verb(export.main, ["--run", str(run), *out, "--dry-run"]) == 0
    assert not any(tmp_path.glob("*.mindir*")) and capsys.readouterr().out == ""
    _exit2(capsys, ["--run", str(run), "--half", *out], "--half", "ONNX")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["a-file"]


def test_render_mindir_refuses_another_size(test_manifest: Path, tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path / "r", test_manifest)
    model = tmp_path / "m.mindir"
    assert run_verb(export.main, ["--run", str(run), "--size", "32x64", "--out", str(model)]) == 0
    args = ["--mindir", str(model), str(test_manifest), "--out", str(tmp_path / "o")]
    assert run_verb(render.main, args) == 2
    assert "--size 64x128" in capsys.readouterr().err
    assert run_verb(render.main, [*args, "--run", str(run)]) == 2
    side = sidecar.path_for(model)
    side.write_text(side.read_text().replace(manifest.sha256_file(model), "0" * 64))
    assert run_verb(render.main, args) == 2  # a model that is not the one its sidecar describes
    assert "does not match the sha256 in its sidecar" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_make_export_plan(tmp_path: Path) -> None:
    """`make export MODE=512p` trains the 512p run if needed, then runs bin/export on it."""
    res = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "-n", "export", "MODE=512p"]
        + ["RUN=zz_mk", f"DATA={tmp_path}", "EXPORT_EXTRA=--uint8"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if "bin/" in ln]
    assert "bin/train" in lines[-2] and "--name zz_mk_512p" in lines[-2]
    assert lines[-1].startswith("bin/export --run outputs/zz_mk_512p")
    assert lines[-1].split()[-1] == "--uint8"


def test_rgb_input_run_without_instances(tmp_path: Path) -> None:
    """label_nc 0: the graph takes the RGB input alone (no instance input), --uint8 output."""
    write_ab_pairs(tmp_path / "ab")
    man = tmp_path / "ab.h5"
    args = ["--dataroot", str(tmp_path / "ab"), "--label_nc", "0", "--no_instance"]
    assert run_verb(prepare.main, [*args, "--load_size", "0", "--out", str(man)]) == 0
    run = make_run(tmp_path / "rgb", man, label_nc=0, no_instance=True)
    model = tmp_path / "rgb.mindir"
    assert run_verb(export.main, ["--run", str(run), "--uint8", "--out", str(model)]) == 0
    side = json.loads(sidecar.path_for(model).read_text())
    assert [(i["name"], i["dtype"], i["shape"]) for i in side["inputs"]] == [
        ("label", "float32", [1, 3, 64, 128])
    ]
    _same_renders(run, model, man, tmp_path)

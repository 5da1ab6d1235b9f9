"""bin/import: NVIDIA pix2pixHD checkpoints (made by NVIDIA's code and torch.save, see
tests/fixtures/make_nvidia_fixtures.py) become p2phd runs whose G, D and E compute what NVIDIA's
did; hostile, broken and foreign files exit 2 naming the file. No torch here.
"""

import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor
from pth_writer import write_legacy_pth, write_zip_pth

from p2phd.core import checkpoint, runs
from p2phd.core.cli import run_verb
from p2phd.interop import importer
from p2phd.interop.nvidia import read_opt_txt
from p2phd.interop.pth import LEGACY_MAGIC, LEGACY_PROTOCOL, read_state_dict
from p2phd.nets import build_discriminator
from p2phd.nets.encoding import dense_index

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures" / "nvidia"
RUNS = {  # imported run name -> NVIDIA checkpoints folder
    "global": FIX / "tiny_global",
    "global_zip": FIX / "tiny_global" / "zip",
    "local_feat": FIX / "tiny_local_feat",
    "batch": FIX / "tiny_batch",
}
# relative L2 against NVIDIA's torch outputs on the same weights: both float32, convolutions by
# different libraries (oneDNN here, torch's there) summing up to 9 * 1024 products in their own
# orders; the error grows ~1e-7 per layer through these small nets, ~1e-6 at G's output
TOL = 1e-5


def _import(*argv) -> int:
    return run_verb(importer.main, [str(a) for a in argv])


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("imported")


@pytest.fixture(scope="module")
def imported(out: Path) -> dict[str, Path]:
    for name, folder in RUNS.items():
        assert _import(folder, "--checkpoints_dir", out, "--name", name) == 0, name
    return {name: out / name for name in RUNS}


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("name", list(RUNS))
def test_outputs_equal_nvidia(imported, name):
    """G (and E, and every D scale and layer) on NVIDIA's fixed input: <= 1e-5 relative L2."""
    run = imported[name]
    exp = np.load(
        RUNS[name].parent / "expected.npz" if name == "global_zip" else RUNS[name] / "expected.npz"
    )
    G, E, arch, meta = runs.load_inference(run, max_instances=64)
    assert _rel(G(Tensor(exp["G_input"])).asnumpy(), exp["G"]) <= TOL
    if name == "local_feat":
        index, _ = dense_index(exp["inst"])
        assert E is not None
        assert _rel(E(Tensor(exp["image"]), Tensor(index)).asnumpy(), exp["E"]) <= TOL
    state = runs.latest_state(run)
    if name in ("global", "local_feat"):
        D = build_discriminator(arch)
        D.set_train(False)
        assert checkpoint.load(state / "state.ckpt", {"netD": D}).complete
        outs = D(Tensor(exp["D_input"]))
        keys = [k for k in exp.files if k.startswith("D_") and k != "D_input"]
        assert len(keys) == sum(len(s) for s in outs) == {"global": 2 * 4, "local_feat": 3}[name]
        for i, scale in enumerate(outs):
            for j, o in enumerate(scale):
                assert _rel(o.asnumpy(), exp[f"D_{i}_{j}"]) <= TOL, (i, j)
    else:
        assert state is None  # no latest_net_D.pth: inference snapshot only


def test_legacy_and_zip_give_identical_runs(imported):
    a = ms.load_checkpoint(str(imported["global"] / "G.ckpt"))
    b = ms.load_checkpoint(str(imported["global_zip"] / "G.ckpt"))
    names = [n for n in a if "." in n]
    assert names == [n for n in b if "." in n] and len(names) == 20
    for n in names:
        np.testing.assert_array_equal(a[n].asnumpy(), b[n].asnumpy())
    oa = json.loads((imported["global"] / "options.json").read_text())
    ob = json.loads((imported["global_zip"] / "options.json").read_text())
    assert oa["imported"]["files"]["netG"]["torch_format"] == "legacy"
    assert ob["imported"]["files"]["netG"]["torch_format"] == "zip"
    drop = ("name",)
    assert {k: v for k, v in oa["options"].items() if k not in drop} == {
        k: v for k, v in ob["options"].items() if k not in drop
    }


@pytest.mark.parametrize("name", ["global", "local_feat"])
def test_inferred_architecture_equals_opt_txt(imported, tmp_path, name):
    """Without opt.txt the tensors alone give the architecture opt.txt states."""
    bare = tmp_path / RUNS[name].name
    shutil.copytree(RUNS[name], bare, ignore=shutil.ignore_patterns("opt.txt", "zip"))
    assert _import(bare, "--checkpoints_dir", tmp_path / "out", "--name", "x") == 0
    inferred = json.loads((tmp_path / "out" / "x" / "options.json").read_text())
    with_opt = json.loads((imported[name] / "options.json").read_text())
    arch = runs.ArchOptions.__dataclass_fields__
    skip = {"load_size", "fine_size", "resize_or_crop"}  # data options: not in the tensors
    if name == "global":  # unused by a global G or without features: opt.txt has defaults
        skip |= {"n_local_enhancers", "n_blocks_local", "feat_num", "nef", "n_downsample_E"}
    for k in arch:
        if k not in skip:
            assert inferred["options"][k] == with_opt["options"][k], k
    assert inferred["imported"]["architecture_from"] == "tensors"
    opt_txt = read_opt_txt(RUNS[name] / "opt.txt", importer.train_option_types())
    for k, v in inferred["imported"]["inferred"].items():
        assert opt_txt[k] == v, k


def test_run_folder_like_a_trained_run(imported):
    run = imported["global"]
    doc = runs.read_options(run)
    assert doc["schema"] == runs.RUN_SCHEMA and doc["dataset"] == {"path": "", "sha256": ""}
    o = doc["options"]
    assert (o["netG"], o["ngf"], o["n_downsample_global"], o["n_blocks_global"]) == (
        "global",
        4,
        2,
        2,
    )
    assert (o["num_D"], o["n_layers_D"], o["ndf"], o["label_nc"], o["batch_size"]) == (
        2,
        2,
        4,
        35,
        1,
    )
    rec = doc["imported"]
    g = rec["files"]["netG"]
    import hashlib

    assert (
        g["sha256"]
        == hashlib.sha256((FIX / "tiny_global" / "latest_net_G.pth").read_bytes()).hexdigest()
    )
    assert set(rec["files"]) == {"netG", "netD", "opt.txt", "iter.txt"}
    assert checkpoint.read_meta(run / "G.ckpt") == {"epoch": 5, "step": 0}
    prog = runs.read_progress(runs.latest_state(run))
    assert prog["epoch"] == 6 and prog["step"] == 0  # iter.txt: NVIDIA resumes at epoch 6
    batch = runs.read_options(imported["batch"])
    assert (
        batch["options"]["norm"] == "batch" and batch["imported"]["architecture_from"] == "tensors"
    )
    assert (batch["options"]["label_nc"], batch["options"]["no_instance"]) == (35, False)
    dropped = batch["imported"]["files"]["netG"]["dropped"]
    assert dropped and all(n.endswith("num_batches_tracked") for n in dropped)
    stored = ms.load_checkpoint(str(imported["batch"] / "G.ckpt"))
    assert "netG.model.2.moving_mean" in stored and "netG.model.2.gamma" in stored


@pytest.mark.slow  # runs a verb that compiles (render/precompute/train)
def test_bin_import_and_module_entry_point(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run(
        [str(REPO / "bin" / "import"), "-", "--checkpoints_dir", str(tmp_path), "--name", "a"],
        input=f"{FIX / 'tiny_batch'}\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-1500:]
    assert res.stdout == f"{tmp_path / 'a'}\n"  # stdout: only the run folder
    assert "dropped" in res.stderr
    cmd = [sys.executable, "-m", "p2phd.import", str(FIX / "tiny_batch"), "--dry-run"]
    res = subprocess.run(
        [*cmd, "--checkpoints_dir", str(tmp_path), "--name", "b"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0 and res.stdout == "" and "would_write" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]  # nothing else, no temp folder


def test_overwrite_and_user_options_override(tmp_path):
    args = [FIX / "tiny_global" / "zip", "--checkpoints_dir", tmp_path, "--name", "r"]
    assert _import(*args) == 0
    assert _import(*args) == 2  # refuses a non-empty run folder
    assert _import(*args, "--overwrite", "--lr", "0.001", "--no_lsgan") == 0
    assert runs.read_options(tmp_path / "r")["options"]["no_lsgan"] is True
    assert runs.read_options(tmp_path / "r")["options"]["lr"] == 0.001


def test_disagreements_with_the_tensors(tmp_path, capsys):
    """An override or an opt.txt that contradicts the tensors: said on stderr, then exit 2
    naming the file and the first tensor that does not fit; nothing is written."""
    args = [FIX / "tiny_global" / "zip", "--checkpoints_dir", tmp_path, "--name", "r"]
    capsys.readouterr()
    assert _import(*args, "--ngf", "8") == 2
    err = capsys.readouterr().err
    assert "differ from the tensors: ngf 8 vs 4" in err
    assert "zip/latest_net_G.pth: tensor model.1.weight has shape (4, 36, 7, 7)" in err
    folder = tmp_path / "nv" / "edited"
    shutil.copytree(FIX / "tiny_global", folder, ignore=shutil.ignore_patterns("zip"))
    text = (folder / "opt.txt").read_text().replace("n_blocks_global: 2", "n_blocks_global: 3")
    (folder / "opt.txt").write_text(text)
    assert _import(folder, "--checkpoints_dir", tmp_path) == 2
    err = capsys.readouterr().err
    assert "opt.txt/options given differ from the tensors: n_blocks_global 3 vs 2" in err
    assert (
        f"{folder / 'latest_net_G.pth'}: tensor model.12.weight (16, 8, 3, 3) has no place" in err
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nv"]


def test_which_epoch_and_single_file(tmp_path):
    folder = tmp_path / "ckpts" / "street"
    folder.mkdir(parents=True)
    for net in ("G", "D"):
        shutil.copy(FIX / "tiny_global" / f"latest_net_{net}.pth", folder / f"20_net_{net}.pth")
    shutil.copy(FIX / "tiny_global" / "opt.txt", folder)
    assert _import(folder, "--checkpoints_dir", tmp_path) == 2  # no latest_net_G.pth
    assert _import(folder, "--which_epoch", "20", "--checkpoints_dir", tmp_path) == 0
    run = tmp_path / "street_nvidia"
    assert checkpoint.read_meta(run / "G.ckpt")["epoch"] == 20
    assert runs.read_progress(runs.latest_state(run))["epoch"] == 21
    # a single .pth: G only, architecture from the tensors, named after its folder
    one = [folder / "20_net_G.pth", "--checkpoints_dir", tmp_path / "one", "--no_instance"]
    assert _import(*one) == 0
    doc = runs.read_options(tmp_path / "one" / "street_nvidia")
    # 36 input channels: with --no_instance all are labels (without it: 35 + edge, tiny_batch)
    assert (doc["options"]["label_nc"], doc["options"]["no_instance"]) == (36, True)
    assert doc["imported"]["architecture_from"] == "tensors" and list(doc["imported"]["files"]) == [
        "netG"
    ]
    assert runs.latest_state(tmp_path / "one" / "street_nvidia") is None


@pytest.mark.slow  # runs a verb that compiles (render/precompute/train)
def test_render_an_imported_run(imported, tiny_cityscapes, tmp_path):
    from p2phd.data import prepare
    from p2phd.rendering import render

    manifest = tmp_path / "test.h5"
    argv = [
        "--dataroot",
        str(tiny_cityscapes),
        "--phase",
        "test",
        "--load_size",
        "0",
        "--jobs",
        "1",
    ]
    assert run_verb(prepare.main, [*argv, "--out", str(manifest)]) == 0
    dest = tmp_path / "render"
    argv = ["--run", str(imported["global"]), str(manifest), "--out", str(dest), "--pynative"]
    assert run_verb(render.main, argv) == 0
    pngs = sorted(dest.glob("*_synthesized.png"))
    assert len(pngs) == 2
    from PIL import Image

    img = np.asarray(Image.open(pngs[0]))
    assert img.shape == (64, 128, 3) and img.std() > 0  # an image, not a blank


@pytest.mark.slow  # runs a verb that compiles (render/precompute/train)
def test_precompute_with_an_imported_encoder(imported, tiny_manifest, tmp_path):
    """bin/precompute loads the imported E (netE in G.ckpt) like a trained one."""
    from p2phd.features import precompute
    from p2phd.features.feature_manifest import FeatureManifest

    out = tmp_path / "feat.h5"
    argv = ["--run", str(imported["local_feat"]), str(tiny_manifest), "--out", str(out)]
    assert run_verb(precompute.main, [*argv, "--pynative"]) == 0
    feats = FeatureManifest(out)
    assert feats.feat_num == 3 and len(feats) == 3
    m = feats.map(feats.names[0])
    assert m.shape == (3, 64, 128) and np.abs(m).max() > 0


TINY_ARCH = [
    "--ngf", "4", "--n_downsample_global", "2", "--n_blocks_global", "2",
    "--num_D", "2", "--n_layers_D", "2", "--ndf", "4", "--load_size", "128", "--no_vgg_loss",
]  # fmt: skip


@pytest.mark.slow  # runs a verb that compiles (render/precompute/train)
def test_train_load_pretrain_from_imported_run(imported, tiny_manifest, tmp_path, capsys):
    from p2phd.training import train

    argv = [str(tiny_manifest), "--name", "cont", "--checkpoints_dir", str(tmp_path), *TINY_ARCH]
    argv += ["--niter", "1", "--niter_decay", "0", "--max_steps", "1", "--pynative"]
    assert run_verb(train.main, [*argv, "--load_pretrain", str(imported["global"])]) == 0
    err = capsys.readouterr().err
    assert "load_pretrain" in err and "new: none" in err  # G and D both loaded, nothing fresh
    assert runs.read_progress(runs.latest_state(tmp_path / "cont"))["step"] == 1


@pytest.mark.slow  # runs a verb that compiles (render/precompute/train)
def test_train_resumes_an_imported_run(tiny_manifest, tmp_path, capsys):
    """Same options as the import recorded: bin/train continues NVIDIA's run at its epoch."""
    from p2phd.training import train

    args = [FIX / "tiny_global", "--checkpoints_dir", tmp_path, "--name", "nv", *TINY_ARCH[-3:]]
    assert _import(*args) == 0
    argv = [str(tiny_manifest), "--name", "nv", "--checkpoints_dir", str(tmp_path), *TINY_ARCH]
    capsys.readouterr()
    assert run_verb(train.main, [*argv, "--max_steps", "1", "--pynative"]) == 0
    assert "resuming" in capsys.readouterr().err
    prog = runs.read_progress(runs.latest_state(tmp_path / "nv"))
    assert (prog["epoch"], prog["epoch_step"], prog["step"]) == (6, 1, 1)


# -- hostile and malformed inputs -----------------------------------------------------------------
class _Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _folder_with_g(tmp_path: Path, write) -> Path:
    folder = tmp_path / "ckpts" / "bad"
    folder.mkdir(parents=True)
    write(folder / "latest_net_G.pth")
    return folder


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval", "subprocess"])
def test_hostile_pickle_exits_2_and_never_runs(tmp_path, capsys, kind):
    marker = tmp_path / "pwned"
    payload = {
        "os.system": _Call(os.system, f"touch {marker}"),
        "builtins.eval": _Call(eval, f"open({str(marker)!r}, 'w')"),
        "subprocess": _Call(subprocess.call, ["touch", str(marker)]),
    }[kind]

    def write(p):
        with open(p, "wb") as f:
            for part in (
                LEGACY_MAGIC,
                LEGACY_PROTOCOL,
                {"little_endian": True},
                {"w": payload},
                [],
            ):
                pickle.dump(part, f, protocol=2)

    folder = _folder_with_g(tmp_path, write)
    capsys.readouterr()
    assert _import(folder, "--checkpoints_dir", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert "latest_net_G.pth" in err and "not allowed" in err and len(err.splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out").exists()
    pickle.loads(pickle.dumps(payload))  # the same payload, unpickled without the allow-list,
    assert marker.exists()  # does run: the refusal above is what stopped it


def test_malformed_inputs_exit_2_naming_the_file(tmp_path, capsys):
    g = read_state_dict(FIX / "tiny_global" / "latest_net_G.pth")
    cases = {
        "truncated": lambda p: p.write_bytes(
            (FIX / "tiny_global" / "latest_net_G.pth").read_bytes()[:30000]
        ),
        "vgg": lambda p: write_legacy_pth(
            p,
            {"features.0.weight": np.zeros((4, 3, 3, 3)), "classifier.0.weight": np.zeros((5, 4))},
        ),
        "bad_shape": lambda p: write_legacy_pth(
            p, {**g, "model.10.conv_block.1.weight": np.zeros((16, 16, 5, 5))}
        ),
        "deflated_zip": lambda p: write_zip_pth(p, g, method=zipfile.ZIP_DEFLATED),
    }
    expect = {
        "truncated": "truncated",
        "vgg": "not a pix2pixHD generator",
        "bad_shape": "model.10.conv_block.1.weight has shape (16, 16, 5, 5)",
        "deflated_zip": "storage latest_net_G/data/0 is compressed",
    }
    for case, write in cases.items():
        folder = _folder_with_g(tmp_path / case, write)
        capsys.readouterr()
        assert _import(folder, "--checkpoints_dir", tmp_path / "out") == 2, case
        err = capsys.readouterr().err.strip()
        assert str(folder / "latest_net_G.pth") in err and expect[case] in err, err
        assert len(err.splitlines()) == 1
    # the writer itself is faithful: an unmodified G round-trips and imports
    good = _folder_with_g(tmp_path / "good", lambda p: write_legacy_pth(p, g))
    back = read_state_dict(good / "latest_net_G.pth")
    assert list(back) == list(g) and all(np.array_equal(back[k], g[k]) for k in g)
    assert _import(good, "--checkpoints_dir", tmp_path / "out") == 0
    assert "torch" not in sys.modules


def test_feature_run_without_its_encoder_exits_2(tmp_path, capsys):
    folder = tmp_path / "nv" / "feat"
    folder.mkdir(parents=True)
    for f in ("latest_net_G.pth", "opt.txt"):
        shutil.copy(FIX / "tiny_local_feat" / f, folder)
    capsys.readouterr()
    assert _import(folder, "--checkpoints_dir", tmp_path / "out") == 2
    assert f"{folder}: a feature run" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_onnx_export_of_an_imported_run_needs_no_size(imported, tmp_path, capsys):
    """An imported run has no training manifest, and an ONNX graph takes any H, W (multiples of
    the stride): bin/export --format ONNX needs no --size (sidecar size null, no HxW in the
    name) and the file runs at two sizes; a MindIR (one fixed size) still asks for --size, and
    --size still fixes the size ONNX's sidecar records."""
    import onnxruntime as ort

    from p2phd.deploy import export

    run = tmp_path / "global"
    shutil.copytree(imported["global"], run)
    assert run_verb(export.main, ["--run", str(run), "--format", "ONNX"]) == 0
    model = Path(capsys.readouterr().out.strip())
    assert model == run / "global.onnx"
    side = json.loads(model.with_name(model.name + ".json").read_text())
    assert side["size"] is None and side["inputs"][0]["shape"][-2:] == ["H", "W"]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    stride = side["stride"]
    # at least 2 pixels deep inside G: its reflection pads need two
    for h, w in ((2 * stride, 4 * stride), (4 * stride, 6 * stride)):
        feeds = {
            s["name"]: rng.integers(0, side["label_nc"], (1, h, w)).astype(s["dtype"])
            for s in side["inputs"]
        }
        (image,) = session.run(["image"], feeds)
        assert image.shape == (1, side["output_nc"], h, w) and np.isfinite(image).all()
    assert run_verb(export.main, ["--run", str(run)]) == 2  # MINDIR: which size?
    assert "--size HxW" in capsys.readouterr().err
    fixed = ["--run", str(run), "--format", "ONNX", "--size", f"{2 * stride}x{4 * stride}"]
    assert run_verb(export.main, fixed) == 0
    model = Path(capsys.readouterr().out.strip())
    assert model.name == f"global-{2 * stride}x{4 * stride}.onnx"
    side = json.loads(model.with_name(model.name + ".json").read_text())
    assert side["size"] == [2 * stride, 4 * stride]

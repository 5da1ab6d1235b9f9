"""ONNX export (bin/export --format ONNX) and render --onnx: the same function as MindSpore's.

- Every architecture p2phd supports (global, local with 1 and 2 enhancers, instance and label
  feature runs, label_nc 0, no_instance, --norm batch, grey output) through MindSpore and
  onnxruntime, float32 and --half, two input sizes (the axes are dynamic);
- an unknown Cell or a changed structure raises instead of exporting something else;
- the instance norm spelling is exact against float64 at a full 2048x1024 plane;
- bin/export writes a checked file and its sidecar; render --onnx (onnxruntime and OpenVINO)
  gives render --run's pixels, resumes and shards bit-identically, refuses a file its sidecar
  does not describe; it runs under msrun and names a missing execution provider.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from test_export import TINY, make_run

from p2phd.core import manifest, runs
from p2phd.core.cli import run_verb
from p2phd.deploy import export, sidecar
from p2phd.rendering import render

# exports and renders through bin/ (msrun too) and compiles every architecture: not in test-fast
pytestmark = pytest.mark.slow

# Float32 outputs of MindSpore (oneDNN) and onnxruntime (MLAS) differ only in the order of each
# conv's float32 sums (at most 7*7*48 terms here, |terms| < 1): a few float32 ulps per layer
# over ~20 layers, far below 1e-5 of tanh's [-1, 1] (measured: up to 1.5e-6).
FP32_TOL = 1e-5
# --half rounds weights and activations to float16 (11-bit mantissa: 4.9e-4 relative) at every
# layer; over ~20 layers of tiny random nets that stays below 1e-2 (measured: up to 8e-4).
HALF_TOL = 1e-2

ARCHS = {
    "global": {},
    "local": {"netG": "local"},
    "local-2-enhancers-label-feat": {"netG": "local", "n_local_enhancers": 2, "label_feat": True},
    "instance-feat": {"instance_feat": True},
    "rgb-input-no-instance": {"label_nc": 0, "no_instance": True},
    "labels-no-instance-grey": {"no_instance": True, "output_nc": 1},
    "batch-norm": {"norm": "batch"},
}


def _generator(kw: dict, seed: int):
    import mindspore as ms

    from p2phd.core import runtime
    from p2phd.nets import build_generator

    # PyNative: the reference runs each net once per size, and the same kernels without a graph
    # compile per architecture and size cost half (the graph-mode net: render and export tests)
    runtime.setup("CPU", pynative=True, seed=seed)
    arch = runs.ArchOptions(load_size=128, **{**TINY, **kw})
    G = build_generator(arch)
    rng = np.random.default_rng(seed)
    for name, p in G.parameters_and_names():  # eval-mode batch norm: non-trivial statistics
        if "moving_mean" in name or "moving_variance" in name:
            value = (
                rng.uniform(-0.5, 0.5, p.shape) if "mean" in name else rng.uniform(0.5, 2, p.shape)
            )
            p.set_data(ms.Tensor(value.astype(np.float32)))
    G.set_train(False)
    return G, arch


def _feeds(spec: list[dict], size: tuple[int, int], batch: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    feeds = {}
    for s in spec:
        shape = [batch, *([s["shape"][1]] if len(s["shape"]) == 4 else []), *size]
        if s["name"] == "label" and s["dtype"] == "int32":
            feeds["label"] = rng.integers(0, 37, shape).astype(np.int32)  # 35, 36: no class
        elif s["name"] == "instance":
            feeds["instance"] = rng.integers(0, 3, shape).astype(np.int32) * 1000 + 26
        else:
            feeds[s["name"]] = rng.uniform(-1, 1, shape).astype(np.float32)
    return feeds


def _onnx_run(G, arch, half: bool, uint8: bool, feeds: dict, path: Path) -> np.ndarray:
    import onnxruntime as ort

    from p2phd.deploy import graph, onnx_graph

    spec = graph.input_spec(arch, (32, 64), 1)
    model = onnx_graph.build(G, arch, spec, graph.output_spec(arch, (32, 64), 1, uint8), half)
    onnx_graph.save(model, path)
    onnx_graph.check(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(["image"], feeds)[0]


@pytest.mark.parametrize("name", list(ARCHS))
def test_every_architecture_matches_mindspore(name: str, tmp_path: Path) -> None:
    import mindspore as ms

    from p2phd.core.palette import to_uint8
    from p2phd.deploy import graph

    G, arch = _generator(ARCHS[name], seed=len(name))
    spec = graph.input_spec(arch, (32, 64), 1)
    net = graph.build(G, arch, uint8=False)
    for size, batch in (((32, 64), 2), ((2 * arch.generator_stride(), 48), 1)):
        feeds = _feeds(spec, size, batch, seed=size[0])
        ref = net(*[ms.Tensor(feeds[s["name"]]) for s in spec]).asnumpy()
        got = _onnx_run(G, arch, False, False, feeds, tmp_path / "g.onnx")
        assert got.shape == ref.shape == (batch, arch.output_nc, *size)
        assert np.abs(got - ref).max() <= FP32_TOL, name
        half = _onnx_run(G, arch, True, False, feeds, tmp_path / "h.onnx")
        assert half.dtype == np.float32 and np.abs(half - ref).max() <= HALF_TOL, name
        # uint8: palette.to_uint8 of the float output, NHWC RGB; a level apart only where the
        # float outputs straddle a rounding boundary (within FP32_TOL * 127.5 of *.5)
        u8 = _onnx_run(G, arch, False, True, feeds, tmp_path / "u.onnx")
        want = np.stack([to_uint8(r) for r in ref])  # grey replicated to RGB as the graph does
        assert u8.dtype == np.uint8 and u8.shape == (batch, *size, 3)
        off = u8.astype(int) != want
        assert np.abs(u8.astype(int) - want).max() <= 1
        scaled = (np.repeat(ref, 3, 1) if arch.output_nc == 1 else ref).transpose(0, 2, 3, 1)
        frac = np.abs((scaled + 1) * 127.5 % 1 - 0.5)
        assert (frac[off] <= FP32_TOL * 127.5).all()


def test_unknown_cell_or_structure_raises() -> None:
    from mindspore import nn

    from p2phd.deploy import onnx_ops

    G, arch = _generator({}, seed=0)
    G.model.insert_child_to_cell("extra", nn.Sigmoid())  # a layer the writer does not know
    with pytest.raises(onnx_ops.UnsupportedCell, match="Sigmoid"):
        onnx_ops.emit(onnx_ops.Builder(False), G, "x")
    L, _ = _generator({"netG": "local"}, seed=0)
    L.skip = nn.SequentialCell([nn.ReLU()])  # a structure change: a new branch
    with pytest.raises(onnx_ops.UnsupportedCell, match="skip"):
        onnx_ops.emit(onnx_ops.Builder(False), L, "x")


def test_instance_norm_exact_at_full_size_plane() -> None:
    """The emitted norm on 2 channels of 1024x2048 against float64 (docs/deploying.md: the measurement)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from p2phd.deploy import onnx_ops

    b = onnx_ops.Builder(False)
    y = onnx_ops.instance_norm(b, "x", 1e-5)
    graph = helper.make_graph(
        b.nodes,
        "norm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, "H", "W"])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, [1, 2, "H", "W"])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_ops.OPSET)])
    onnx.checker.check_model(model, full_check=True)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    # a ReLU output (half zeros, the rest ~|N(0.3, 1)|) and a plane far from zero mean
    x = np.stack([np.maximum(rng.normal(0.3, 1, (1024, 2048)), 0), rng.normal(8, 1, (1024, 2048))])
    x = x[None].astype(np.float32)
    x64 = x.astype(np.float64)
    mean = x64.mean((2, 3), keepdims=True)
    ref = (x64 - mean) / np.sqrt(((x64 - mean) ** 2).mean((2, 3), keepdims=True) + 1e-5)
    got = sess.run(None, {"x": x})[0]
    # float32's own rounding: x - mean loses up to half an ulp of |x| (|x| < 16: 4.8e-7..9.5e-7
    # relative to std 1), the row means (<= 2048 values) and the mean of the row means a few
    # ulps each, the division one more: 4e-6 of max(|y|, 1). InstanceNormalization (one float32
    # accumulator per plane) is off by 1.9e-4..3.2e-3 on such planes (docs/deploying.md).
    assert (np.abs(got - ref) / np.maximum(np.abs(ref), 1)).max() <= 4e-6


# ---------------------------------------------------------------------------------------------
# bin/export --format ONNX and bin/render --onnx on the 15 sample test maps at 64x128


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    from conftest import sample_dir

    from p2phd.data import prepare

    root = tmp_path_factory.mktemp("onnx")
    args = ["--dataroot", str(sample_dir()), "--phase", "test", "--load_size", "128"]
    assert run_verb(prepare.main, [*args, "--jobs", "1", "--out", str(root / "test.h5")]) == 0
    return root


@pytest.fixture(scope="module")
def exported(data: Path) -> tuple[Path, Path]:
    """A tiny global run and its ONNX export by the real command (stdout = the file only)."""
    run = make_run(data / "g", data / "test.h5", seed=3)
    res = subprocess.run(
        [sys.executable, str(REPO / "bin" / "export"), "--run", str(run), "--format", "ONNX"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.splitlines() == [str(run / "g-64x128.onnx")]
    return run, Path(res.stdout.strip())


def _synth(folder: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*_synthesized.png"))}


def test_export_writes_a_checked_file_and_sidecar(exported: tuple[Path, Path]) -> None:
    import onnx

    run, model = exported
    side = json.loads(sidecar.path_for(model).read_text())
    assert side["format"] == "ONNX" and side["opset"] == 17 and side["half"] is False
    assert side["sha256"] == manifest.sha256_file(model) and side["bytes"] == model.stat().st_size
    assert side["run"]["checkpoint_sha256"] == manifest.sha256_file(run / "G.ckpt")
    assert [(i["name"], i["dtype"], i["shape"]) for i in side["inputs"]] == [
        ("label", "int32", ["N", "H", "W"]),
        ("instance", "int32", ["N", "H", "W"]),
    ]
    assert side["output"]["shape"] == ["N", 3, "H", "W"] and set(side["dynamic_axes"]) == {
        "N",
        "H",
        "W",
    }
    m = onnx.load(str(model))
    assert [i.name for i in m.graph.input] == ["label", "instance"]
    assert m.opset_import[0].version == 17
    assert not list(model.parent.glob(".*tmp*"))  # nothing left under a temporary name


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_render_onnx_matches_checkpoint_render_resumes_and_shards(
    engine: str, exported: tuple[Path, Path], data: Path, tmp_path: Path, capsys
) -> None:
    run, model = exported
    man = str(data / "test.h5")
    a, b = tmp_path / "ckpt", tmp_path / "onnx"
    onnx = ["--onnx", str(model), "--engine", engine]
    assert run_verb(render.main, ["--run", str(run), man, "--out", str(a)]) == 0
    assert run_verb(render.main, [*onnx, man, "--out", str(b)]) == 0
    pa, pb = _synth(a), _synth(b)
    assert len(pa) == 15 and pa.keys() == pb.keys()
    diff = np.concatenate([np.abs(pa[k].astype(int) - pb[k]).ravel() for k in pa])
    # MindSpore and the engine sum each conv in another order (FP32_TOL): a pixel moves by one
    # level only where G's output sits on a rounding boundary (measured: a few in 10^4)
    assert diff.max() <= 1 and (diff > 0).mean() < 2e-3
    # resume: deleted PNGs are rendered again, bit-identical; shards equal one process
    first = {p.name: p.read_bytes() for p in b.glob("*_synthesized.png")}
    for p in sorted(b.glob("*_synthesized.png"))[:3]:
        p.unlink()
    assert run_verb(render.main, [*onnx, man, "--out", str(b)]) == 0
    assert {p.name: p.read_bytes() for p in b.glob("*_synthesized.png")} == first
    c = tmp_path / "shards"
    for shard in ("0/2", "1/2"):
        args = [*onnx, man, "--out", str(c), "--shard", shard, "--batch_size", "2"]
        assert run_verb(render.main, args) == 0
    assert run_verb(render.main, [*onnx, man, "--out", str(c), "--merge"]) == 0
    assert {p.name: p.read_bytes() for p in c.glob("*_synthesized.png")} == first
    assert (c / "index.html").is_file() and (c / "render.h5").is_file()
    capsys.readouterr()


def test_render_onnx_refuses_bad_file_and_missing_provider(
    exported: tuple[Path, Path], data: Path, tmp_path: Path, capsys
) -> None:
    run, model = exported
    args = ["--onnx", str(model), str(data / "test.h5"), "--out", str(tmp_path / "o")]
    assert run_verb(render.main, [*args, "--providers", "TensorRT,CPU"]) == 2
    line = capsys.readouterr().err.strip()
    assert "TensorrtExecutionProvider" in line and "\n" not in line
    assert run_verb(render.main, ["--mindir", *args[1:]]) == 2  # an ONNX sidecar, not MINDIR
    assert "--onnx" in capsys.readouterr().err
    copy = tmp_path / "m.onnx"
    copy.write_bytes(model.read_bytes()[:-1] + b"\0")  # one byte changed
    sidecar.path_for(copy).write_text(sidecar.path_for(model).read_text())
    for engine in ("onnxruntime", "openvino"):
        assert run_verb(render.main, ["--onnx", str(copy), *args[2:], "--engine", engine]) == 2
        assert "does not match the sha256 in its sidecar" in capsys.readouterr().err
    assert run_verb(render.main, [*args, "--engine", "mindspore"]) == 2  # --onnx is ONNX's
    assert "--onnx runs in an ONNX engine" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_export_onnx_half_uint8_feature_run(data: Path, tmp_path: Path) -> None:
    """--half --uint8 on a feature run through the verb: sidecar, three inputs, render."""
    from test_export import _prepare

    train = _prepare(tmp_path / "train.h5", "train")
    run = make_run(tmp_path / "feat", train, seed=4, instance_feat=True)
    model = tmp_path / "f.onnx"
    args = ["--run", str(run), "--format", "ONNX", "--half", "--uint8", "--out", str(model)]
    assert run_verb(export.main, args) == 0
    side = sidecar.read(model, "ONNX")
    assert side["half"] and side["output"] == {**side["output"], "dtype": "uint8"}
    assert [i["name"] for i in side["inputs"]] == ["label", "instance", "features"]
    assert (
        run_verb(export.main, ["--run", str(run), "--half", "--out", str(tmp_path / "x.mindir")])
        == 2
    )


def test_render_onnx_under_msrun_equals_one_process(
    exported: tuple[Path, Path], data: Path, tmp_path: Path
) -> None:
    _, model = exported
    man = str(data / "test.h5")
    single = tmp_path / "single"
    assert run_verb(render.main, ["--onnx", str(model), man, "--out", str(single)]) == 0
    venv = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{venv}:{os.environ['PATH']}", PYTHONPATH=str(REPO))
    cmd = [str(venv / "msrun"), "--worker_num=2", "--local_worker_num=2", "--node_rank=0"]
    cmd += ["--master_addr=127.0.0.1", "--master_port=8471", f"--log_dir={tmp_path / 'logs'}"]
    cmd += ["--join=True", str(REPO / "bin" / "render"), "--onnx", str(model), man]
    res = subprocess.run(
        [*cmd, "--out", str(tmp_path / "ranked")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    got = {p.name: p.read_bytes() for p in (tmp_path / "ranked").glob("*.png")}
    assert got == {p.name: p.read_bytes() for p in single.glob("*.png")} and len(got) == 30
    assert (tmp_path / "ranked" / "render.h5").is_file()


def test_other_verbs_do_not_import_onnx() -> None:
    code = (
        "import sys\n"
        "from p2phd.rendering import render\nfrom p2phd.deploy import export\n"
        "from p2phd.training import train\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime', 'openvino')))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr[-1000:]


def test_render_onnx_imports_no_mindspore(
    exported: tuple[Path, Path], data: Path, tmp_path: Path
) -> None:
    """render --onnx in a fresh process, plan to page: MindSpore is never imported."""
    _, model = exported
    argv = ["--onnx", str(model), str(data / "test.h5"), "--max_samples", "2"]
    code = (
        "import sys\nfrom p2phd.core.cli import run_verb\nfrom p2phd.rendering import render\n"
        f"assert run_verb(render.main, {[*argv, '--out', str(tmp_path / 'r')]!r}) == 0\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'mindspore'))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr[-1000:]
    assert res.stdout.splitlines() == [str(tmp_path / "r"), "[]"]  # the folder, then no module
    assert (tmp_path / "r" / "index.html").is_file()


def test_make_plans_export_onnx_and_render_with_onnx(tmp_path: Path) -> None:
    def plan(*args: str) -> list[str]:
        res = subprocess.run(
            ["make", "--no-print-directory", "-C", str(REPO), "-n", *args, "RUN=zz_ox"]
            + [f"DATA={tmp_path}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        return [ln for ln in res.stdout.splitlines() if "bin/" in ln]

    lines = plan("export-onnx", "MODE=1024p", "EXPORT_EXTRA=--half")
    assert lines[-1].startswith("bin/export --run outputs/zz_ox_1024p --format ONNX")
    assert "--out outputs/zz_ox_1024p/zz_ox_1024p.onnx" in lines[-1] and "--half" in lines[-1]
    lines = plan("render-test", "MODE=512p", "ENGINE=onnx", "NPROC=2")
    assert any(ln.startswith("bin/export --run outputs/zz_ox_512p --format ONNX") for ln in lines)
    assert "msrun --worker_num=2" in lines[-1]
    assert "bin/render --onnx outputs/zz_ox_512p/zz_ox_512p.onnx" in lines[-1]
    assert "--out outputs/zz_ox_512p/render-test-onnx" in lines[-1]
    lines = plan("edit", "MODE=512p-feat", "ENGINE=onnx")  # exports, then edits through it
    assert any(
        ln.startswith("bin/export --run outputs/zz_ox_512p_feat --format ONNX") for ln in lines
    )
    assert lines[-1].startswith(
        "bin/edit outputs/zz_ox_512p_feat --onnx outputs/zz_ox_512p_feat/zz_ox_512p_feat.onnx"
    )
    assert "--onnx" not in plan("edit", "MODE=512p-feat")[-1]  # bin/edit's own --onnx auto

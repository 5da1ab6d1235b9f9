"""bin/evaluate --seg_engine onnxruntime|openvino: the DRN's ONNX graph (p2phd.metrics.drn_onnx,
written from the loaded MindSpore Cells) is the same function as MindSpore's and fyu/drn's.

- fyu/drn's tiny DRN-D-105 (sample photo) and DRN-C-26 (synthetic images) fixtures through
  both ONNX engines: logits against MindSpore's and fyu/drn's, every clear argmax against
  fyu/drn's stored prediction;
- a Cell or child the writer does not know raises instead of writing another network;
- the verb with each engine on a tiny render: the engine recorded, its score the score of that
  engine's predictions, engines disagreeing only where the logits nearly tie.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, USE_REAL
from seg_util import (
    C26,
    D105,
    check_against_fyu,
    evaluate_cli,
    load_reference,
    make_manifest,
    make_render,
    reference_photo,
    rel,
)  # fmt: skip

from p2phd.metrics import segmentation as seg
from p2phd.metrics import segscore

pytestmark = pytest.mark.slow  # bin/evaluate with each segmentation engine: not in test-fast

ENGINES = ("onnxruntime", "openvino")
# MindSpore (oneDNN) and the ONNX engines (MLAS, OpenVINO's kernels) sum each convolution in
# another float32 order; each is within the fixtures' float64 distance (<= 3.8e-6 relative L2,
# reference.npz) of the exact logits, so two engines differ by at most about twice that.
ENGINE_TOL = 1e-5


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return load_reference()


@pytest.fixture(scope="module")
def nets() -> dict:
    from p2phd.core import runtime

    # PyNative: the MindSpore side of each comparison runs once per input, the same kernels
    # without compiling D-105's graph (the verb's graph-mode run: test_segmentation.py)
    runtime.setup("CPU", pynative=True)
    return {"d105": seg.load_drn(D105), "c26": seg.load_drn(C26)}


def _nchw(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.astype(np.float32).transpose(0, 3, 1, 2) / 255)


def _fixture_inputs(ref: dict) -> dict[str, np.ndarray]:
    inputs = {"c26": _nchw(ref["synthetic"])}
    if USE_REAL:  # the D-105 reference is on a sample photo
        inputs["d105"] = _nchw(reference_photo(ref)[None])
    return inputs


@pytest.mark.parametrize("engine", ENGINES)
def test_fixture_networks_equal_mindspore_and_fyu_drn(engine, ref, nets):
    import mindspore as ms
    import onnx

    from p2phd.metrics import drn_onnx
    from p2phd.metrics.drn_onnx import Segmenter

    onnx.checker.check_model(drn_onnx.build(nets["c26"]), full_check=True)
    for key, x in _fixture_inputs(ref).items():
        net = nets[key]
        logits = Segmenter(net, engine, logits=True)(x)
        assert rel(logits, net(ms.Tensor(x)).asnumpy()) <= ENGINE_TOL, key
        pred = Segmenter(net, engine)(x)  # the argmax inside the graph, int32
        assert pred.dtype == np.int32 and pred.shape == (x.shape[0], *x.shape[2:])
        check_against_fyu(logits, pred, ref, key)


def test_unknown_cell_or_child_raises(nets):
    from mindspore import nn

    from p2phd.deploy.onnx_ops import UnsupportedCell
    from p2phd.metrics import drn_onnx
    from p2phd.metrics.drn import DRNSeg

    net = DRNSeg(nets["c26"].arch)
    net.base.insert_child_to_cell("extra", nn.Sigmoid())  # a layer the writer does not know
    with pytest.raises(UnsupportedCell, match="Predict.net.base.extra: no ONNX emitter .*Sigmoid"):
        drn_onnx.build(net)
    net = DRNSeg(nets["c26"].arch)
    net.base[4][0].skip = nn.SequentialCell([nn.ReLU()])  # a new branch in a BasicBlock
    with pytest.raises(UnsupportedCell, match=r"Predict.net.base.4.0: BasicBlock has children"):
        drn_onnx.build(net)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_manifest(tmp_path_factory.mktemp("seg_onnx") / "tiny-test.h5")


def test_verb_engines_agree(tiny, tmp_path, capsys, nets):
    """Each engine's metrics.json holds the score of that engine's own predictions; engines
    differ only on pixels whose top two logits are within float32 rounding of a tie."""
    import mindspore as ms
    from PIL import Image

    from p2phd.data.dataset import Dataset

    folder = make_render(tmp_path / "render-test", tiny)
    net, got = nets["c26"], {}
    for engine in ("auto", "mindspore", *ENGINES):
        args = (folder, "--seg", C26, "--seg_size", "64x128", "--seg_real", "--seg_engine", engine)
        rc, _, err = evaluate_cli(capsys, *args)
        assert rc == 0, err
        got[engine] = json.loads((folder / "metrics.json").read_text())["segmentation"]
    assert got["auto"]["engine"]["name"] == "onnxruntime"  # --device_target CPU
    assert got["openvino"]["engine"]["version"].startswith("20")
    with Dataset(tiny) as ds:
        gts = [segscore.cityscapes_map().apply(ds.sample(i).label) for i in range(len(ds))]
        names = ds.names
    for key, png in (("renders", "synthesized"), ("real", "real")):
        images = [np.asarray(Image.open(folder / f"{n}_{png}.png").convert("RGB")) for n in names]
        x = _nchw(np.stack(images))
        logits = net(ms.Tensor(x)).asnumpy()
        top2 = np.sort(logits, axis=1)[:, -2:]
        near_tie = (top2[:, 1] - top2[:, 0]) <= 1e-4 * np.abs(logits).max()
        base = logits.argmax(1)
        for engine in ENGINES:
            pred = seg.predictor(net, engine)(x)
            assert (pred == base)[~near_tie].all(), engine
            total = sum(segscore.confusion(p, g, 19) for p, g in zip(pred, gts, strict=True))
            assert got[engine][key] == segscore.scores(total, segscore.CITYSCAPES_CLASSES)
        assert got["auto"][key] == got["onnxruntime"][key]


def test_seg_engine_needs_seg_and_evaluate_imports_no_onnx(tiny, tmp_path, capsys):
    rc, _, err = evaluate_cli(capsys, make_render(tmp_path / "r", tiny), "--seg_engine", "openvino")
    assert rc == 2 and "--seg_engine needs --seg FILE" in err
    code = (
        "import sys\nfrom p2phd.metrics import evaluate, segmentation\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime', 'openvino')))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr[-1000:]

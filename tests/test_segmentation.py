"""bin/evaluate --seg and p2phd.metrics.drn / segscore against fyu/drn's own network and numbers.

The fixtures (tests/fixtures/drn/, made by make_drn_fixtures.py with torch and fyu/drn at
d75db2e) are fyu/drn's DRNSeg over a DRN-D-105 structure and a DRN-C-26 structure with tiny
widths and seeded random weights (.pth), the logits and argmax fyu/drn computes on a sample
photo and on two synthetic images, and the key/shape lists of the full-size DRNSeg variants.
Here: the same .pth through p2phd's torch-free reader into the MindSpore network, compared
with those numbers; the score's arithmetic on hand-made cases; the label mapping; the verb on
a tiny render and its refusals of bad input.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_sample
from PIL import Image
from seg_util import (
    C26,
    D105,
    FIX,
    check_against_fyu,
    evaluate_cli,
    load_reference,
    make_manifest,
    make_render,
    reference_photo,
)

from p2phd.core.cli import UsageError
from p2phd.metrics import segmentation as seg
from p2phd.metrics import segscore


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    return load_reference()


@pytest.fixture(scope="module")
def runtime_cpu() -> None:
    from p2phd.core import runtime

    # PyNative: each reference runs a net once per input, the same kernels without compiling
    # D-105's graph; the verb's graph-mode run: test_verb_scores_a_render_without_the_inception
    runtime.setup("CPU", pynative=True)


def _run_net(path: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p2phd's logits and prediction for uint8 NHWC images (the verb's loader and input)."""
    import mindspore as ms

    from p2phd.metrics.drn import Predict

    net = seg.load_drn(path)
    x = ms.Tensor(images.astype(np.float32).transpose(0, 3, 1, 2) / 255)
    return net(x).asnumpy(), Predict(net)(x).asnumpy()


@needs_sample  # fyu/drn's D-105 numbers are on a real photo
def test_drn_d105_matches_fyu_drn_on_a_sample_photo(ref, runtime_cpu):
    photo = reference_photo(ref)
    logits, pred = _run_net(D105, photo[None])
    check_against_fyu(logits, pred, ref, "d105")


def test_drn_c26_matches_fyu_drn_on_synthetic_images(ref, runtime_cpu):
    """Arch C, BasicBlocks, layer7/8 without the residual sum, a batch of two."""
    logits, pred = _run_net(C26, ref["synthetic"])
    check_against_fyu(logits, pred, ref, "c26")


def test_expects_exactly_the_keys_of_fyu_drns_full_size_files():
    """p2phd's DRNSeg for each of fyu/drn's variants (inferred from the shapes alone) wants
    exactly the keys and shapes torch's DRNSeg(<variant>, 19) saves, so the real
    drn-d-105_ms_cityscapes.pth (which cannot be downloaded here) loads."""
    from p2phd.metrics import drn

    variants = json.loads((FIX / "keys.json").read_text())
    assert {"drn_d_105", "drn_d_22"} <= set(variants)
    for name, keys in variants.items():
        shapes = {k: tuple(v) for k, v in keys.items()}
        arch = drn.infer_arch(shapes)
        assert arch.name == name and arch.classes == 19
        assert arch.channels == drn.DEFAULT_CHANNELS
        want = {k: v for k, v in shapes.items() if not k.endswith("num_batches_tracked")}
        assert drn.parameter_shapes(arch) == want, name
    d105 = variants["drn_d_105"]
    assert sum(int(np.prod(s)) for k, s in d105.items() if "running" not in k) > 54_000_000


def test_refuses_other_networks(runtime_cpu, tmp_path):
    from p2phd.interop.pth import read_state_dict
    from p2phd.metrics import drn

    other = FIX.parent / "fid" / "other_network.pth"
    with pytest.raises(
        UsageError, match=rf"{other}: not a fyu/drn DRNSeg.*missing key 'seg.weight'"
    ):
        seg.load_drn(other)
    with pytest.raises(UsageError, match=r"no such file.*drn-d-105_ms_cityscapes.pth.*go.yf.io"):
        seg.load_drn(tmp_path / "drn-d-105_ms_cityscapes.pth")
    state = read_state_dict(C26)
    net = drn.DRNSeg(drn.infer_arch({k: v.shape for k, v in state.items()}))
    bad = dict(state, **{"base.5.1.conv2.weight": np.zeros((8, 8, 1, 3), np.float32)})
    with pytest.raises(drn.WeightsError, match=r"'base.5.1.conv2.weight' has shape \(8, 8, 1, 3\)"):
        drn.check_state_dict(net, bad)
    bad = dict(state, **{"fc.weight": np.zeros((1000, 8, 1, 1), np.float32)})
    with pytest.raises(drn.WeightsError, match="unexpected key 'fc.weight'"):
        drn.check_state_dict(net, bad)
    # fyu/drn's training checkpoints (DataParallel): every key under "module."
    wrapped = drn.build_drn({f"module.{k}": v for k, v in state.items()})
    assert wrapped.arch == net.arch
    missing = {k: v for k, v in state.items() if k != "base.4.0.bn1.running_var"}
    with pytest.raises(drn.WeightsError, match="missing key 'base.4.0.bn1.running_var'"):
        drn.check_state_dict(net, missing)


# ---------------------------------------------------------------------------------------------
# the score's arithmetic


def _plain_scores(pred, gt, n):
    """The definitions written out pixel by pixel: IoU_c = |pred=c & gt=c| / |pred=c | gt=c|
    over the pixels whose gt is a class; accuracy = correct / counted."""
    pred, gt = np.ravel(pred), np.ravel(gt)
    counted = [(p, g) for p, g in zip(pred, gt, strict=True) if g < n]
    iou = []
    for c in range(n):
        inter = sum(1 for p, g in counted if p == c and g == c)
        union = sum(1 for p, g in counted if p == c or g == c)
        iou.append(inter / union if union else None)
    scored = [v for v in iou if v is not None]
    acc = sum(1 for p, g in counted if p == g) / len(counted) if counted else None
    return iou, (sum(scored) / len(scored) if scored else None), acc


def test_iou_equals_the_plain_definition_on_hand_made_cases():
    n, names = 4, ("a", "b", "c", "d")
    gt = np.array([[0, 0, 1, 1, 255, 255], [0, 1, 1, 3, 255, 0]], np.uint8)
    pred = np.array([[0, 1, 1, 1, 2, 2], [0, 1, 0, 3, 3, 2]], np.uint8)
    # class 2: only predicted (IoU 0, counted in the mean); class 3: in both; no class absent
    cases = {"mixed": (pred, gt)}
    # class 2 absent from both (None, left out of the mean); class 3 only in the ground truth
    cases["absent"] = (np.array([0, 0, 1, 1, 0]), np.array([0, 1, 1, 3, 255]))
    cases["all ignored"] = (np.array([0, 1, 2]), np.array([255, 255, 255]))
    for what, (p, g) in cases.items():
        got = segscore.scores(segscore.confusion(p, g, n), names)
        iou, miou, acc = _plain_scores(p, g, n)
        assert list(got["per_class_iou"].values()) == pytest.approx(iou, abs=1e-12), what
        assert list(got["per_class_iou"]) == list(names)
        if miou is None:
            assert got["mean_iou"] is None and got["pixel_accuracy"] is None, what
        else:
            assert got["mean_iou"] == pytest.approx(miou, abs=1e-12), what
            assert got["pixel_accuracy"] == pytest.approx(acc, abs=1e-12), what
    absent = segscore.scores(segscore.confusion(*cases["absent"], n), names)
    assert absent["per_class_iou"]["c"] is None and absent["per_class_iou"]["d"] == 0.0
    assert absent["classes_scored"] == 3 and absent["pixels"] == 4
    # the matrix accumulates over images: two halves give the whole
    whole = segscore.confusion(pred, gt, n)
    halves = segscore.confusion(pred[0], gt[0], n) + segscore.confusion(pred[1], gt[1], n)
    assert np.array_equal(whole, halves) and whole.dtype == np.int64


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    m = segscore.cityscapes_map()
    ids = np.arange(256, dtype=np.uint8)
    got = m.apply(ids)
    # cityscapesScripts labels.py: the 19 evaluated classes, everything else ignored
    want = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
            24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip
    assert {i: int(c) for i, c in enumerate(got) if c != 255} == want
    assert m.names[13] == "car" and m.names[0] == "road" and len(m.names) == 19
    # a custom map: ids as strings, null ignores, names optional
    f = tmp_path / "map.json"
    f.write_text(
        json.dumps({"label_to_class": {"1": 0, "2": 1, "3": None}, "class_names": ["x", "y"]})
    )
    custom = segscore.read_seg_map(f, 2)
    assert custom.apply(np.array([0, 1, 2, 3], np.uint8)).tolist() == [255, 0, 1, 255]
    assert custom.names == ("x", "y")
    f.write_text(json.dumps({"5": 1}))
    assert segscore.read_seg_map(f, 2).apply(np.array([5], np.uint8)).tolist() == [1]
    for doc, msg in (
        ({"5": 7}, "classes are 0..1"),
        ({"x": 1}, "not an integer in 0..255"),
        ({"label_to_class": {"1": 0}, "class_names": ["only one"]}, "must list the segmenter's 2"),
        ([1, 2], "JSON object"),
    ):
        f.write_text(json.dumps(doc))
        with pytest.raises(UsageError, match=f"{f}: .*{msg}"):
            segscore.read_seg_map(f, 2)


# ---------------------------------------------------------------------------------------------
# the verb on a tiny render


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_manifest(tmp_path_factory.mktemp("seg") / "tiny-test.h5")


def test_verb_scores_a_render_without_the_inception(tiny, tmp_path, capsys, runtime_cpu):
    """--seg alone: no Inception file anywhere; the numbers in metrics.json are the score of
    the network's predictions against the manifest's labels mapped to train ids, computed here
    from the PNGs; --seg_real adds the real photos; the page shows them."""
    from p2phd.metrics.drn import Predict

    folder = make_render(tmp_path / "render-test", tiny)
    rc, out, err = evaluate_cli(
        capsys,
        folder,
        "--seg",
        C26,
        "--seg_size",
        "64x128",
        "--seg_real",
        "--seg_engine",
        "mindspore",
    )  # the ONNX engines: test_seg_onnx.py
    assert rc == 0, err
    assert out == f"{folder / 'metrics.json'}\n"
    m = json.loads((folder / "metrics.json").read_text())
    assert m["schema"] == "p2phd.metrics/1" and m["scores"] == ["segmentation"]
    assert m["fid"] is None and m["kid"] is None and m["inception"] is None
    s = m["segmentation"]
    assert s["size"] == [64, 128] and s["network"]["arch"] == "drn_c_26-like"
    assert s["engine"]["name"] == "mindspore"
    assert s["labels"]["ids"]["26"] == 13 and s["labels"]["ignore"] == 255

    import mindspore as ms

    from p2phd.data.dataset import Dataset

    predict = Predict(seg.load_drn(C26))
    total = {"renders": np.zeros((19, 19), np.int64), "real": np.zeros((19, 19), np.int64)}
    with Dataset(tiny) as ds:
        for i, name in enumerate(ds.names):
            gt = segscore.cityscapes_map().apply(ds.sample(i).label)
            for key, png in (("renders", "synthesized"), ("real", "real")):
                img = np.asarray(Image.open(folder / f"{name}_{png}.png").convert("RGB"))
                x = ms.Tensor(img[None].astype(np.float32).transpose(0, 3, 1, 2) / 255)
                total[key] += segscore.confusion(predict(x).asnumpy()[0], gt, 19)
    for key in ("renders", "real"):
        want = segscore.scores(total[key], segscore.CITYSCAPES_CLASSES)
        assert s[key] == want, key
    assert s["renders"]["pixels"] == 3 * (64 * 128 - 32)  # the void corner is not counted
    page = (folder / "index.html").read_text()
    assert f"{100 * s['renders']['mean_iou']:.2f} %" in page and "the upper bound" in page
    assert "per-class IoU" in page and "FID" not in page.split("<!-- /metrics -->")[0]


def test_verb_resizes_to_the_protocol_size(tiny, tmp_path, capsys, runtime_cpu):
    """Renders at 2x the label maps' size (as --original_size renders) are scored at
    --seg_size: BICUBIC images, NEAREST labels; the label map keeps only real label ids."""
    folder = make_render(tmp_path / "render-big", tiny, size=(128, 256))
    rc, _, err = evaluate_cli(capsys, folder, "--seg", C26, "--seg_size", "32x64")
    assert rc == 0, err
    s = json.loads((folder / "metrics.json").read_text())["segmentation"]
    assert s["size"] == [32, 64] and "NEAREST" in s["label_resize"]
    assert s["renders"]["pixels"] == 3 * (32 * 64 - 8)  # NEAREST keeps the 4x8 void corner
    assert s["real"] is None


def test_verb_refuses_bad_input(tiny, tmp_path, capsys):
    folder = make_render(tmp_path / "r", tiny)
    other = FIX.parent / "fid" / "other_network.pth"
    rc, out, err = evaluate_cli(capsys, folder, "--seg", other)
    assert rc == 2 and out == "" and f"{other}: not a fyu/drn DRNSeg" in err
    assert "missing key 'seg.weight'" in err and err.count("\n") == 1
    assert not (folder / "metrics.json").exists()

    rc, _, err = evaluate_cli(capsys, folder, "--seg", C26, "--seg_size", "60x120")
    assert rc == 2 and "multiples of 8" in err
    rc, _, err = evaluate_cli(capsys, folder, "--seg", C26, "--seg_size", "64x64")
    assert rc == 2 and "change its aspect ratio" in err and "_synthesized.png" in err
    rc, _, err = evaluate_cli(capsys, folder, "--seg_real")
    assert rc == 2 and "--seg_real needs --seg FILE" in err
    rc, _, err = evaluate_cli(capsys, folder, "--seg", C26, "--kid")
    assert rc == 2 and "--kid needs the Inception" in err

    square = make_render(tmp_path / "square", tiny, size=(64, 64))
    rc, _, err = evaluate_cli(capsys, square, "--seg", C26, "--seg_size", "native")
    assert rc == 2 and "size mismatch" in err and f"{square}/town_000000_000019" in err

    custom = make_manifest(tmp_path / "custom.h5", label_nc=12)
    rc, _, err = evaluate_cli(capsys, make_render(tmp_path / "rc", custom), "--seg", C26)
    assert rc == 2 and f"{custom}: label_nc 12" in err and "--seg_map FILE" in err

    images = make_manifest(tmp_path / "images.h5", label_nc=0, labels_as_images=True)
    rc, _, err = evaluate_cli(capsys, make_render(tmp_path / "ri", images), "--seg", C26)
    assert rc == 2 and f"{images}: the render's inputs are images" in err


def test_dry_run_names_both_scores(tiny, tmp_path, capsys):
    folder = make_render(tmp_path / "r", tiny)
    rc, out, err = evaluate_cli(capsys, folder, "--seg", C26, "--inception", "pt.pth", "--dry-run")
    assert rc == 0 and out == ""
    assert f"would compare 3 renders in {folder} with the photos of" in err
    assert f"segmented by {C26} at 256x512" in err and not (folder / "metrics.json").exists()

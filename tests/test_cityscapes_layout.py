"""bin/render --layout cityscapes: the sample's 15 test label maps rendered with 2 variants into a
Cityscapes tree that the official cityscapesscripts package parses and scores (its labels as the
predictions: mIoU 1.0); every photo beside its maps at its size, as trainers pair them; shards and
resume give the same tree; flat output unchanged; --original_size links the source maps; custom
names get the generic city; bin/evaluate reads the tree; p2phd's label tables are the official
ones. Tiny: a hand-made instance-feature run (random G and E, ngf 4), 64x128 maps."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_TEST, sample_manifest, tiny_frame
from PIL import Image
from seg_util import C26
from train_util import feature_run, hand_clusters

from p2phd.core.cli import UsageError, run_verb
from p2phd.core.palette import (
    CITYSCAPES,
    CITYSCAPES_CLASSES,
    CITYSCAPES_TRAIN_ID,
    colourise,
    train_id_table,
)
from p2phd.data import prepare
from p2phd.data.dataset import Dataset
from p2phd.metrics import evaluate
from p2phd.rendering import cityscapes as cs
from p2phd.rendering import render
from p2phd.rendering.files import _HOST
from p2phd.rendering.page import read_manifest

pytestmark = pytest.mark.slow  # renders with a run: not in `make test-fast`

TEST_NAMES = 15
KINDS = ("labelIds", "instanceIds", "color", "labelTrainIds")


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cityscapes-layout")


@pytest.fixture(scope="module")
def test_manifest(work: Path) -> Path:
    """The sample's 15 test label maps (+ instance maps, no photos) at 64x128."""
    return sample_manifest("test", 128, copy_to=work)


@pytest.fixture(scope="module")
def model(work: Path, test_manifest: Path) -> list[str]:
    """--run and --clusters of a feature run: what --variants needs."""
    run = feature_run(work / "feat", test_manifest)
    return ["--run", str(run), "--clusters", str(hand_clusters(work / "clusters.h5"))]


def _render(model: list[str], manifest: Path, out: Path, *extra: str) -> int:
    args = [*model, str(manifest), "--out", str(out), "--variants", "2", "--batch_size", "2"]
    return run_verb(render.main, [*args, *extra])


@pytest.fixture(scope="module")
def tree(work: Path, model: list[str], test_manifest: Path) -> Path:
    out = work / "tree"
    assert _render(model, test_manifest, out, "--layout", "cityscapes") == 0
    return out


@pytest.fixture(scope="module")
def flat(work: Path, model: list[str], test_manifest: Path) -> Path:
    out = work / "flat"
    assert _render(model, test_manifest, out) == 0
    return out


def _files(out: Path) -> dict[str, bytes]:
    """Every PNG of the tree (relative path -> bytes)."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for top in cs.TREES
        for p in sorted((out / top).rglob("*.png"))
    }


def _gt(photo: str, kind: str) -> str:
    """A photo's map as mmsegmentation's Cityscapes loader finds it (folder and suffix swapped)."""
    return photo.replace("leftImg8bit/", "gtFine/", 1).replace(
        "_leftImg8bit.png", f"_gtFine_{kind}.png"
    )


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


# ---------------------------------------------------------------------------------------------
# the official scripts


def _official_scores(gt_files: list[str], pred_dir: Path) -> dict:
    """cityscapesscripts' pixel-level evaluation, its predictions found by its own name search."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev

    args = ev.args
    args.predictionPath, args.predictionWalk = str(pred_dir), None
    args.JSONOutput, args.quiet, args.evalPixelAccuracy = False, True, False
    args.evalInstLevelScore = True  # reads each labelIds file's instanceIds beside it
    preds = [ev.getPrediction(args, gt) for gt in gt_files]
    return ev.evaluateImgLists(preds, gt_files, args)


def test_official_scripts_parse_and_score_the_tree(tree: Path, tmp_path: Path) -> None:
    from cityscapesscripts.helpers.csHelpers import getCsFileInfo

    files = sorted(_files(tree))
    photos = [f for f in files if f.startswith("leftImg8bit/")]
    gts = [f for f in files if f.startswith("gtFine/")]
    assert len(photos) == TEST_NAMES * 2 and len(gts) == TEST_NAMES * 2 * len(KINDS)
    assert not [f for f in files if f.startswith("real/")]  # the test split has no photos
    for f in photos + gts:
        top, split, city, name = f.split("/")
        info = getCsFileInfo(name)  # exits the process on a name it cannot parse
        assert (split, info.city) == ("test", city) and info.ext == "png", f
        assert re.fullmatch(r"\d{6}", info.sequenceNb) and re.fullmatch(r"\d{6}", info.frameNb)
        want = ("leftImg8bit", "") if top == "leftImg8bit" else ("gtFine", info.type2)
        assert (info.type, info.type2) == want and (top != "gtFine" or info.type2 in KINDS)
    assert {f.split("/")[2] for f in files} == {"frankfurt-v0", "frankfurt-v1"}

    # The gtFine labelIds as predictions (hard links under their own names, found by the
    # scripts' own search): every class present scores IoU 1.0, instance-weighted too.
    gt_files = sorted(str(tree / f) for f in gts if f.endswith("_gtFine_labelIds.png"))
    pred_dir = tmp_path / "pred"
    for g in gt_files:
        (pred_dir / Path(g).parent.name).mkdir(parents=True, exist_ok=True)
        os.link(g, pred_dir / Path(g).parent.name / Path(g).name)
    res = _official_scores(gt_files, pred_dir)
    present = {k: v for k, v in res["classScores"].items() if not np.isnan(v)}
    assert {"road", "car", "building", "sky"} <= set(present)
    assert all(v == 1.0 for v in present.values()) and res["averageScoreClasses"] == 1.0
    inst = [v for v in res["classInstScores"].values() if not np.isnan(v)]
    assert inst and all(v == 1.0 for v in inst)

    # The check can fail: one frame's prediction shifted by 8 columns scores below 1.
    shifted = tmp_path / "shifted" / "x"
    shifted.mkdir(parents=True)
    name = Path(gt_files[0]).name
    Image.fromarray(np.roll(_png(Path(gt_files[0])), 8, axis=1)).save(shifted / name)
    assert _official_scores(gt_files[:1], shifted.parent)["averageScoreClasses"] < 0.99


# ---------------------------------------------------------------------------------------------
# what a trainer reads


def test_every_photo_has_its_maps_at_its_size(tree: Path, flat: Path, test_manifest: Path) -> None:
    """mmsegmentation's pairing (leftImg8bit -> gtFine, suffix swapped) finds every map; each is
    at its photo's size and holds the manifest's map; the photos are the flat render's PNGs."""
    ds = Dataset(test_manifest)
    m = read_manifest(tree / "render.h5")
    fm = read_manifest(flat / "render.h5")
    assert m["attrs"]["layout"] == "cityscapes" and fm["attrs"]["layout"] == "flat"
    assert [r["name"] for r in m["rows"]] == ds.names
    table = train_id_table()
    for r, fr in zip(m["rows"], fm["rows"], strict=True):
        s = ds.sample(r["row"])
        city, seq, frame = r["name"].split("_")
        for k, photo in enumerate(r["synthesized"]):
            assert (
                photo == f"leftImg8bit/test/{city}-v{k}/{city}-v{k}_{seq}_{frame}_leftImg8bit.png"
            )
            assert (tree / photo).read_bytes() == (flat / fr["synthesized"][k]).read_bytes()
            h, w = _png(tree / photo).shape[:2]
            gt = {kind: tree / _gt(photo, kind) for kind in KINDS}
            maps = {kind: _png(p) for kind, p in gt.items()}
            assert all(a.shape[:2] == (h, w) for a in maps.values())
            np.testing.assert_array_equal(maps["labelIds"], s.label)
            np.testing.assert_array_equal(maps["instanceIds"], s.inst)
            assert maps["instanceIds"].dtype == np.uint16  # 16-bit, as Cityscapes stores them
            np.testing.assert_array_equal(maps["labelTrainIds"], table[s.label])
            np.testing.assert_array_equal(maps["color"], colourise(s.label, 35))
            for kind, p in gt.items():  # the other variants' maps: hard links to variant 0's
                first = tree / _gt(r["synthesized"][0], kind)
                assert p.stat().st_ino == first.stat().st_ino, p
        assert r["style"] == fr["style"] and r["seed"] == fr["seed"]  # variant -> style kept
        assert r["label_image"].endswith("-v0_" + f"{seq}_{frame}_gtFine_color.png")
    page = (tree / "index.html").read_text()
    assert page.count("<tr><td>frankfurt_") == TEST_NAMES
    assert "<td>layout</td><td>cityscapes</td>" in page
    assert all(f'src="{f}"' in page for r in m["rows"] for f in r["synthesized"])
    # Nothing flat beside the tree, and the flat folder holds no tree (flat output unchanged).
    assert sorted(p.name for p in tree.iterdir() if p.is_file()) == [
        "index.html",
        "render-settings.json",
        "render.h5",
    ]
    assert not any((flat / t).exists() for t in cs.TREES)
    assert "layout" not in json.loads((flat / "render-settings.json").read_text())
    assert "<td>layout</td>" not in (flat / "index.html").read_text()


# ---------------------------------------------------------------------------------------------
# shards, resume, refusal, overwrite


def test_shards_and_resume_give_the_same_tree(
    work: Path, tree: Path, flat: Path, model: list[str], test_manifest: Path, capfd
) -> None:
    out = work / "sharded"
    layout = ("--layout", "cityscapes")
    assert _render(model, test_manifest, out, *layout, "--shard", "0/2") == 0
    assert _render(model, test_manifest, out, *layout, "--merge") == 2  # shard 1 missing
    assert _render(model, test_manifest, out, *layout, "--shard", "1/2") == 0
    assert _render(model, test_manifest, out, *layout, "--merge") == 0
    assert _files(out) == _files(tree)
    assert read_manifest(out / "render.h5")["rows"] == read_manifest(tree / "render.h5")["rows"]

    # Resume: a photo, a linked map and a variant-0 map gone, a dead writer's temporary left.
    m = read_manifest(out / "render.h5")["rows"]
    gone = [
        m[3]["synthesized"][1],
        _gt(m[5]["synthesized"][1], "labelIds"),
        _gt(m[7]["synthesized"][0], "instanceIds"),
    ]
    for f in gone:
        (out / f).unlink()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    city = out / Path(gone[0]).parent
    tmp = city / f".{Path(gone[0]).name}.{_HOST}.{dead.stdout.strip()}.tmp"
    tmp.write_bytes(b"partial")
    (out / "render.h5").unlink()
    kept = {f: (out / f).stat().st_mtime_ns for f in _files(out) if "_000576_" in f}
    capfd.readouterr()
    assert _render(model, test_manifest, out, *layout) == 0
    assert "3 of 15 samples" in capfd.readouterr().err  # only those three render again
    assert not tmp.exists() and _files(out) == _files(tree)
    assert all((out / f).stat().st_mtime_ns == t for f, t in kept.items())  # untouched

    # Other settings are refused; --overwrite replaces the tree by the flat render, and back.
    assert _render(model, test_manifest, out) == 2
    assert _render(model, test_manifest, out, "--overwrite") == 0
    assert not any((out / t).exists() for t in cs.TREES)
    flat_pngs = {p.name: p.read_bytes() for p in flat.glob("*.png")}
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == flat_pngs
    assert _render(model, test_manifest, out, *layout) == 2
    assert _render(model, test_manifest, out, *layout, "--overwrite") == 0
    assert not list(out.glob("*.png")) and _files(out) == _files(tree)


# ---------------------------------------------------------------------------------------------
# --original_size, custom names, refusals


def _prepare(root: Path, out: Path, *extra: str) -> Path:
    argv = ["--dataroot", str(root), "--phase", "test", "--jobs", "1", "--out", str(out)]
    assert run_verb(prepare.main, [*argv, *extra]) == 0
    return out


def test_original_size_links_the_sources_and_custom_names_get_the_generic_city(
    model: list[str], tiny_cityscapes: Path, tmp_path: Path, capfd
) -> None:
    """Maps stored at 32x64 from 64x128 sources: with --original_size the photos are 64x128 and
    the gtFine labelIds/instanceIds are the source files themselves (hard links); a source
    changed since prepare is replaced by the manifest's map upscaled NEAREST. A sample named
    ``street`` (no Cityscapes name) becomes custom_000000_<row>."""
    label, inst, _ = tiny_frame(7)  # a custom name: street.png in test_label and test_inst
    Image.fromarray(label).save(tiny_cityscapes / "test_label" / "street.png")
    Image.fromarray(inst.astype(np.uint16)).save(tiny_cityscapes / "test_inst" / "street.png")
    small = _prepare(tiny_cityscapes, tmp_path / "small.h5", "--load_size", "64")
    ds = Dataset(small)
    assert ds.names == ["street", *TINY_TEST]
    out = tmp_path / "orig"
    base = [*model, str(small), "--layout", "cityscapes"]
    assert run_verb(render.main, [*base, "--out", str(out), "--original_size"]) == 0
    m = read_manifest(out / "render.h5")
    assert m["rows"][0]["synthesized"] == [
        "leftImg8bit/test/custom/custom_000000_000000_leftImg8bit.png"
    ]
    assert m["rows"][1]["synthesized"] == [
        "leftImg8bit/test/tinyville/tinyville_000100_000019_leftImg8bit.png"
    ]
    for i, r in enumerate(m["rows"]):
        photo = r["synthesized"][0]
        assert _png(out / photo).shape == (64, 128, 3) and r["size"] == [64, 128]
        src = ds.paths(i)
        for kind, key in (("labelIds", "label_path"), ("instanceIds", "inst_path")):
            assert (out / _gt(photo, kind)).stat().st_ino == Path(src[key]).stat().st_ino
        ids = _png(Path(src["label_path"]))
        np.testing.assert_array_equal(
            _png(out / _gt(photo, "labelTrainIds")), train_id_table()[ids]
        )

    # A source changed after prepare is not linked: the manifest's map, upscaled NEAREST.
    changed = Path(ds.paths(1)["label_path"])
    Image.fromarray(np.full((64, 128), 7, np.uint8)).save(changed)
    capfd.readouterr()
    out2 = tmp_path / "changed"
    assert run_verb(render.main, [*base, "--out", str(out2), "--original_size"]) == 0
    assert "gone or changed since prepare" in capfd.readouterr().err
    photo = m["rows"][1]["synthesized"][0]
    got = out2 / _gt(photo, "labelIds")
    assert got.stat().st_ino != changed.stat().st_ino
    up = Image.fromarray(ds.sample(1).label).resize((128, 64), Image.Resampling.NEAREST)
    np.testing.assert_array_equal(_png(got), np.asarray(up))
    assert (out2 / _gt(photo, "instanceIds")).stat().st_nlink >= 2  # unchanged: still linked

    # Without --original_size: everything at the manifest's 32x64, from the manifest.
    out3 = tmp_path / "stored"
    assert run_verb(render.main, [*base, "--out", str(out3)]) == 0
    for i, r in enumerate(read_manifest(out3 / "render.h5")["rows"]):
        photo = r["synthesized"][0]
        assert _png(out3 / photo).shape == (32, 64, 3)
        np.testing.assert_array_equal(_png(out3 / _gt(photo, "labelIds")), ds.sample(i).label)
        np.testing.assert_array_equal(_png(out3 / _gt(photo, "instanceIds")), ds.sample(i).inst)


def test_names_and_inputs_the_layout_refuses(tmp_path: Path) -> None:
    # two samples that would share one Cityscapes name, and RGB inputs (no label ids)
    with pytest.raises(UsageError, match="would both be written as"):
        cs.check_names(["a_b_000000_000001", "a-b_000000_000001"], "val", 1, False)
    cs.check_names(["a_b_000000_000001", "a-b_000000_000002"], "val", 2, False)  # distinct
    with pytest.raises(UsageError, match="label_nc 0"):
        cs.gt_kinds(0, False)
    assert cs.gt_kinds(35, False) == ("labelIds", "color", "labelTrainIds")
    assert cs.gt_kinds(20, True) == ("labelIds", "instanceIds", "color")  # not Cityscapes ids
    assert cs.frame_parts("my_town_000012_000034", 5) == ("my-town", "000012", "000034")
    assert cs.frame_parts("img7", 1_234_567) == ("custom", "000001", "234567")
    files = cs.sample_files("img7", 3, "train", 3, True, ("labelIds", "color"))
    assert (
        files["synthesized"][2]
        == "leftImg8bit/train/custom-v2/custom-v2_000000_000003_leftImg8bit.png"
    )
    assert files["real"] == "real/train/custom/custom_000000_000003_real.png"
    assert files["gt"][1] == {
        "labelIds": "gtFine/train/custom-v1/custom-v1_000000_000003_gtFine_labelIds.png",
        "color": "gtFine/train/custom-v1/custom-v1_000000_000003_gtFine_color.png",
    }
    assert all(cs.OURS.match(f) for f in [*files["synthesized"], files["real"], files["label"]])


# ---------------------------------------------------------------------------------------------
# bin/evaluate, and the label tables


def test_evaluate_reads_the_tree_as_the_flat_folder(
    tree: Path, flat: Path, tmp_path: Path, capsys
) -> None:
    """--seg scores of the tree and of the flat render of the same pixels are identical."""
    scores = {}
    for name, folder in (("tree", tree), ("flat", flat)):
        out = tmp_path / f"{name}.json"
        argv = [str(folder), "--seg", str(C26), "--seg_size", "64x128", "--out", str(out)]
        assert run_verb(evaluate.main, [*argv, "--seg_engine", "mindspore"]) == 0
        scores[name] = json.loads(out.read_text())["segmentation"]["renders"]
    assert scores["tree"] == scores["flat"] and scores["tree"]["pixels"] > 0


def test_label_tables_are_the_official_ones() -> None:
    """p2phd keeps its own copies (cityscapesscripts is a test dependency only): names, colours,
    trainIds and the trainId class names equal the official labels.py."""
    from cityscapesscripts.helpers.labels import labels

    from p2phd.data import demo
    from p2phd.features.styles import CITYSCAPES_NAMES

    official = sorted((lb for lb in labels if lb.id >= 0), key=lambda lb: lb.id)
    assert [lb.id for lb in official] == list(range(34))
    assert CITYSCAPES_NAMES == tuple(lb.name for lb in official)
    assert [tuple(c) for c in CITYSCAPES[:34].tolist()] == [lb.color for lb in official]
    train = {lb.id: lb.trainId for lb in official if lb.trainId not in (255, -1)}
    assert CITYSCAPES_TRAIN_ID == train
    by_train = {lb.trainId: lb.name for lb in official if lb.id in train}
    assert CITYSCAPES_CLASSES == tuple(by_train[t] for t in range(19))
    table = train_id_table()
    assert all(table[lb.id] == (lb.trainId if lb.id in train else 255) for lb in official)
    names = {lb.id: lb.name for lb in official}
    for const, name in (("ROAD", "road"), ("SKY", "sky"), ("BUILDING", "building")):
        assert names[getattr(demo, const)] == name  # the demo data draws official ids


def test_fid_of_the_tree_is_the_flat_folders(
    work: Path, model: list[str], tmp_path: Path, capsys
) -> None:
    """Two train frames (with photos; FID needs two): the real photos land in real/, and bin/evaluate's FID
    (pytorch-fid's Inception with the tests' seeded random weights) of the tree equals the flat
    folder's."""
    import gzip

    train = sample_manifest("train", 128, copy_to=tmp_path)  # the FID cache goes beside it
    pth = tmp_path / "fid_inception_random.pth"
    with gzip.open(Path(__file__).parent / "fixtures" / "fid" / (pth.name + ".gz")) as src:
        pth.write_bytes(src.read())
    fids = {}
    for layout in ("cityscapes", "flat"):
        out = tmp_path / layout
        args = ["--layout", layout, "--max_samples", "2", "--variants", "1"]
        assert _render(model, train, out, *args) == 0
        report = tmp_path / f"{layout}.json"
        # PyNative: the same kernels without the Inception graph's compile
        argv = [str(out), "--inception", str(pth), "--out", str(report), "--pynative"]
        assert run_verb(evaluate.main, argv) == 0
        fids[layout] = json.loads(report.read_text())["fid"]
    rows = read_manifest(tmp_path / "cityscapes" / "render.h5")["rows"]
    ds = Dataset(train)
    for r in rows:
        assert r["real_image"] == f"real/train/aachen/{r['name']}_real.png"
        np.testing.assert_array_equal(
            _png(tmp_path / "cityscapes" / r["real_image"]), ds.sample(r["row"]).photo
        )
    assert fids["cityscapes"] == fids["flat"] and fids["flat"] is not None

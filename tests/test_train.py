"""bin/train end to end on the sample (real or generated; tiny nets): learning, feature modes, VGG, web page,
bad inputs (exit 2, nothing written) and --dry-run parameter counts (the reference numbers)."""

import json
from pathlib import Path

import pytest
from train_util import (
    TINY,
    assert_learned,
    here,
    label_blind_l1,
    sample_manifest,
    stats,
    write_vgg,
)

pytestmark = pytest.mark.slow  # trains (bin/train): not in `make test-fast`


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("train")


@pytest.fixture(scope="module")
def manifest(work: Path) -> Path:
    return sample_manifest(work)


def _l1(run: Path, manifest: Path) -> tuple[float, float, float]:
    """Mean |G(label) - photo| over the 8 frames for the trained run and for an untrained G, and
    the label-blind best image's (train_util.assert_learned)."""
    from p2phd.core import runs, runtime
    from p2phd.data.dataset import Dataset
    from p2phd.nets import build_generator
    from p2phd.training import loop

    runtime.setup("CPU", False, 0)
    with Dataset(manifest) as ds:
        G, E, arch, meta = runs.load_inference(run, ds.max_instances)
        trained = loop.l1_to_photos(G, ds, arch, E)
        runtime.seed_everything(0)
        untrained = loop.l1_to_photos(build_generator(arch), ds, arch)
        blind = label_blind_l1(ds, arch)
    return trained, untrained, blind


def test_learns_and_writes_the_run_folder(work: Path, manifest: Path) -> None:
    p = here(
        "train",
        [
            manifest,
            "--name",
            "learn",
            *TINY,
            "--no_vgg_loss",
            "--niter",
            "5",
            "--niter_decay",
            "0",
            "--print_freq",
            "8",
            "--display_freq",
            "16",
        ],
        work,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    run = work / "outputs" / "learn"
    assert p.stdout == "outputs/learn\n"
    assert_learned(*_l1(run, manifest))
    lines = stats(run)
    assert [ln["step"] for ln in lines] == [8, 16, 24, 32, 40]
    assert set(lines[0]) >= {
        "G_GAN",
        "G_GAN_Feat",
        "G_VGG",
        "D_real",
        "D_fake",
        "lr",
        "sec_per_step",
        "epoch",
        "step",
    }
    assert lines[-1]["G_VGG"] == 0.0 and lines[-1]["G_GAN_Feat"] > 0
    doc = json.loads((run / "options.json").read_text())
    assert doc["schema"] == "p2phd.run/1" and doc["options"]["ngf"] == 8
    page = (run / "web" / "index.html").read_text()
    for kind in ("input_label", "synthesized_image", "real_image"):
        assert (
            f"epoch004_{kind}.jpg" in page
            and (run / "web" / "images" / f"epoch002_{kind}.jpg").is_file()
        )


def test_vgg_loss_and_label_feat(work: Path, manifest: Path) -> None:
    """The VGG path reads a model-zoo layout checkpoint; label_feat trains E (in G's optimiser);
    --no_lsgan (BCE on a sigmoid D, which crashes in the MindSpore port) trains."""
    vgg = write_vgg(work / "vgg19.ckpt")
    p = here(
        "train",
        [
            manifest,
            "--name",
            "vgg",
            *TINY,
            "--vgg_pre_trained",
            vgg,
            "--label_feat",
            "--no_lsgan",
            "--max_steps",
            "2",
            "--print_freq",
            "1",
        ],
        work,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    run = work / "outputs" / "vgg"
    assert all(ln["G_VGG"] > 0 for ln in stats(run))
    from train_util import state_arrays

    from p2phd.core.checkpoint import read_meta

    snap = state_arrays(run / "G.ckpt")
    assert any(k.startswith("netE.") for k in snap) and read_meta(run / "G.ckpt")["step"] == 2
    state = state_arrays(run / "state" / "step-00000002" / "state.ckpt")
    assert any(k.startswith("optG.moment1.netE.") for k in state)


def test_load_features_mode(work: Path, manifest: Path) -> None:
    """--load_features reads precomputed maps: no encoder is built or saved (and D without
    intermediate outputs under --no_ganFeat_loss)."""
    feat_run = work / "outputs" / "vgg"  # trained with --label_feat above
    from p2phd.features import precompute

    out = work / "features.h5"
    if not feat_run.exists():
        pytest.skip("needs test_vgg_loss_and_label_feat's run")
    assert precompute.main(["--run", str(feat_run), str(manifest), "--out", str(out)]) == 0
    p = here(
        "train",
        [
            manifest,
            "--name",
            "loadfeat",
            *TINY,
            "--no_vgg_loss",
            "--no_ganFeat_loss",
            "--label_feat",
            "--load_features",
            out,
            "--max_steps",
            "2",
            "--print_freq",
            "1",
        ],
        work,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    from train_util import state_arrays

    snap = state_arrays(work / "outputs" / "loadfeat" / "G.ckpt")
    assert snap and not any(k.startswith("netE.") for k in snap)
    assert all(ln["G_GAN_Feat"] == 0.0 for ln in stats(work / "outputs" / "loadfeat"))


def _bad(work: Path, args: list, expect: str, capsys, name: str = "bad") -> None:
    """In-process (one MindSpore import for all cases): exit 2, one line, nothing written."""
    from p2phd.core import cli
    from p2phd.training import train as train_verb

    capsys.readouterr()
    argv = [str(a) for a in args] + ["--name", name, "--checkpoints_dir", str(work / "outputs")]
    assert cli.run_verb(train_verb.main, argv) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0], err
    assert out == ""
    assert not (work / "outputs" / name).exists()


def test_bad_inputs_exit_2_and_write_nothing(work: Path, manifest: Path, capsys) -> None:
    from p2phd.core import checkpoint, runtime
    from p2phd.core import manifest as mf
    from p2phd.core.options import DataOptions, ModelOptions
    from p2phd.nets import build_generator

    other = work / "clusters.h5"
    with mf.create(other, "clusters", "cluster", {}) as f:
        f.attrs["feat_num"] = 3
    _bad(work, [other, *TINY, "--no_vgg_loss"], "clusters", capsys)
    _bad(work, [manifest, *TINY, "--no_vgg_loss", "--label_nc", "20"], "label_nc 35", capsys)
    _bad(
        work,
        [manifest, *TINY, "--vgg_pre_trained", work / "missing" / "vgg19.ckpt"],
        "--no_vgg_loss",
        capsys,
    )
    # a generator of another width: the trunk's shapes do not match
    runtime.setup("CPU", False, 0)

    class Arch(DataOptions, ModelOptions):
        pass

    arch = Arch()
    arch.ngf, arch.n_downsample_global, arch.n_blocks_global = 4, 2, 1
    wrong = work / "wrong_G.ckpt"
    checkpoint.save(wrong, {"netG": build_generator(arch)}, {"step": 0})
    _bad(
        work,
        [manifest, *TINY, "--no_vgg_loss", "--load_pretrain", wrong],
        "incompatible architecture",
        capsys,
    )
    unrelated = work / "unrelated.ckpt"
    checkpoint.save(unrelated, {"netX": build_generator(arch)}, {"step": 0})
    _bad(
        work,
        [manifest, *TINY, "--no_vgg_loss", "--load_pretrain", unrelated],
        "no generator trunk",
        capsys,
    )
    _bad(
        work,
        [manifest, *TINY, "--no_vgg_loss", "--load_pretrain", work / "nope"],
        "no such run",
        capsys,
    )


@pytest.mark.parametrize(
    "mode,args,expected",
    [
        ("512p", [], {"G": 182_546_755, "D": 5_603_202}),
        ("512p_feat", ["--instance_feat"], {"G": 182_556_163, "D": 5_603_202, "E": 788_803}),
        (
            "1024p",
            ["--netG", "local", "--ngf", "32", "--num_D", "3"],
            {"G": 182_857_059, "D": 8_404_803},
        ),
    ],
)
def test_dry_run_parameter_counts(
    work: Path, manifest: Path, mode: str, args: list, expected: dict, capsys
) -> None:
    from p2phd.core import cli
    from p2phd.training import train as train_verb

    argv = [
        str(manifest),
        "--name",
        f"dry{mode}",
        "--checkpoints_dir",
        str(work / "outputs"),
        "--no_vgg_loss",
        "--dry_run",
        *args,
    ]
    capsys.readouterr()
    assert cli.run_verb(train_verb.main, argv) == 0
    out, err = capsys.readouterr()
    for net, count in expected.items():
        assert f"{net}: {count:,} parameters" in err
    assert "would_write" in err and out == ""
    assert not (work / "outputs" / f"dry{mode}").exists()

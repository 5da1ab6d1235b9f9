"""NVIDIA pix2pixHD's command lines through p2phd's parsers (core/nvidia_options.py).

The command lines are NVIDIA's README and scripts/*.sh (14b3b3c): `python train.py ...` becomes
`bin/train MANIFEST ...`, `python test.py ...` becomes `bin/render MANIFEST ...` (p2phd reads
prepared manifests instead of --dataroot), encode_features.py / precompute_feature_maps.py become
`bin/precompute MANIFEST ...`. No networks run: these are the parsers and the run folder checks.
"""

import contextlib
import io
import re
from pathlib import Path

import pytest

from p2phd.core import runs
from p2phd.core.cli import UsageError, options_dict, parse_options, run_verb
from p2phd.core.nvidia_options import RULES
from p2phd.data.prepare import PrepareOptions
from p2phd.features.precompute import PrecomputeOptions
from p2phd.rendering import render
from p2phd.rendering.options import RenderOptions
from p2phd.training import train
from p2phd.training.train import TrainOptions

REPO = Path(__file__).resolve().parents[1]

# Every option of NVIDIA's options/base_options.py, train_options.py and test_options.py.
NVIDIA_OPTIONS = """
name gpu_ids checkpoints_dir model norm use_dropout data_type verbose fp16 local_rank batchSize
loadSize fineSize label_nc input_nc output_nc dataroot resize_or_crop serial_batches no_flip
nThreads max_dataset_size display_winsize tf_log netG ngf n_downsample_global n_blocks_global
n_blocks_local n_local_enhancers niter_fix_global no_instance instance_feat label_feat feat_num
load_features n_downsample_E nef n_clusters
display_freq print_freq save_latest_freq save_epoch_freq no_html debug continue_train
load_pretrain which_epoch phase niter niter_decay beta1 lr num_D n_layers_D ndf lambda_feat
no_ganFeat_loss no_vgg_loss no_lsgan pool_size
ntest results_dir aspect_ratio how_many cluster_path use_encoded_image export_onnx engine onnx
""".split()

TRAIN_LINES = {  # script -> (NVIDIA's train.py arguments, p2phd options they must resolve to)
    "train_512p": ("--name label2city_512p", {"name": "label2city_512p"}),
    "train_512p_feat": (
        "--name label2city_512p_feat --instance_feat",
        {"name": "label2city_512p_feat", "instance_feat": True},
    ),
    "train_1024p_24G": (
        "--name label2city_1024p --netG local --ngf 32 --num_D 3 --load_pretrain "
        "checkpoints/label2city_512p/ --niter 50 --niter_decay 50 --niter_fix_global 10 "
        "--resize_or_crop none",
        {"netG": "local", "ngf": 32, "num_D": 3, "load_pretrain": "checkpoints/label2city_512p/"}
        | {"niter": 50, "niter_decay": 50, "niter_fix_global": 10, "resize_or_crop": "none"},
    ),
    "train_1024p_12G": (
        "--name label2city_1024p --netG local --ngf 32 --num_D 3 --load_pretrain "
        "checkpoints/label2city_512p/ --niter_fix_global 20 --resize_or_crop crop --fineSize 1024",
        {"niter_fix_global": 20, "resize_or_crop": "crop", "fine_size": 1024, "niter": 100},
    ),
    "train_1024p_feat_24G": (
        "--name label2city_1024p_feat --netG local --ngf 32 --num_D 3 --load_pretrain "
        "checkpoints/label2city_512p_feat/ --niter 50 --niter_decay 50 --niter_fix_global 10 "
        "--resize_or_crop none --instance_feat --load_features",
        # NVIDIA's bare --load_features reads what precompute_feature_maps.py made with the
        # 512p feature run: here bin/precompute's default output for that run
        {"instance_feat": True, "load_features": "manifests/label2city_512p_feat-features.h5"},
    ),
    "train_1024p_feat_12G": (
        "--name label2city_1024p_feat --netG local --ngf 32 --num_D 3 --load_pretrain "
        "checkpoints/label2city_512p_feat/ --niter_fix_global 20 --resize_or_crop crop "
        "--fineSize 896 --instance_feat --load_features",
        {"fine_size": 896, "load_features": "manifests/label2city_512p_feat-features.h5"},
    ),
    "train_512p_fp16": ("--name label2city_512p --fp16", {"amp": "O1"}),  # apex O1 = --amp O1
    "README --tf_log": ("--name label2city_512p --tf_log", {"tensorboard": True}),
}
TEST_LINES = {  # script -> (NVIDIA's test.py arguments, the run they must name)
    "test_512p": ("--name label2city_512p", "label2city_512p"),
    "test_512p_feat": ("--name label2city_512p_feat --instance_feat", "label2city_512p_feat"),
    "test_1024p": ("--name label2city_1024p --netG local --ngf 32 --resize_or_crop none", None),
    # the script's own line says `---netG` (a typo NVIDIA's argparse refuses too)
    "test_1024p_feat": (
        "--name label2city_1024p_feat --netG local --ngf 32 --resize_or_crop none --instance_feat",
        "label2city_1024p_feat",
    ),
}


def _parse(cls: type, argv: list[str], verb: str):
    return parse_options(cls, argv, verb, "")


def _train(line: str) -> TrainOptions:
    return _parse(TrainOptions, ["data.h5", *line.split()], "train")


@pytest.fixture
def trained(tmp_path: Path, monkeypatch) -> dict[str, dict]:
    """options.json of every training line's run, in outputs/ of the working directory (as
    bin/train writes it before its first step), so test.py's lines have runs to name."""
    monkeypatch.chdir(tmp_path)
    done = {}
    for script, (line, _) in TRAIN_LINES.items():
        o = _train(line)
        if script.endswith(("12G", "fp16", "tf_log")) or o.name in done:
            continue  # one run per name: the 24G lines
        runs.write_options(Path("outputs") / o.name, options_dict(o), {"path": "", "sha256": ""})
        done[o.name] = options_dict(o)
    return done


def test_every_nvidia_option_has_a_rule_and_a_readme_row() -> None:
    assert sorted(RULES) == sorted(NVIDIA_OPTIONS)
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("### NVIDIA's option names") :].split("\n\n")[2]
    listed = {
        n for row in table.splitlines() for n in re.findall(r"`--(\w+)`", row.split(" | ")[0])
    }
    assert listed == set(NVIDIA_OPTIONS), sorted(set(NVIDIA_OPTIONS) ^ listed)


@pytest.mark.parametrize("script", list(TRAIN_LINES))
def test_nvidia_training_lines(script: str) -> None:
    line, want = TRAIN_LINES[script]
    got = options_dict(_train(line))
    assert {k: got[k] for k in want} == want
    # everything NVIDIA's line leaves at its default is NVIDIA's default here too
    defaults = {"netG": "global", "ngf": 64, "num_D": 2, "n_layers_D": 3, "ndf": 64, "lr": 2e-4}
    defaults |= {"load_size": 1024, "fine_size": 512, "label_nc": 35, "batch_size": 1}
    defaults |= {"niter": 100, "niter_decay": 100, "lambda_feat": 10.0, "display_freq": 100}
    assert {k: got[k] for k in defaults if k not in want and k not in line} == {
        k: v for k, v in defaults.items() if k not in want and k not in line
    }


@pytest.mark.parametrize("script", list(TEST_LINES))
def test_nvidia_test_lines_name_the_run_and_match_it(script: str, trained: dict) -> None:
    line, name = TEST_LINES[script]
    name = name or line.split()[1]
    argv = ["data.h5", *line.split()]
    if "feat" in script:  # NVIDIA's default cluster file, in p2phd's name
        argv += ["--cluster_path", f"manifests/{name}-clusters.h5"]
    o = _parse(RenderOptions, argv, "render")
    assert o.run == f"outputs/{name}" and o.manifest == "data.h5"
    assert o.clusters == (f"manifests/{name}-clusters.h5" if "feat" in script else "")


def test_feature_scripts_are_precompute(trained: dict) -> None:
    for line in (  # encode_features.py and precompute_feature_maps.py (512p_feat, 1024p_feat)
        "--name label2city_512p_feat",
        "--name label2city_1024p_feat --netG local --ngf 32 --resize_or_crop none",
    ):
        o = _parse(PrecomputeOptions, ["data.h5", *line.split()], "precompute")
        assert o.run == f"outputs/{line.split()[1]}"
    o = _parse(PrecomputeOptions, "data.h5 --name r --checkpoints_dir ck".split(), "precompute")
    assert o.run == "ck/r"


def test_architecture_options_must_match_the_run(trained: dict, capsys) -> None:
    """test.py needs the architecture repeated; p2phd reads it from the run, so a different value
    is a mistake (a classic one with NVIDIA's code): exit 2 naming the run and the option."""
    cmd = ["data.h5", "--name", "label2city_512p", "--netG", "local", "--ngf", "32"]
    assert run_verb(render.main, cmd) == 2
    err = capsys.readouterr().err
    assert err == (
        "p2phd: error: --netG local (NVIDIA's option): run outputs/label2city_512p was trained "
        "with --netG 'global'; bin/render takes the architecture from the run's options.json\n"
    )
    for wrong in (["--loadSize", "2048"], ["--instance_feat"], ["--label_nc", "19"]):
        with pytest.raises(UsageError, match="was trained with"):
            _parse(RenderOptions, ["data.h5", "--name", "label2city_512p", *wrong], "render")


def test_test_options(trained: dict, capsys) -> None:
    base = ["data.h5", "--name", "label2city_512p"]
    o = _parse(RenderOptions, [*base, "--how_many", "5", "--which_epoch", "latest"], "render")
    assert o.max_samples == 5
    o = _parse(RenderOptions, [*base, "--ntest", "3", "--aspect_ratio", "1.0"], "render")
    assert o.max_samples == 3
    o = _parse(RenderOptions, [*base, "--batchSize", "4", "--fp16", "--data_type", "32"], "render")
    assert (o.batch_size, o.amp) == (4, True)
    err = capsys.readouterr().err
    assert "render: note: --which_epoch (NVIDIA's option): bin/render uses the run's newest" in err
    assert "--aspect_ratio" in err and "--data_type" in err


REFUSED = {  # NVIDIA argv (train or render) -> what the one-line message must point to
    "train --batchSize 8 --gpu_ids 0,1,2,3,4,5,6,7": "msrun",  # train_512p_multigpu.sh
    "train --fp16 --local_rank=0": "msrun",  # what torch.distributed.launch adds
    "train --debug": "--max_steps",
    "train --data_type 16": "--amp",
    "train --max_dataset_size 10": "bin/prepare --max_samples",
    "train --which_epoch 20": "newest",
    "train --phase val": "bin/prepare --phase",
    "train --dataroot ./datasets/cityscapes/": "bin/prepare --dataroot",
    "train --model ui": "pix2pixHD only",
    "render --results_dir ./results/": "--out DIR",
    "render --aspect_ratio 2": "--original_size",
    "render --export_onnx g.onnx": "bin/export",
    "render --engine g.trt": "bin/export --format ONNX",  # render's own --engine: a runtime
    "render --engine=g.trt --onnx g.onnx": "--providers TensorRT",
    "render --checkpoints_dir ck": "--run RUN",
}


@pytest.mark.parametrize("cmd", list(REFUSED))
def test_options_without_a_p2phd_meaning_exit_2(cmd: str, capsys) -> None:
    verb, *args = cmd.split()
    main = {"train": train.main, "render": render.main}[verb]
    argv = ["data.h5", "--name", "x", *args] if verb == "train" else ["data.h5", *args]
    assert run_verb(main, argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "(NVIDIA's option)" in err, err
    assert REFUSED[cmd] in err


def test_own_option_of_nvidias_name_keeps_its_values() -> None:
    """render's --engine names a runtime (NVIDIA's a TensorRT file: refused above)."""
    o = _parse(RenderOptions, "data.h5 --onnx g.onnx --engine openvino".split(), "render")
    assert o.engine == "openvino"
    assert _parse(RenderOptions, "data.h5 --run r --engine=openvino".split(), "render").run
    with pytest.raises(UsageError, match="a --mindir file runs in MindSpore"):
        _parse(RenderOptions, "data.h5 --mindir m --engine=openvino".split(), "render")


def test_notes_flags_and_the_seed_spelling(capsys) -> None:
    o = _train("--name r --continue_train --tf_log True --no_html --use_dropout --nThreads 4")
    assert o.tensorboard and o.no_html
    err = capsys.readouterr().err
    assert "train: note: --continue_train (NVIDIA's option): p2phd resumes by itself" in err
    assert "--use_dropout" in err and "--nThreads" in err
    assert not _train("--name r --tf_log False").tensorboard
    assert _train("--name r --loadSize=512").load_size == 512
    p = _parse(
        PrepareOptions,
        "--dataroot d --loadSize 512 --nThreads 2 --max_dataset_size 7".split(),
        "prepare",
    )
    assert (p.load_size, p.jobs, p.max_samples) == (512, 2, 7)
    with pytest.raises(UsageError, match="needs --load_pretrain"):
        _train("--name r --instance_feat --load_features")
    with pytest.raises(UsageError, match="unrecognized arguments: --niter 5"):
        _parse(RenderOptions, "data.h5 --run r --niter 5".split(), "render")  # not test.py's


def test_aliases_stay_out_of_help() -> None:
    for cls, verb in ((TrainOptions, "train"), (RenderOptions, "render")):
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
            _parse(cls, ["--help"], verb)
        shown = set(re.findall(r"--(\w+)", buf.getvalue()))
        hidden = {n for n, r in RULES.items() if r.target != n}  # aliases, refusals, notes
        assert shown and not shown & hidden, shown & hidden

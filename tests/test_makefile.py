"""The Makefile: `make help` lists every target once, and `make -n` shows each mode's plan without
running it (the options of docs/training.md's table of the four modes, the dependencies between
modes, msrun, VGG)."""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TARGETS = [
    "help",
    "setup",
    "test",
    "lint",
    "prepare",
    "train-512p",
    "train-1024p",
    "train-512p-feat",
    "train-1024p-feat",
    "precompute",
    "cluster",
    "render-test",
    "render-val",
    "render-train",
    "bench",
    "demo",
    "clean",
]


def make(*args: str, data: Path | None = None) -> str:
    extra = [f"DATA={data}"] if data is not None else []
    r = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args, *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """An (empty) dataset folder of a unique name, so no manifest or run of that name exists."""
    d = tmp_path / "mkdata"
    d.mkdir()
    return d


def test_help_lists_every_target_once() -> None:
    out = make("help")
    assert out == make()  # help is the default goal
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    for t in TARGETS:
        assert names.count(t) == 1, t
    # every phony target of the Makefile has a help line
    text = (ROOT / "Makefile").read_text()
    phony = set(
        " ".join(re.findall(r"^\.PHONY:((?:.*\\\n)*.*)$", text, re.M)).replace("\\", " ").split()
    )
    assert phony - set(names) == set()
    for line in out.splitlines():
        if line.strip():
            assert len(line.split(None, 1)) == 2, f"no description: {line!r}"


def test_render_test_plan_prepares_trains_renders(data: Path) -> None:
    before = sorted(p.name for p in (ROOT / "manifests").iterdir())
    plan = make("-n", "render-test", "RUN=zz_mk", data=data).splitlines()
    assert sorted(p.name for p in (ROOT / "manifests").iterdir()) == before  # -n wrote nothing
    assert not (ROOT / "outputs" / "zz_mk_1024p").exists()
    verbs = [re.sub(r"^.*?bin/(\w+).*$", r"\1", ln) for ln in plan if "bin/" in ln]
    # the default MODE (1024p) needs the 512p run first, then the 1024p run, then the render
    assert verbs.index("prepare") < verbs.index("train") < verbs.index("render")
    trains = [ln for ln in plan if "bin/train" in ln]
    assert len(trains) == 2
    assert "--name zz_mk_512p" in trains[0] and "--netG global --ngf 64 --num_D 2" in trains[0]
    assert (
        "--resize_or_crop scale_width --load_size 1024 --niter 100 --niter_decay 100" in trains[0]
    )
    assert "--name zz_mk_1024p" in trains[1] and "--netG local --ngf 32 --num_D 3" in trains[1]
    assert "--resize_or_crop none --load_size 2048 --niter 50 --niter_decay 50" in trains[1]
    assert "--niter_fix_global 10" in trains[1]
    full = "\n".join(plan)
    assert "--load_pretrain outputs/zz_mk_512p" in full
    assert f"--dataroot {data} --phase test --load_size 2048" in full
    # bin/render's fastest exact engine by default (ENGINE=auto; docs/render-engines.md)
    assert (
        "bin/render --run outputs/zz_mk_1024p --engine auto manifests/mkdata-test-2048.h5" in full
    )
    again = make("-n", "render-test", "RUN=zz_mk", "ENGINE=mindspore", data=data)
    assert "bin/render --run outputs/zz_mk_1024p --engine mindspore manifests/" in again


def test_feature_mode_plan(data: Path) -> None:
    full = make("-n", "render-test", "MODE=1024p-feat", "RUN=zz_mk", data=data)
    for order in (
        ["--name zz_mk_512p_feat", "bin/precompute", "--name zz_mk_1024p_feat", "bin/render"],
        ["bin/precompute", "bin/cluster", "bin/render"],
    ):
        pos = [full.index(s) for s in order]
        assert pos == sorted(pos), full
    assert (
        "--load_pretrain outputs/zz_mk_512p_feat --instance_feat --load_features "
        "manifests/zz_mk_512p_feat-features.h5" in full
    )
    assert "--load_size 2048" in full[full.index("bin/precompute") : full.index("bin/cluster")]
    assert "--clusters manifests/zz_mk_512p_feat-clusters.h5" in full
    assert "--name zz_mk_512p " not in full  # labels-only runs are not needed


def test_knobs_msrun_vgg_device_extra(data: Path, tmp_path: Path) -> None:
    vgg = tmp_path / "vgg19.ckpt"
    plan = make(
        "-n",
        "train-512p",
        "RUN=zz_mk",
        "NPROC=4",
        f"VGG={vgg}",
        "DEVICE=Ascend",
        "SIZE=256",
        "NGF=16",
        "EXTRA=--batch_size 2",
        data=data,
    )
    line = next(ln for ln in plan.splitlines() if "bin/train" in ln)
    assert "msrun --worker_num=4 --local_worker_num=4" in line and "--join=True" in line
    assert f"--vgg_pre_trained {vgg}" in line and "--no_vgg_loss" not in line
    assert "--device_target Ascend" in line and "--ngf 16" in line and "--load_size 256" in line
    assert line.rstrip().endswith("--batch_size 2")
    plain = make("-n", "train-512p", "RUN=zz_mk", "VGG=", data=data)
    line = next(ln for ln in plain.splitlines() if "bin/train" in ln)
    assert line.startswith("bin/train") and ("--no_vgg_loss" in line or "--vgg_pre_trained" in line)


def test_demo_plan_uses_demo_names_and_small_sizes() -> None:
    plan = make("-n", "demo")
    assert "demo-renders" in plan and "SIZE=128" in plan
    sub = make("-n", "demo-renders", "DEMO=1")  # DEMO=1: the settings the demo's sub-make gets
    assert "--ngf 16 " in sub and "--niter 30 " in sub and "--n_blocks_global 3 " in sub
    for path in re.findall(r"(?:manifests|outputs)/[\w.-]+", sub):
        assert path.split("/")[1].startswith("demo"), path


def test_demo_on_given_data_names_everything_after_it(data: Path) -> None:
    plan = make("-n", "demo", data=data)
    assert "p2phd.demo_data" not in plan  # no toy data generated when DATA is given
    assert f"bin/prepare --dataroot {data} --phase train --load_size 128" in plan
    assert "--name demo-mkdata-512p " in plan and "--name demo-mkdata-1024p-feat " in plan
    assert plan.rstrip().endswith('outputs/demo-mkdata-1024p-feat/render-test/index.html"')


@pytest.mark.parametrize(
    "target",
    [
        "prepare", "train-512p", "train-1024p-feat", "precompute", "cluster", "render-test",
        "edit", "export", "export-onnx", "evaluate-test", "evaluate-val", "render-nvidia",
    ],
)  # fmt: skip
def test_data_targets_without_data_stop_at_once(target: str) -> None:
    """A fresh clone's `make train-512p` would train ngf 64 for 200 epochs on the toy data."""
    r = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(ROOT), target],  # the stop is at parse
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k not in ("DATA", "MAKEFLAGS", "MAKELEVEL")},
    )
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert f"{target} needs a dataset: make {target} DATA=/path/to/cityscapes" in line
    assert "make demo" in line


def _demo_next_commands(*data: str) -> list[list[str]]:
    """The make commands `make demo` prints last (as `make -n` shows its echo lines)."""
    plan = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(ROOT), "demo", *data],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    lines = re.findall(r'echo "  (make [^"#]+?)\s*(?:#[^"]*)?" >&2', plan)
    return [ln.split() for ln in lines]


def test_demo_prints_make_commands_that_reach_its_runs() -> None:
    """After `make demo`, its last lines name the next steps (DEMO=1): each is planned on the
    demo's manifests and runs, never the full-size defaults, and trains nothing new."""
    commands = _demo_next_commands()
    assert [c[1] for c in commands] == ["edit", "evaluate-test", "export-onnx"], commands
    for cmd in commands:
        assert "DEMO=1" in cmd
        plan = make("-n", *cmd[1:])
        paths = re.findall(r"(?:manifests|outputs)/[\w.-]+", plan)
        assert paths and all(p.split("/")[1].startswith("demo") for p in paths), (cmd, paths)
    edit = make("-n", "edit", "DEMO=1", "MODE=512p-feat")
    assert "bin/edit outputs/demo-512p-feat " in edit
    assert "--data manifests/demo-test-128.h5" in edit  # the demo's SIZE, not 1024
    assert "--clusters manifests/demo-512p-feat-clusters.h5" in edit


def test_demo_on_given_data_prints_its_data_too(data: Path) -> None:
    for cmd in _demo_next_commands(f"DATA={data}"):
        assert "DEMO=1" in cmd and f"DATA={data}" in cmd
    plan = make("-n", "export", "DEMO=1", data=data)
    assert "bin/export --run outputs/demo-mkdata-1024p " in plan


def test_evaluate_with_the_onnx_engine_scores_the_onnx_render(data: Path) -> None:
    plan = make("-n", "evaluate-test", "ENGINE=onnx", data=data)
    assert "--out outputs/label2city_1024p/render-test-onnx " in plan
    assert "bin/evaluate outputs/label2city_1024p/render-test-onnx " in plan
    plain = make("-n", "evaluate-test", data=data)
    assert "bin/evaluate outputs/label2city_1024p/render-test " in plain

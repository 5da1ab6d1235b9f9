"""bin/train --tensorboard and the loss curves of the training page, read back as users see them:
TensorBoard's own event loader (the pinned `tensorboard` package) against stats.jsonl, before and
after a resume that redoes logged steps; web/losses.png redrawn and on the page."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator as ea

from p2phd.core.cli import run_verb
from p2phd.training import train
from p2phd.training.progress import LOSSES, Progress

pytestmark = pytest.mark.slow  # trains and resumes a run: not in make test-fast

TINY = [
    "--ngf", "4", "--ndf", "4", "--n_downsample_global", "2", "--n_blocks_global", "1",
    "--num_D", "1", "--n_layers_D", "2", "--load_size", "128", "--no_vgg_loss", "--pynative",
    "--niter", "2", "--niter_decay", "0", "--print_freq", "1", "--display_freq", "2",
    "--save_latest_freq", "100", "--tensorboard",
]  # fmt: skip
KINDS = ("input_label", "synthesized_image", "real_image")


def _stats(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "stats.jsonl").read_text().splitlines()]


def _board(run: Path) -> ea.EventAccumulator:
    acc = ea.EventAccumulator(
        str(run / "tensorboard"), size_guidance={ea.SCALARS: 0, ea.IMAGES: 0}
    )  # 0: keep every event (the default samples 4 images per tag)
    return acc.Reload()


def _check_against_stats(run: Path, display_steps: list[int]) -> None:
    """Every logged step once, with stats.jsonl's values (stored as float32); the pictures of
    every display once, at the run's size."""
    lines = _stats(run)
    acc = _board(run)
    tags = {f"loss/{k}": k for k in LOSSES} | {"lr": "lr", "images_per_sec": "images_per_sec"}
    assert set(acc.Tags()["scalars"]) == set(tags)
    for tag, key in tags.items():
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [ln["step"] for ln in lines], tag
        assert [e.value for e in events] == [float(np.float32(ln[key])) for ln in lines], tag
    assert all(ln["images_per_sec"] > 0 for ln in lines)
    for kind in KINDS:
        events = acc.Images(f"images/{kind}")
        assert [e.step for e in events] == display_steps, kind
        assert all((e.width, e.height) == (128, 64) for e in events)


def test_tensorboard_and_loss_curves_survive_a_resume(tiny_manifest: Path, tmp_path: Path) -> None:
    argv = [str(tiny_manifest), "--name", "tb", "--checkpoints_dir", str(tmp_path), *TINY]
    assert run_verb(train.main, [*argv, "--max_steps", "4"]) == 0
    run = tmp_path / "tb"
    assert [ln["step"] for ln in _stats(run)] == [1, 2, 3, 4]
    _check_against_stats(run, [2, 4])
    page = (run / "web" / "index.html").read_text()
    curves = run / "web" / "losses.png"
    assert page.index('<img src="losses.png?step=4"') < page.index("epoch002_input_label.jpg")
    first_drawing = curves.read_bytes()
    assert first_drawing.startswith(b"\x89PNG")

    # As if killed after logging and showing step 4 but before saving it: the newest state is
    # step 3's (the end of epoch 1), and stats.jsonl and the event file hold step 4.
    shutil.rmtree(run / "state" / "step-00000004")
    (run / "state" / "latest").write_text("step-00000003")
    assert run_verb(train.main, [*argv, "--max_steps", "6"]) == 0
    assert [ln["step"] for ln in _stats(run)] == [1, 2, 3, 4, 5, 6]
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2
    _check_against_stats(run, [2, 4, 6])  # step 4 (scalars and pictures) once: the redone one
    assert '<img src="losses.png?step=6"' in (run / "web" / "index.html").read_text()
    assert curves.read_bytes() != first_drawing  # redrawn with steps 5 and 6


@pytest.mark.parametrize("is_main, no_html", [(False, False), (True, True)])
def test_only_rank_0_writes_and_no_html(tmp_path: Path, is_main: bool, no_html: bool) -> None:
    """Other msrun ranks open no event file; --no_html writes no page (TensorBoard still)."""
    o = train.TrainOptions(manifest="m.h5", name="r", tensorboard=True, no_html=no_html)
    p = Progress(o, tmp_path, is_main, steps_per_epoch=1)
    p.start(0)
    batch = {"label": np.zeros((1, 8, 8), np.int32), "photo": np.zeros((1, 3, 8, 8), np.float32)}
    p.display(1, 1, batch, np.zeros((1, 3, 8, 8), np.float32))
    p.close()
    assert (tmp_path / "tensorboard").exists() == is_main
    assert not (tmp_path / "web").exists()


def test_make_tb_1_trains_with_tensorboard() -> None:
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    plan = [
        subprocess.run(
            ["make", "-n", "train-512p", "DATA=/data/cityscapes", *tb],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout  # fmt: skip
        for tb in ([], ["TB=1"])
    ]
    assert "--tensorboard" not in plan[0] and "bin/train" in plan[0]
    assert plan[1].count("--tensorboard") == 1

# ruff: noqa: I001  (p2phd must be imported before MindSpore: it sets the oneDNN/GLOG env)
"""Helpers shared by the tests of bin/train (tests/test_train*.py): tiny options, manifests of the
real Cityscapes sample, a random VGG19 checkpoint in the model zoo layout, subprocess runs, and
the system test's chain of verbs (built once per session, shared with test_train_1024p.py)."""

import os
import socket
import subprocess
from pathlib import Path

import numpy as np
from conftest import build_once

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / "bin"
TRAIN = BIN / "train"

# A tiny generator/discriminator: 128x64 images, stride 4, a few thousand parameters. One D scale:
# a bin/train process spends most of its CPU compiling the step's graphs, and a second scale adds
# a third to that (12 -> 8 CPU s per run) without a state or a loss of another kind; the learning
# test still sees L1 to the photos fall from 0.58 to 0.22 on the real sample in 40 steps (0.20 with
# two scales; assert_learned says what it asks).
# Two D layers (NVIDIA's 3 repeat a strided conv + norm): ~0.6 CPU s less compile per process.
TINY = [
    "--num_D",
    "1",
    "--n_layers_D",
    "2",
    "--ngf",
    "8",
    "--ndf",
    "8",
    "--n_downsample_global",
    "2",
    "--n_blocks_global",
    "1",
    "--n_blocks_local",
    "1",
    "--nef",
    "4",
    "--n_downsample_E",
    "2",
    "--load_size",
    "128",
]


def sample_manifest(out_dir: Path, load_size: int = 128) -> Path:
    """The sample's 8 training frames prepared at `load_size` wide (128 -> 128x64): a copy in
    out_dir of the manifest conftest.sample_manifest prepares once per session."""
    import conftest

    return conftest.sample_manifest("train", load_size, copy_to=out_dir)


def label_blind_l1(ds, o) -> float:
    """Mean |c - photo| over the dataset's photos (as l1_to_photos sees them) for the best image
    that ignores the label map: each channel's median over every pixel (L1's optimal constant)."""
    from p2phd.data import pipeline

    pre = pipeline.Preprocessor(o, train=False)
    photos = np.stack([pre(ds.sample(i), i).photo for i in range(len(ds))])
    return float(np.abs(photos - np.median(photos, axis=(0, 2, 3), keepdims=True)).mean())


def assert_learned(trained: float, untrained: float, blind: float) -> None:
    """The learning check of the tiny 40-step runs (test_train, test_amp): the trained G's L1 to
    the photos must close at least half the gap between the untrained G's and ``blind``'s (the
    best the G could reach while ignoring its input). Measured at 128x64 after 40 steps (TINY,
    no VGG; untrained / label-blind / trained): the real sample 0.58 / 0.18 / 0.21 (bound 0.38),
    the generated stand-in 0.41 / 0.30 / 0.27 (bound 0.35): a fixed fraction of the untrained L1
    cannot serve both (0.6 x 0.41 = 0.24 lies below the stand-in's run, whose flat-coloured
    photos are closer to grey to start with). A G that does not learn (--lr 1e-12, the least
    bin/train takes: measured 0.58 and 0.41, the untrained values) fails."""
    bound = blind + 0.5 * (untrained - blind)
    assert trained < bound, dict(trained=trained, untrained=untrained, blind=blind, bound=bound)


def train(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    """bin/train in a fresh process (its own MindSpore context), output captured."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    return subprocess.run(
        [str(TRAIN), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        **kw,
    )


def here(verb: str, args: list, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """bin/<verb>'s main in this process (from ``cwd`` if given), its stdout and stderr
    captured: what a subprocess run returns, without a fresh interpreter's MindSpore import
    (~2 CPU s). For runs whose process does not matter: no kill, msrun, rlimit, or command-line
    contract under test."""
    import contextlib
    import io
    from importlib import import_module

    from p2phd.core.cli import run_verb

    out, err = io.StringIO(), io.StringIO()
    back = Path.cwd()
    os.chdir(cwd or back)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = run_verb(import_module(f"p2phd.{verb}").main, [str(a) for a in args])
    finally:
        os.chdir(back)
    return subprocess.CompletedProcess([verb, *args], rc, out.getvalue(), err.getvalue())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# model zoo VGG19 `layers.<i>` convolutions up to conv5_1: (out, in) channels
VGG_CONVS = {
    0: (64, 3),
    2: (64, 64),
    5: (128, 64),
    7: (128, 128),
    10: (256, 128),
    12: (256, 256),
    14: (256, 256),
    16: (256, 256),
    19: (512, 256),
    21: (512, 512),
    23: (512, 512),
    25: (512, 512),
    28: (512, 512),
}


def write_vgg(path: Path, seed: int = 0) -> Path:
    """A random VGG19 checkpoint named like the model zoo's vgg19.ckpt (no conv biases)."""
    import p2phd  # noqa: F401  (env fixes before MindSpore)
    import mindspore as ms
    from mindspore import Tensor

    rng = np.random.default_rng(seed)
    entries = [
        {
            "name": f"layers.{i}.weight",
            "data": Tensor(
                (rng.standard_normal((co, ci, 3, 3)) * np.sqrt(2 / (9 * ci))).astype(np.float32)
            ),
        }
        for i, (co, ci) in VGG_CONVS.items()
    ]
    ms.save_checkpoint(entries, str(path))
    return path


def stats(run: Path) -> list[dict]:
    import json

    return [json.loads(ln) for ln in (run / "stats.jsonl").read_text().splitlines() if ln.strip()]


def check_board(run: Path, display_steps: list[int], size: tuple[int, int] = (128, 64)) -> None:
    """The run's TensorBoard events, read by TensorBoard's own loader (the pinned `tensorboard`
    package), against stats.jsonl: every logged step once with its values (stored as float32),
    and the label | synthesized | real pictures of every display once, at the run's (W, H)."""
    from tensorboard.backend.event_processing import event_accumulator as ea

    from p2phd.training.progress import LOSSES

    lines = stats(run)
    acc = ea.EventAccumulator(
        str(run / "tensorboard"), size_guidance={ea.SCALARS: 0, ea.IMAGES: 0}
    ).Reload()  # 0: keep every event (the default samples 4 images per tag)
    tags = {f"loss/{k}": k for k in LOSSES} | {"lr": "lr", "images_per_sec": "images_per_sec"}
    assert set(acc.Tags()["scalars"]) == set(tags)
    for tag, key in tags.items():
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [ln["step"] for ln in lines], tag
        assert [e.value for e in events] == [float(np.float32(ln[key])) for ln in lines], tag
    assert all(ln["images_per_sec"] > 0 for ln in lines)
    for kind in ("input_label", "synthesized_image", "real_image"):
        events = acc.Images(f"images/{kind}")
        assert [e.step for e in events] == display_steps, kind
        assert all((e.width, e.height) == size for e in events)


def trainable(cells: dict) -> dict[str, dict[str, np.ndarray]]:
    """Copies of each net's trainable parameters (Trainer.cells()), to compare after steps."""
    return {
        key: {p.name: p.asnumpy().copy() for p in net.trainable_params()}
        for key, net in cells.items()
    }


def assert_every_parameter_trains(before: dict, cells: dict) -> None:
    """After Adam steps from ``before`` (trainable()): every trainable parameter of each net is
    finite, and all but at most one moved. Adam's first step moves a weight by ~lr * sign(grad)
    for any non-zero gradient (a zero one leaves it), so this is the check that every gradient of
    the compiled step is finite and non-zero (one may vanish, as a bias before a norm can)."""
    for key, net in cells.items():
        params = net.trainable_params()
        assert params and len(params) == len(before[key]), key
        moved = 0
        for p in params:
            now = p.asnumpy()
            assert np.isfinite(now).all(), p.name
            moved += not np.array_equal(now, before[key][p.name])
        assert moved >= len(params) - 1, (key, moved, len(params))


def state_arrays(path: Path) -> dict[str, np.ndarray]:
    import p2phd  # noqa: F401
    import mindspore as ms

    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items() if "." in k}


# ---- the system chain (tests/test_system.py) ----------------------------------------------
SYSTEM_ARCH = [
    "--n_downsample_global",
    "2",
    "--n_blocks_global",
    "1",
    "--n_blocks_local",
    "1",
    "--ndf",
    "8",
    "--nef",
    "4",
    "--n_layers_D",
    "2",
    "--no_vgg_loss",
    "--print_freq",
    "4",
]
# 6 test frames: the feature chain's style test wants at least 5 with cars (every demo scene has
# 2-5); rendering them at 128x64 costs nothing next to a compile.
N_TRAIN, N_TEST = 4, 6


def verb(
    name: str,
    *args: str | Path,
    stdin: str | None = None,
    cwd: Path,
    log: Path | None = None,
    fresh: bool = True,
) -> Path:
    """Run bin/<name> (``fresh=False``: its main in this process, see ``here``); it must exit 0
    and print exactly one line: the path it wrote (its stderr is kept in ``log`` when given)."""
    if fresh:
        r = subprocess.run(
            [str(BIN / name), *map(str, args)],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=600,
        )
    else:
        assert stdin is None, "here() reads no stdin"
        r = here(name, list(args), cwd)
    assert r.returncode == 0, f"bin/{name} failed ({r.returncode}):\n{r.stderr[-3000:]}"
    if log is not None:
        log.write_text(r.stderr)
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, f"bin/{name} stdout is not one path: {r.stdout!r}"
    path = Path(lines[0])
    return path if path.is_absolute() else cwd / path


def system_chain() -> dict[str, Path]:
    """The system test's chain (tests/test_system.py's docstring), built once per session:
    {"work", "data", "runs", "train64", "train128", "test128", "512p", "1024p", "512p-feat",
    "features", "clusters", "1024p-feat", "render", "render-again", "render-car0",
    "render-car1", "render-1024p"} -> Path; bin/train's stderr of the 1024p run is in
    <work>/1024p.stderr. The 1024p run trains 4 epochs (2 + 2 decaying, the global trunk fixed in
    the first) and keeps every epoch's state, for test_train_1024p; the feature runs and their
    renders (the same command twice, and each car style) serve test_feature_chain.py."""
    import json

    folder = build_once("system-chain", _build_chain)
    return {k: Path(v) for k, v in json.loads((folder / "chain.json").read_text()).items()}


def _build_chain(w: Path) -> None:
    import json

    from p2phd.data import demo as demo_data

    data = demo_data.generate(
        w / "cityscapes", n_train=N_TRAIN, n_test=N_TEST, width=128, height=64, seed=1
    )
    runs, man = w / "outputs", w / "manifests"
    p: dict[str, Path] = {"work": w, "data": data, "runs": runs}

    def prepare(phase: str, size: int) -> Path:
        out = man / f"demo-{phase}-{size}.h5"
        return verb(
            "prepare",
            "--dataroot",
            data,
            "--phase",
            phase,
            "--load_size",
            size,
            "--jobs",
            2,
            "--out",
            out,
            cwd=w,
        )

    p["train64"], p["train128"] = prepare("train", 64), prepare("train", 128)
    common = ["--checkpoints_dir", runs, *SYSTEM_ARCH]
    g512 = [
        "--netG",
        "global",
        "--ngf",
        "8",
        "--num_D",
        "2",
        "--load_size",
        "64",
        "--niter",
        "1",
        "--niter_decay",
        "0",
    ]
    g1024 = [
        "--netG",
        "local",
        "--ngf",
        "4",
        "--num_D",
        "3",
        "--resize_or_crop",
        "none",
        "--load_size",
        "128",
        "--niter",
        "1",
        "--niter_decay",
        "1",
        "--niter_fix_global",
        "1",
    ]
    # the 512p run reads its manifest path from stdin, as in `bin/prepare ... | bin/train -`
    p["512p"] = verb(
        "train", "-", "--name", "s512", *common, *g512, stdin=f"{p['train64']}\n", cwd=w
    )
    # 2 + 2 epochs (the lr decays in the 4th), every epoch's state kept: test_train_1024p.py
    recipe = ["--niter", "2", "--niter_decay", "2", "--keep", "10"]
    p["1024p"] = verb(
        "train",
        p["train128"],
        "--name",
        "s1024",
        *common,
        *g1024,
        *recipe,
        "--load_pretrain",
        p["512p"],
        cwd=w,
        log=w / "1024p.stderr",
        fresh=False,
    )
    p["512p-feat"] = verb(
        "train",
        p["train64"],
        "--name",
        "s512f",
        *common,
        *g512,
        "--instance_feat",
        cwd=w,
        fresh=False,
    )
    p["features"] = verb(
        "precompute",
        "--run",
        p["512p-feat"],
        p["train64"],
        "--load_size",
        128,
        "--out",
        man / "s512f-features.h5",
        cwd=w,
        fresh=False,
    )
    p["clusters"] = verb(
        "cluster",
        "-",
        "--n_clusters",
        2,
        "--out",
        man / "s512f-clusters.h5",
        stdin=f"{p['features']}\n",
        cwd=w,
    )
    # Two D scales and no fixed-trunk epoch: the 1024p run above covers those; each would add a
    # graph compile (~5 CPU s for the second G optimiser phase) and assert nothing new here.
    p["1024p-feat"] = verb(
        "train",
        p["train128"],
        "--name",
        "s1024f",
        *common,
        *g1024,
        "--num_D",
        "2",
        "--niter_fix_global",
        "0",
        "--load_pretrain",
        p["512p-feat"],
        "--instance_feat",
        "--load_features",
        p["features"],
        cwd=w,
        fresh=False,
    )
    # render the test split straight from prepare's stdout
    r = subprocess.run(
        f"{BIN}/prepare --dataroot {data} --phase test --load_size 128 --out "
        f"{man}/demo-test-128.h5 | {BIN}/render --run {p['1024p-feat']} - --clusters "
        f"{p['clusters']} --out {w}/render-feat",
        shell=True,
        capture_output=True,
        text=True,
        cwd=w,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    p["test128"], p["render"] = man / "demo-test-128.h5", Path(r.stdout.strip())
    # test_feature_chain's renders, in this process (the command line is the one above): the
    # same render again, and each car style
    styled = ["--run", p["1024p-feat"], p["test128"], "--clusters", p["clusters"]]
    for key, extra in (
        ("render-again", []),
        ("render-car0", ["--style", "car=0"]),
        ("render-car1", ["--style", "car=1"]),
    ):
        p[key] = verb("render", *styled, "--out", w / key, *extra, cwd=w, fresh=False)
    p["render-1024p"] = verb("render", "--run", p["1024p"], p["test128"], cwd=w, fresh=False)
    (w / "chain.json").write_text(json.dumps({k: str(v) for k, v in p.items()}))


def feature_run(folder: Path, train_manifest: Path) -> Path:
    """A hand-made instance-feature run (random G and E, ngf 4, nef 4, G of depth 2 with one
    block, 128 wide), as render reads it; no training."""
    import dataclasses

    from p2phd.core import checkpoint, runs, runtime
    from p2phd.nets import build_encoder, build_generator

    runtime.setup("CPU", seed=3)
    arch = runs.ArchOptions(
        ngf=4, nef=4, load_size=128, instance_feat=True, n_downsample_global=2, n_blocks_global=1
    )
    folder.mkdir()
    runs.write_options(
        folder, dataclasses.asdict(arch), {"path": str(train_manifest), "sha256": ""}
    )
    checkpoint.save(
        folder / "G.ckpt",
        {"netG": build_generator(arch), "netE": build_encoder(arch, 1)},
        {"epoch": 1, "step": 1},
    )
    return folder


def write_clusters(path: Path, centres: dict[int, np.ndarray]) -> Path:
    """A cluster manifest by hand: ``centres`` class -> (k, 3) centres as given (feat_num 3,
    label_nc 35); classes not named have none."""
    import json

    from p2phd.core import manifest

    with manifest.create(path, "clusters", "cluster", {}) as f:
        f.attrs.update(
            {
                "feat_num": 3,
                "label_nc": 35,
                "n_clusters": 3,
                "min_area": 0.0,
                "seed": 0,
                "n_init": 1,
                "features": json.dumps({"path": "", "sha256": ""}),
            }
        )
        for c, centers in centres.items():
            g = f.create_group(f"classes/{c}")
            g["centers"] = centers
            g["counts"] = np.ones(len(centers), np.int64)
    return path


def hand_clusters(path: Path) -> Path:
    """A cluster manifest by hand: road (7) 2 centres, car (26) 3 centres, others none."""
    rng = np.random.default_rng(0)
    return write_clusters(
        path, {c: rng.uniform(-1, 1, (k, 3)).astype(np.float32) for c, k in ((7, 2), (26, 3))}
    )

# ruff: noqa: I001  (p2phd must be imported before MindSpore: it sets the oneDNN/GLOG env)
"""Helpers shared by the tests of bin/train (tests/test_train*.py): tiny options, manifests of the
real Cityscapes sample, a random VGG19 checkpoint in the model zoo layout, subprocess runs."""

import os
import socket
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "bin" / "train"

# A tiny generator/discriminator: 128x64 images, stride 4, a few thousand parameters.
TINY = [
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
    """The sample's 8 training frames prepared at `load_size` wide (128 -> 128x64)."""
    from conftest import sample_dir

    from p2phd.data import prepare

    out = out_dir / f"sample-{load_size}.h5"
    if not out.exists():
        rc = prepare.main(
            [
                "--dataroot",
                str(sample_dir()),
                "--load_size",
                str(load_size),
                "--jobs",
                "1",
                "--out",
                str(out),
            ]
        )
        assert rc == 0
    return out


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


def state_arrays(path: Path) -> dict[str, np.ndarray]:
    import p2phd  # noqa: F401
    import mindspore as ms

    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items() if "." in k}

# ruff: noqa: I001  (p2phd must be imported before MindSpore: it sets the oneDNN/GLOG env)
"""One training step of p2phd's Trainer at 2048x1024 for tests/test_fullres.py, in its own
process (it peaks near 8 GB, which a process gives back when it exits; see the test).

    python tests/fullres_step.py RUN OUT.npz SAMPLE FRAME

RUN is the imported tests/fixtures/nvidia/fullres run. Writes OUT.npz: the G and D gradients of
one G step and one D step from the imported weights on the fixture's frame (read from the
Cityscapes sample through p2phd's preprocessing), under NVIDIA's names (``grad_G.<name>``,
``grad_D.<name>``), and the four losses (``loss_G_GAN`` ...).
"""

import dataclasses
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import p2phd  # noqa: F401
import mindspore as ms
from mindspore import Tensor

from p2phd.core import checkpoint, runs
from p2phd.data.dataset import Sample
from p2phd.data.pipeline import Preprocessor, collate
from p2phd.training.train import TrainOptions
from p2phd.training.trainer import Trainer


def options(run: Path) -> TrainOptions:
    """The run's saved options as TrainOptions (what bin/train resumes with)."""
    saved = runs.read_options(run)["options"]
    names = {f.name for f in dataclasses.fields(TrainOptions)}
    return dataclasses.replace(TrainOptions(), **{k: v for k, v in saved.items() if k in names})


def frame_batch(o, sample: Path, name: str) -> dict:
    """The sample's train frame `name` through p2phd's own preprocessing (resize none)."""
    read = {
        folder: np.array(Image.open(next((sample / f"train_{folder}").glob(f"{name}_*"))))
        for folder in ("label", "inst", "img")
    }
    item = Preprocessor(o, train=False)(Sample(name, read["label"], read["inst"], read["img"]), 0)
    return collate([item])


def nvidia_name(net: str, name: str) -> str:
    """p2phd parameter name (without net prefix) -> NVIDIA's (D: scale<i>.model<j>. is
    scale<i>_layer<j>.)."""
    if net == "D":
        scale, layer, rest = name.split(".", 2)
        return f"{scale}_layer{layer.removeprefix('model')}.{rest}"
    return name


def step(run: Path, sample: Path, name: str) -> dict[str, np.ndarray]:
    ms.set_context(mode=ms.GRAPH_MODE)
    o = options(run)
    batch = frame_batch(o, sample, name)
    trainer = Trainer(o, max_instances=int(batch["pool"].max()) + 1)
    trainer.set_phase(fixed_global=False)
    assert checkpoint.load(runs.latest_state(run) / "state.ckpt", trainer.cells()).complete
    label, inst, pool, real = (Tensor(batch[k]) for k in ("label", "inst", "pool", "photo"))
    no_feat = Tensor(np.zeros(1, np.float32))
    (_, g_gan, g_feat, _, fake), grads_g = trainer.grad_g(label, inst, pool, real, no_feat)
    (_, d_fake, d_real), grads_d = trainer.grad_d(label, inst, real, label, inst, fake)
    out = {}
    for params, grads in ((trainer.optG.parameters, grads_g), (trainer.optD.parameters, grads_d)):
        for p, g in zip(params, grads, strict=True):
            net, rest = p.name.split(".", 1)  # netG.model.1.weight
            out[f"grad_{net[3:]}.{nvidia_name(net[3:], rest)}"] = g.asnumpy()
    losses = {"loss_G_GAN": g_gan, "loss_G_GAN_Feat": g_feat, "loss_D_real": d_real}
    losses["loss_D_fake"] = d_fake
    out.update({k: v.asnumpy() for k, v in losses.items()})
    return out


if __name__ == "__main__":
    run_dir, out_npz, sample_dir, frame = sys.argv[1:5]
    np.savez(out_npz, **step(Path(run_dir), Path(sample_dir), frame))

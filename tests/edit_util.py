"""Shared set-up of the bin/edit tests: street scenes, a tiny feature run with a local G, clusters.

The run is made by hand (no training): G and E with random weights, He-scaled so that G's output
moves visibly with its input, and ``--norm batch``. In inference a batch-norm layer is a fixed
per-channel affine map, so G is a plain stack of convolutions with a finite receptive field
(``receptive_radius``): an edit can only change output pixels within that radius of an input
pixel it changed. With instance norm (pix2pixHD's default) every pixel would depend on every
other through the per-image statistics, and "far from the edit" would have no meaning.
"""

import dataclasses
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

W, H = 256, 128  # the maps' size (Cityscapes' 2:1)
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, PERSON, CAR = 7, 8, 11, 21, 23, 24, 26
NAMES = ["editville_000000_000019", "editville_000001_000019"]
# Architecture of the tiny run: 2 downsamplings, 1 residual block, ngf 4 (see receptive_radius)
ARCH = {
    "ngf": 4,
    "n_downsample_global": 2,
    "n_blocks_global": 1,
    "norm": "batch",
    "nef": 4,
    "n_downsample_E": 2,
    "load_size": W,
    "instance_feat": True,
}
CLUSTERS = {ROAD: 2, CAR: 3}  # classes with cluster centres and how many


def scene(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(label uint8, instance ids int32) of a street: sky, buildings, trees, sidewalk, road,
    two cars, a person."""
    rng = np.random.default_rng(seed)
    label = np.full((H, W), ROAD, np.uint8)
    label[:30] = SKY
    label[30:60] = BUILDING
    label[40:60, 150:200] = VEGETATION
    label[60:72] = SIDEWALK
    inst = label.astype(np.int32)
    for k, x in enumerate((20 + int(rng.integers(0, 10)), 150 + int(rng.integers(0, 10)))):
        label[84:104, x : x + 40] = CAR
        inst[84:104, x : x + 40] = CAR * 1000 + k
    label[62:80, 110:118] = PERSON
    inst[62:80, 110:118] = PERSON * 1000
    return label, inst


def write_split(root: Path, phase: str = "test") -> Path:
    """The scenes in the pix2pixHD layout (labelIds, 16-bit instanceIds), Cityscapes names."""
    for folder in ("label", "inst"):
        (root / f"{phase}_{folder}").mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(NAMES):
        label, inst = scene(i)
        Image.fromarray(label).save(root / f"{phase}_label" / f"{name}_gtFine_labelIds.png")
        Image.fromarray(inst.astype(np.uint16)).save(
            root / f"{phase}_inst" / f"{name}_gtFine_instanceIds.png"
        )
    return root


def make_run(folder: Path, seed: int = 5, arch: dict | None = None) -> Path:
    """A run folder (options.json, G.ckpt: netG, + netE for a feature run) of ``arch`` (default
    ARCH, a feature run), random He-scaled weights."""
    from mindspore import Tensor

    from p2phd.core import checkpoint, runs, runtime
    from p2phd.nets import build_encoder, build_generator

    runtime.setup("CPU", seed=seed)
    arch = runs.ArchOptions(**(ARCH if arch is None else arch))
    G = build_generator(arch)
    nets = {"netG": G, **({"netE": build_encoder(arch, 1)} if arch.use_features() else {})}
    rng = np.random.default_rng(seed)
    for _, p in G.parameters_and_names():
        if p.ndim == 4:  # conv and transposed-conv weights: He scale keeps the signal alive
            fan_in = int(np.prod(p.shape[1:]))
            p.set_data(Tensor(rng.normal(0, np.sqrt(2 / fan_in), p.shape).astype(np.float32)))
    folder.mkdir(parents=True)
    runs.write_options(folder, dataclasses.asdict(arch), {"path": "", "sha256": ""})
    checkpoint.save(folder / "G.ckpt", nets, {"epoch": 1, "step": 1})
    return folder


def make_clusters(path: Path, seed: int = 0) -> Path:
    """A cluster manifest by hand: road 2 centres, car 3 centres (far apart), others none."""
    from train_util import write_clusters

    rng = np.random.default_rng(seed)
    return write_clusters(
        path,
        {
            c: (np.eye(3, dtype=np.float32)[:k] * 2 - 1) * rng.uniform(0.5, 1, (k, 1))
            for c, k in CLUSTERS.items()
        },
    )


def receptive_radius(arch: dict) -> int:
    """How far (pixels, Chebyshev) an input change can reach in G's output, an upper bound.

    A 3x3 convolution whose input is at stride s (pixels of the map per feature pixel) reaches
    s map pixels further; a 7x7 at stride 1 reaches 3. G: 7x7, d stride-2 3x3 downsamplings
    (input strides 1, 2, .., 2^(d-1)), 2 3x3 per residual block at 2^d, d 3x3 transposed
    convolutions (each output depends on inputs within one input pixel: strides 2^d .. 2), 7x7.
    Reflection padding only mirrors pixels that are within the same reach. The edge map adds 1
    (both pixels of a changed boundary), which callers count in the changed input instead.
    """
    d, blocks = arch["n_downsample_global"], arch["n_blocks_global"]
    down = sum(2**i for i in range(d))
    up = sum(2**i for i in range(1, d + 1))
    return 3 + down + 2 * blocks * 2**d + up + 3


def changed_input(
    label0: np.ndarray, inst0: np.ndarray, label1: np.ndarray, inst1: np.ndarray
) -> np.ndarray:
    """Map pixels whose G input differs: a new label, a new id, or a boundary (edge map) moved."""
    from scipy import ndimage

    changed = (label0 != label1) | (inst0 != inst1)
    return ndimage.binary_dilation(changed, np.ones((3, 3), bool))  # the 2-px-thick edges


def near(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` (Chebyshev) of a pixel of mask."""
    from scipy import ndimage

    return ndimage.binary_dilation(mask, np.ones((2 * radius + 1, 2 * radius + 1), bool))


def png_header(w: int, h: int) -> bytes:
    """An 8-bit grey PNG that claims w x h pixels but carries no data (a decompression bomb's
    header: what a guard must refuse before decoding)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )

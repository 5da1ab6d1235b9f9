"""Pool3 features of uint8 images with the FID Inception: loading its weights and batching.

Images are HxWx3 uint8 as decoded from PNG (or stored in a manifest); they become float32
in [0, 1] by /255 (torchvision's ToTensor, which pytorch-fid uses) and the network resizes
them to 299x299. Batches hold images of one size (one compiled graph per size); the last
batch of a size is padded with copies of its first image so that every call has the same
shape (min(batch size, images of that size)) (BatchNorm is in inference mode, so images do not influence each other) and the
padding's outputs are dropped.
"""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from p2phd.core.cli import UsageError
from p2phd.metrics import FID_WEIGHTS_NAME, FID_WEIGHTS_URL
from p2phd.metrics.inception import FIDInception, WeightsError


def load_pth_net(
    path: str | Path,
    build: Callable[[dict], Any],
    errors: type[Exception],
    missing: str,
    wrong: str,
) -> Any:
    """build(state dict of the .pth at path), or UsageError (exit 2) naming the file: `missing`
    says where to get it, `wrong` what it should have been (build raises `errors` otherwise)."""
    from p2phd.interop.pth import PthError, read_state_dict

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file; {missing}")
    try:
        state = read_state_dict(path)
    except PthError as exc:
        raise UsageError(str(exc)) from None  # it names the file and what is wrong with it
    try:
        return build(state)
    except errors as exc:
        raise UsageError(f"{path}: not {wrong}: {exc}") from None


def load_inception(path: str | Path) -> FIDInception:
    """The FID Inception with the weights of pytorch-fid's .pth, or UsageError (exit 2)."""
    from p2phd.metrics.inception import build_inception

    return load_pth_net(
        path,
        build_inception,
        WeightsError,
        f"the FID Inception weights are pytorch-fid's {FID_WEIGHTS_NAME}: download "
        f"{FID_WEIGHTS_URL} and pass --inception FILE",
        f"the FID Inception ({FID_WEIGHTS_NAME})",
    )


def to_input(images: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 (H, W, 3) images of one size -> float32 (N, 3, H, W) in [0, 1]."""
    x = np.stack([np.asarray(im) for im in images]).astype(np.float32) / 255
    return x.transpose(0, 3, 1, 2).copy()


def extract(
    net: FIDInception,
    images: Sequence[np.ndarray] | Callable[[int], np.ndarray],
    count: int,
    sizes: Sequence[tuple[int, int]],
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(count, 2048) float64 features; ``images(i)`` (or ``images[i]``) gives image i, whose
    (H, W) is ``sizes[i]``. Images are decoded batch by batch, so memory stays bounded."""
    import mindspore as ms

    get = images if callable(images) else images.__getitem__
    out = np.empty((count, 2048), np.float64)  # float64 as pytorch-fid stores activations
    by_size: dict[tuple[int, int], list[int]] = {}
    for i in range(count):
        by_size.setdefault(tuple(sizes[i]), []).append(i)
    for idx in by_size.values():
        n = min(batch_size, len(idx))  # a size with fewer images than a batch: one call
        for start in range(0, len(idx), n):
            chunk = idx[start : start + n]
            batch = [get(i) for i in chunk]
            batch += [batch[0]] * (n - len(batch))
            feats = net(ms.Tensor(to_input(batch))).asnumpy()
            out[chunk] = feats[: len(chunk)]
            if progress is not None:
                progress(len(chunk))
    return out

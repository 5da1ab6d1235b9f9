"""Per-sample preprocessing from a dataset manifest: what pix2pixHD's data loader did, minus PNGs.

The manifest already holds arrays resized once by `prepare` (normally scale_width to load_size).
Here we apply the per-step parts of NVIDIA's `base_dataset.get_transform` with the same semantics:

| resize_or_crop          | at load time                                                    |
| scale_width             | width to load_size (a no-op when prepare used the same size)   |
| scale_width_and_crop    | width to load_size, then a random fine_size square crop         |
| resize_and_crop         | load_size x load_size, then a random fine_size square crop      |
| crop                    | a random fine_size square crop of the stored arrays             |
| none                    | H and W rounded to the NEAREST multiple of the generator stride |

One crop position and one flip are drawn per sample and shared by label, instance, photo and
feature maps. Randomness comes from a generator seeded by (seed, epoch, sample index), so an
epoch's crops do not depend on how many samples were drawn before: resume is exact without
saving RNG state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from p2phd.core.instances import dense_index
from p2phd.data.dataset import Dataset, Sample

_NEAREST = Image.Resampling.NEAREST
_BICUBIC = Image.Resampling.BICUBIC


@dataclass
class Item:
    """One preprocessed sample, ready to stack into a batch."""

    name: str
    index: int
    label: np.ndarray  # (H,W) int32 label ids, or (C,H,W) float32 in [-1,1] when label_nc == 0
    inst: np.ndarray  # (H,W) int32 instance ids renumbered 0..K-1 (zeros without instances)
    pool: np.ndarray  # (H,W) int32 ids the encoder pools over (instances, or labels for label_feat)
    photo: np.ndarray | None  # (3,H,W) float32 in [-1,1]
    feat: np.ndarray | None  # (feat_num,H,W) float32 precomputed features (load_features)


def _resize(arr: np.ndarray, size_hw: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """Resize an HxW or HxWxC array with PIL, keeping dtype (int32 ids go through mode 'I')."""
    h, w = size_hw
    if arr.shape[:2] == (h, w):
        return arr
    if arr.ndim == 3 and arr.dtype != np.uint8:  # float feature maps: per channel, nearest only
        return np.stack([_resize(arr[..., c], size_hw, resample) for c in range(arr.shape[2])], -1)
    if arr.dtype == np.int32:
        return np.asarray(Image.fromarray(arr, mode="I").resize((w, h), resample), dtype=np.int32)
    if arr.dtype == np.float32:
        return np.asarray(Image.fromarray(arr, mode="F").resize((w, h), resample), dtype=np.float32)
    return np.asarray(Image.fromarray(arr).resize((w, h), resample))


def target_size(o: Any, h: int, w: int) -> tuple[int, int]:
    """The (H, W) the arrays are resized to before any crop."""
    mode = o.resize_or_crop
    if mode in ("scale_width", "scale_width_and_crop"):
        if not o.load_size or w == o.load_size:
            return h, w
        return int(o.load_size * h / w), o.load_size
    if mode == "resize_and_crop":
        return o.load_size, o.load_size
    if mode == "none":
        base = o.generator_stride()
        return max(base, int(round(h / base)) * base), max(base, int(round(w / base)) * base)
    return h, w  # crop


def draw_params(
    o: Any, h: int, w: int, rng: np.random.Generator, train: bool
) -> tuple[tuple[int, int] | None, bool]:
    """Crop corner (y, x) or None, and flip; NVIDIA draws x, y in [0, max(0, size - fine)]."""
    crop = None
    if train and "crop" in o.resize_or_crop and (h > o.fine_size or w > o.fine_size):
        y = int(rng.integers(0, max(0, h - o.fine_size) + 1))
        x = int(rng.integers(0, max(0, w - o.fine_size) + 1))
        crop = (y, x)
    flip = bool(train and not getattr(o, "no_flip", False) and rng.random() > 0.5)
    return crop, flip


def _spatial(
    arr: np.ndarray, size: tuple[int, int], resample, crop, fine: int, flip: bool
) -> np.ndarray:
    arr = _resize(arr, size, resample)
    if crop is not None:
        y, x = crop
        arr = arr[y : y + fine, x : x + fine]
    if flip:
        arr = arr[:, ::-1]
    return np.ascontiguousarray(arr)


def _to_unit(arr_hwc_u8: np.ndarray) -> np.ndarray:
    """uint8 HxWxC -> float32 CxHxW in [-1, 1] (ToTensor then Normalize(0.5, 0.5))."""
    return (arr_hwc_u8.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0).astype(np.float32)


class Preprocessor:
    """Turns a manifest sample into an `Item` following the run's options."""

    def __init__(
        self,
        o: Any,
        train: bool,
        seed: int = 0,
        features: Callable[[str], np.ndarray] | None = None,
    ) -> None:
        self.o, self.train, self.seed, self.features = o, train, seed, features

    def __call__(self, sample: Sample, index: int, epoch: int = 0) -> Item:
        o = self.o
        h, w = sample.label.shape[:2]
        size = target_size(o, h, w)
        rng = np.random.default_rng([self.seed, epoch, index])
        crop, flip = draw_params(o, *size, rng, self.train)
        fine = o.fine_size

        def geo(arr: np.ndarray, resample) -> np.ndarray:
            return _spatial(arr, size, resample, crop, fine, flip)

        if o.label_nc == 0:
            label = _to_unit(geo(sample.label, _BICUBIC))
        else:
            label = geo(sample.label, _NEAREST).astype(np.int32)
        hh, ww = label.shape[-2:]
        if sample.inst is not None and not o.no_instance:
            inst, _ = dense_index(geo(sample.inst.astype(np.int32), _NEAREST))
        else:
            inst = np.zeros((hh, ww), np.int32)
        pool = dense_index(label)[0] if getattr(o, "label_feat", False) else inst
        photo = _to_unit(geo(sample.photo, _BICUBIC)) if sample.photo is not None else None
        feat = None
        if self.features is not None:
            fmap = self.features(sample.name)  # (C,H,W) float32
            feat = geo(fmap.transpose(1, 2, 0), _NEAREST).transpose(2, 0, 1).astype(np.float32)
        return Item(
            sample.name, index, label, inst.astype(np.int32), pool.astype(np.int32), photo, feat
        )


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Sample order of one epoch; deterministic in (seed, epoch) so a resumed run sees the same."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


def shard(order: np.ndarray, batch_size: int, rank: int, world: int) -> list[np.ndarray]:
    """Batches of this rank: every rank gets the same number of full batches (remainder dropped)."""
    per_rank = len(order) // (batch_size * world) * batch_size
    mine = order[rank::world][:per_rank]
    return [mine[i : i + batch_size] for i in range(0, per_rank, batch_size)]


def steps_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    return n // (batch_size * world)


def collate(items: Sequence[Item]) -> dict[str, Any]:
    """Stack items into numpy batch arrays (all items must share a size)."""
    out: dict[str, Any] = {
        "names": [it.name for it in items],
        "indices": [it.index for it in items],
    }
    for key in ("label", "inst", "pool", "photo", "feat"):
        values = [getattr(it, key) for it in items]
        out[key] = None if values[0] is None else np.stack(values)
    return out


def iterate(
    ds: Dataset, pre: Preprocessor, batches: Sequence[np.ndarray], epoch: int = 0, start: int = 0
) -> Iterator[dict[str, Any]]:
    """Yield collated batches from `start` on (for resume mid-epoch)."""
    for idx in batches[start:]:
        yield collate([pre(ds.sample(int(i)), int(i), epoch) for i in idx])

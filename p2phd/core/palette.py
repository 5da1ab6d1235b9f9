"""Colours for label maps: the Cityscapes palette for label_nc 35, a bit-interleaved one otherwise;
and the Cityscapes labelId -> trainId table (the 19 classes segmentation networks predict).

`colourise(label, label_nc)` turns an (H, W) label-id map into an (H, W, 3) uint8 picture, the
way NVIDIA's util.tensor2label shows input labels in its web pages (train and test). Ids at or
above the palette size are drawn black.
"""

import numpy as np

# Cityscapes labelIds 0..33 (colours of the official labels.py); id 34 (license plate, no colour
# of its own) is drawn like a car, as NVIDIA's 35-entry colour map does.
CITYSCAPES = np.array(
    [
        (0, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
        (0, 0, 0),
        (111, 74, 0),
        (81, 0, 81),
        (128, 64, 128),
        (244, 35, 232),
        (250, 170, 160),
        (230, 150, 140),
        (70, 70, 70),
        (102, 102, 156),
        (190, 153, 153),
        (180, 165, 180),
        (150, 100, 100),
        (150, 120, 90),
        (153, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (152, 251, 152),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 0, 90),
        (0, 0, 110),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
        (0, 0, 142),
    ],
    dtype=np.uint8,
)


CITYSCAPES_LABEL_NC = 35  # pix2pixHD's label_nc for Cityscapes labelIds (0..33, +1)
TRAIN_IGNORE = 255  # trainId of every labelId outside the 19 evaluated classes
# cityscapesScripts labels.py: labelId -> trainId for the 19 evaluated classes (and their names,
# in trainId order); tests/test_cityscapes_layout.py checks these tables against that package.
CITYSCAPES_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip


def train_id_table(mapping: dict[int, int] | None = None) -> np.ndarray:
    """(256,) uint8: label id -> class (Cityscapes trainIds by default), TRAIN_IGNORE elsewhere."""
    table = np.full(256, TRAIN_IGNORE, np.uint8)
    for label, cls in (CITYSCAPES_TRAIN_ID if mapping is None else mapping).items():
        table[label] = cls
    return table


def bit_palette(n: int) -> np.ndarray:
    """PASCAL-VOC-style colours: the bits of the id spread over R, G, B from the top bit down."""
    out = np.zeros((n, 3), np.uint8)
    for i in range(n):
        r = g = b = 0
        cid = i
        for j in range(8):
            r |= ((cid >> 0) & 1) << (7 - j)
            g |= ((cid >> 1) & 1) << (7 - j)
            b |= ((cid >> 2) & 1) << (7 - j)
            cid >>= 3
        out[i] = (r, g, b)
    return out


def palette(label_nc: int) -> np.ndarray:
    """(max(label_nc, 256), 3) uint8 colour table, indexable by any uint8 id."""
    base = CITYSCAPES if label_nc == 35 else bit_palette(max(label_nc, 1))
    table = np.zeros((256, 3), np.uint8)
    table[: min(len(base), 256)] = base[:256]
    return table


def colourise(label: np.ndarray, label_nc: int) -> np.ndarray:
    """(H, W) integer ids -> (H, W, 3) uint8 RGB; ids >= label_nc (or >= 256) are black."""
    ids = np.asarray(label).astype(np.int64)
    table = palette(label_nc)
    valid = (ids >= 0) & (ids < min(max(label_nc, 1), 256))
    return np.where(valid[..., None], table[np.clip(ids, 0, 255)], 0).astype(np.uint8)


def to_uint8(image_chw: np.ndarray) -> np.ndarray:
    """(C, H, W) float in [-1, 1] -> (H, W, 3) uint8 (grey replicated), clipped, rounded."""
    img = np.asarray(image_chw, np.float32)
    if img.shape[0] == 1:
        img = np.repeat(img, 3, 0)
    img = np.clip((img[:3].transpose(1, 2, 0) + 1.0) * 127.5, 0, 255)
    return np.rint(img).astype(np.uint8)


colorize = colourise  # US spelling

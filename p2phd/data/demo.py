"""A small synthetic street-scene dataset in the raw Cityscapes tree layout, for `make demo`.

    python -m p2phd.demo_data OUT_DIR [--n_train 8 --n_test 4 --width 256 --height 128 --seed 0]

writes, for the splits train and val (val is what pix2pixHD calls the test set):

    OUT_DIR/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png      RGB photo
    OUT_DIR/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png       8-bit labelIds
    OUT_DIR/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png    16-bit ids

Label ids are Cityscapes labelIds (road 7, building 11, sky 23, car 26, ...). Instance ids follow
Cityscapes: a "thing" object (classes 24-33) is labelId*1000+k, everything else is its labelId.
Each class has its own colour AND texture (brick walls, noisy asphalt, tiled pavement, blotchy
trees, a sky gradient) and each car or person its own colour, so a small model learns visibly in
minutes and the instance-feature encoder has per-object appearance to encode. The output is a
deterministic function of the options (--seed included). OUT_DIR is written under a temporary
name and renamed at the end, so an interrupted run never leaves a half dataset behind.
"""

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

# Cityscapes labelIds used by the scenes.
EGO, GROUND, ROAD, SIDEWALK, BUILDING, FENCE = 1, 6, 7, 8, 11, 13
POLE, SIGN, VEGETATION, TERRAIN, SKY = 17, 20, 21, 22, 23
PERSON, CAR, TRUCK, BICYCLE = 24, 26, 27, 33
THING_CLASSES = range(24, 34)  # Cityscapes classes with per-object instance ids
MARKER = "demo-dataset.json"
CITIES = {"train": ("synthtown", "synthburg"), "val": ("synthville",)}


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Blotchy noise in [-1, 1]: random values on a coarse grid, bilinearly upsampled."""
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    coarse = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.Resampling.BILINEAR))


class Scene:
    """Label and instance maps of one frame, painted back to front."""

    def __init__(self, rng: np.random.Generator, h: int, w: int) -> None:
        self.rng, self.h, self.w = rng, h, w
        self.label = np.full((h, w), SKY, np.uint8)
        self.inst = np.zeros((h, w), np.int32)  # 0 = stuff: filled with the label id at the end
        self.next_k: dict[int, int] = {}
        self.horizon = int(h * rng.uniform(0.38, 0.5))

    def paint(self, mask: np.ndarray, cls: int, thing: bool = False) -> None:
        self.label[mask] = cls
        if thing:
            k = self.next_k.get(cls, 0)
            self.next_k[cls] = k + 1
            self.inst[mask] = cls * 1000 + k
        else:
            self.inst[mask] = 0

    def box(self, y0: float, y1: float, x0: float, x1: float) -> np.ndarray:
        m = np.zeros((self.h, self.w), bool)
        m[max(0, int(y0)) : max(0, int(y1)), max(0, int(x0)) : max(0, int(x1))] = True
        return m

    def road_halfwidth(self, y: np.ndarray | float) -> np.ndarray | float:
        """Perspective: the road widens linearly from the horizon to the bottom edge."""
        t = (np.asarray(y, np.float32) - self.horizon) / max(1, self.h - self.horizon)
        return self.w * (0.04 + 0.55 * np.clip(t, 0, 1))

    def build(self) -> "Scene":
        self._skyline()
        self._ground()
        self._poles()
        self._objects()
        if self.rng.random() < 0.5:  # Cityscapes frames show the ego car's bonnet at the bottom
            self.paint(self.box(self.h * 0.94, self.h, 0, self.w), EGO)
        stuff = self.inst == 0
        self.inst[stuff] = self.label[stuff]
        return self

    def _skyline(self) -> None:
        rng, h, w = self.rng, self.h, self.w
        x = 0.0
        while x < w:
            bw = w * rng.uniform(0.08, 0.22)
            top = h * rng.uniform(0.03, 0.3)
            kind = rng.random()
            if kind < 0.7:
                self.paint(self.box(top, self.horizon + 2, x, x + bw), BUILDING)
            elif kind < 0.9:  # a tree: an ellipse of foliage
                yy, xx = np.mgrid[0:h, 0:w]
                cy, cx = (top + self.horizon) / 2, x + bw / 2
                ry, rx = (self.horizon - top) / 2 + 2, bw / 2 + 2
                self.paint(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1, VEGETATION)
            x += bw  # else: a gap that shows the sky
        if rng.random() < 0.5:
            self.paint(self.box(self.horizon - h * 0.06, self.horizon + 1, 0, w), FENCE)

    def _ground(self) -> None:
        h, w = self.h, self.w
        yy, xx = np.mgrid[0:h, 0:w]
        below = yy >= self.horizon
        centre = w * self.rng.uniform(0.4, 0.6)
        half = self.road_halfwidth(yy)
        self.paint(below, SIDEWALK)
        edge = below & (np.abs(xx - centre) > half + w * 0.25)
        self.paint(edge, TERRAIN if self.rng.random() < 0.5 else VEGETATION)
        self.paint(below & (np.abs(xx - centre) <= half), ROAD)
        self.centre = centre

    def _poles(self) -> None:
        rng, h, w = self.rng, self.h, self.w
        pw = max(1, w // 128)
        for _ in range(rng.integers(1, 4)):
            yb = rng.uniform(self.horizon + 0.1 * h, h * 0.9)
            side = rng.choice([-1, 1])
            x = self.centre + side * (self.road_halfwidth(yb) + w * 0.04)
            top = yb - (yb - self.horizon) * 2.5
            self.paint(self.box(top, yb, x, x + pw), POLE)
            if rng.random() < 0.7:
                s = max(2, (yb - self.horizon) * 0.35)
                self.paint(self.box(top, top + s, x - s / 2, x + s / 2 + pw), SIGN)

    def _objects(self) -> None:
        """Cars and trucks on the road, people and bicycles on the pavement; far ones first."""
        rng, h = self.rng, self.h
        objs = []
        for _ in range(rng.integers(2, 6)):
            objs.append(("car", rng.uniform(self.horizon + 0.12 * h, h * 0.97)))
        for _ in range(rng.integers(1, 4)):
            objs.append(("person", rng.uniform(self.horizon + 0.1 * h, h * 0.97)))
        if rng.random() < 0.3:
            objs.append(("truck", rng.uniform(self.horizon + 0.15 * h, h * 0.9)))
        if rng.random() < 0.3:
            objs.append(("bicycle", rng.uniform(self.horizon + 0.1 * h, h * 0.95)))
        for kind, yb in sorted(objs, key=lambda o: o[1]):
            getattr(self, f"_{kind}")(yb, yb - self.horizon)

    def _car(self, yb: float, depth: float, cls: int = CAR, aspect: float = 2.0) -> None:
        ch = depth * 0.55
        cw = ch * aspect
        x0 = (
            self.centre
            + self.rng.uniform(-1, 1) * max(0.0, self.road_halfwidth(yb) - cw / 2)
            - cw / 2
        )
        body = self.box(yb - ch * 0.6, yb, x0, x0 + cw)
        cabin = self.box(yb - ch, yb - ch * 0.55, x0 + cw * 0.2, x0 + cw * 0.8)
        self.paint(body | cabin, cls, thing=True)

    def _truck(self, yb: float, depth: float) -> None:
        self._car(yb, depth * 1.5, TRUCK, aspect=1.4)

    def _person(self, yb: float, depth: float, cls: int = PERSON) -> None:
        ph = depth * 0.9
        side = self.rng.choice([-1, 1])
        x = self.centre + side * (self.road_halfwidth(yb) + self.w * self.rng.uniform(0.01, 0.12))
        yy, xx = np.mgrid[0 : self.h, 0 : self.w]
        pw = max(2.0, ph * 0.32)
        body = self.box(yb - ph * 0.82, yb, x - pw / 2, x + pw / 2)
        r = max(1.0, ph * 0.1)
        head = (yy - (yb - ph * 0.9)) ** 2 + (xx - x) ** 2 <= r * r
        self.paint(body | head, cls, thing=True)

    def _bicycle(self, yb: float, depth: float) -> None:
        bh = depth * 0.4
        x = self.centre + self.rng.choice([-1, 1]) * (self.road_halfwidth(yb) + self.w * 0.03)
        self.paint(self.box(yb - bh, yb, x - bh * 0.8, x + bh * 0.8), BICYCLE, thing=True)


# Base colours (RGB) of the photo, one per class; textures are added on top.
BASE = {
    0: (0, 0, 0),
    EGO: (25, 25, 30),
    GROUND: (110, 90, 80),
    ROAD: (88, 86, 92),
    SIDEWALK: (172, 150, 152),
    BUILDING: (150, 72, 52),
    FENCE: (140, 130, 110),
    POLE: (70, 70, 74),
    SIGN: (225, 195, 35),
    VEGETATION: (62, 112, 40),
    TERRAIN: (150, 160, 90),
}
PALETTE = np.array(
    [
        (200, 30, 30),
        (30, 60, 190),
        (230, 230, 230),
        (40, 40, 40),
        (20, 150, 60),
        (240, 170, 20),
        (120, 120, 130),
        (130, 30, 150),
    ],
    np.float32,
)


def photo(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """The RGB photo of a scene: class colour x class texture, per-object colours for things."""
    h, w = scene.h, scene.w
    label, inst = scene.label, scene.inst
    img = np.zeros((h, w, 3), np.float32)
    for cls, rgb in BASE.items():
        img[label == cls] = rgb
    yy, xx = np.mgrid[0:h, 0:w]
    fine = rng.normal(0, 1, (h, w)).astype(np.float32)
    blotch = _smooth_noise(rng, h, w, max(2, w // 48))
    shade = np.ones((h, w), np.float32)

    # sky: vertical gradient from deep to pale blue
    t = np.clip(yy / max(1, scene.horizon), 0, 1)[..., None]
    sky = (1 - t) * np.array([60, 110, 200], np.float32) + t * np.array([175, 205, 235], np.float32)
    img[label == SKY] = sky[label == SKY]
    # building: bricks with mortar lines, alternate rows offset by half a brick
    bh = max(2, h // 40)
    row = yy // bh
    mortar = (yy % bh == 0) | (((xx + (row % 2) * bh) % (2 * bh)) == 0)
    m = (label == BUILDING) & mortar
    img[m] = (200, 195, 185)
    shade[label == BUILDING] += 0.08 * fine[label == BUILDING]
    # pavement tiles, asphalt grain, foliage and grass blotches
    tile = max(3, w // 32)
    img[(label == SIDEWALK) & ((yy % tile == 0) | (xx % tile == 0))] = (120, 110, 112)
    shade[label == ROAD] += 0.10 * fine[label == ROAD]
    for cls, amount in ((VEGETATION, 0.35), (TERRAIN, 0.2)):
        shade[label == cls] += amount * blotch[label == cls] + 0.05 * fine[label == cls]

    # things: one colour per object, windows/wheels for vehicles, dark trousers for people
    for iid in np.unique(inst[inst >= 1000]):
        m = inst == iid
        cls = int(iid) // 1000
        colour = PALETTE[rng.integers(len(PALETTE))] * rng.uniform(0.8, 1.1)
        img[m] = colour
        ys = np.nonzero(m)[0]
        top, bottom = ys.min(), ys.max() + 1
        rel = (yy - top) / max(1, bottom - top)
        if cls in (CAR, TRUCK):
            if cls == CAR:
                img[m & (rel < 0.35)] = (60, 90, 120)  # windows
            img[m & (rel > 0.85)] = (15, 15, 15)  # wheels
        elif cls == PERSON:
            img[m & (rel < 0.18)] = (225, 180, 150)  # face
            img[m & (rel > 0.55)] = (35, 35, 60)  # trousers
        shade[m] += 0.04 * fine[m]
    img *= shade[..., None]
    return np.clip(img + 3.0 * fine[..., None], 0, 255).astype(np.uint8)


def write_sample(
    out: Path, split: str, city: str, seq: int, rng: np.random.Generator, h: int, w: int
) -> str:
    scene = Scene(rng, h, w).build()
    rgb = photo(scene, rng)
    stem = f"{city}_{seq:06d}_000019"
    img_dir = out / "leftImg8bit" / split / city
    gt_dir = out / "gtFine" / split / city
    img_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, "RGB").save(img_dir / f"{stem}_leftImg8bit.png")
    Image.fromarray(scene.label, "L").save(gt_dir / f"{stem}_gtFine_labelIds.png")
    # 16-bit like Cityscapes' own instanceIds (max id 33999 fits)
    Image.fromarray(scene.inst.astype(np.uint16)).save(gt_dir / f"{stem}_gtFine_instanceIds.png")
    return stem


def generate(
    out_dir: str | os.PathLike,
    n_train: int = 8,
    n_test: int = 4,
    width: int = 256,
    height: int = 128,
    seed: int = 0,
) -> Path:
    """Write the dataset to `out_dir` (replacing an earlier demo dataset there); return its path."""
    out = Path(out_dir)
    if out.exists() and not (out / MARKER).is_file() and any(out.iterdir()):
        raise ValueError(f"{out}: exists and is not a demo dataset; choose another folder")
    if min(width, height) < 16 or n_train < 1 or n_test < 0:
        raise ValueError("need --width and --height >= 16, --n_train >= 1, --n_test >= 0")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for split, count in (("train", n_train), ("val", n_test)):
        cities = CITIES[split]
        for i in range(count):
            # one generator per frame: a frame does not depend on how many frames precede it
            rng = np.random.default_rng([seed, 0 if split == "train" else 1, i])
            write_sample(tmp, split, cities[i % len(cities)], i // len(cities), rng, height, width)
    settings = dict(n_train=n_train, n_test=n_test, width=width, height=height, seed=seed)
    (tmp / MARKER).write_text(json.dumps({"generator": "p2phd.demo_data", **settings}) + "\n")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m p2phd.demo_data", description=__doc__.split("\n")[0]
    )
    ap.add_argument("out_dir", help="folder to write (a raw Cityscapes tree)")
    ap.add_argument("--n_train", type=int, default=8, help="training frames (default: 8)")
    ap.add_argument("--n_test", type=int, default=4, help="val frames, the test set (default: 4)")
    ap.add_argument("--width", type=int, default=256, help="image width in pixels (default: 256)")
    ap.add_argument("--height", type=int, default=128, help="image height in pixels (default: 128)")
    ap.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    a = ap.parse_args(argv)
    try:
        out = generate(a.out_dir, a.n_train, a.n_test, a.width, a.height, a.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

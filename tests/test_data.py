"""p2phd.data: crops/flips shared by every array, deterministic per (seed, epoch, index), sharding."""

from types import SimpleNamespace

import numpy as np

from p2phd.data import pipeline as data
from p2phd.data.dataset import Sample


def _opts(**kw):
    base = dict(
        resize_or_crop="scale_width",
        load_size=0,
        fine_size=32,
        no_flip=False,
        label_nc=35,
        no_instance=False,
        label_feat=False,
        netG="global",
        n_downsample_global=4,
        n_local_enhancers=1,
    )
    base.update(kw)
    o = SimpleNamespace(**base)
    o.generator_stride = lambda: (
        2**o.n_downsample_global * (2**o.n_local_enhancers if o.netG == "local" else 1)
    )
    return o


def _sample(h=48, w=96):
    """label = column index mod 30, inst = row*1000+col, photo R = column, G = row: alignment is
    checkable after any crop/flip."""
    yy, xx = np.mgrid[0:h, 0:w]
    label = (xx % 30).astype(np.uint8)
    inst = (yy * 1000 + xx).astype(np.int32)
    photo = np.stack([xx, yy, np.zeros_like(xx)], -1).astype(np.uint8)
    return Sample("s", label, inst, photo)


def _photo_xy(item):
    rgb = np.rint((item.photo + 1) * 127.5).astype(int)
    return rgb[0], rgb[1]


def test_crop_and_flip_are_shared_and_deterministic():
    o = _opts(resize_or_crop="crop", fine_size=32)
    pre = data.Preprocessor(o, train=True, seed=3)
    s = _sample()
    flips = set()
    for index in range(12):
        a, b = pre(s, index, epoch=2), pre(s, index, epoch=2)
        np.testing.assert_array_equal(a.label, b.label)
        np.testing.assert_array_equal(a.photo, b.photo)
        assert a.label.shape == (32, 32) and a.photo.shape == (3, 32, 32)
        x, y = _photo_xy(a)
        np.testing.assert_array_equal(a.label, x % 30)  # label and photo cropped/flipped alike
        flips.add(bool(x[0, 0] > x[0, -1]))
        # inst was renumbered densely, but its order follows the raw ids (row*1000+col)
        raw = y * 1000 + x
        assert (
            np.argsort(raw.ravel(), kind="stable") == np.argsort(a.inst.ravel(), kind="stable")
        ).all()
    assert flips == {True, False}
    other = [pre(s, i, epoch=3).photo for i in range(12)]
    assert any(not np.array_equal(o3, pre(s, i, epoch=2).photo) for i, o3 in enumerate(other))


def test_no_flip_and_eval_keep_the_image():
    s = _sample()
    for pre in (
        data.Preprocessor(_opts(no_flip=True), train=True),
        data.Preprocessor(_opts(), train=False),
    ):
        item = pre(s, 0)
        x, y = _photo_xy(item)
        np.testing.assert_array_equal(x, np.mgrid[0:48, 0:96][1])


def test_none_rounds_to_nearest_multiple_of_the_stride():
    o = _opts(resize_or_crop="none", n_downsample_global=3)  # stride 8
    assert data.target_size(o, 45, 99) == (48, 96)
    assert data.target_size(o, 43, 101) == (40, 104)
    o.netG = "local"  # stride 16
    assert data.target_size(o, 45, 99) == (48, 96) and data.target_size(o, 3, 5) == (16, 16)
    item = data.Preprocessor(o, train=False)(_sample(45, 99), 0)
    assert item.label.shape == (48, 96) and item.photo.shape == (3, 48, 96)


def test_scale_width():
    o = _opts(resize_or_crop="scale_width", load_size=48)
    assert data.target_size(o, 48, 96) == (24, 48)
    assert data.Preprocessor(o, train=False)(_sample(), 0).inst.shape == (24, 48)


def test_epoch_order_and_shards():
    a = data.epoch_order(10, 0, 1, True)
    assert sorted(a) == list(range(10)) and (a == data.epoch_order(10, 0, 1, True)).all()
    assert not (a == data.epoch_order(10, 0, 2, True)).all()
    assert (data.epoch_order(10, 0, 5, False) == np.arange(10)).all()
    shards = [data.shard(a, 2, r, 2) for r in (0, 1)]
    assert [len(s) for s in shards] == [2, 2]  # 10 samples, batch 2, 2 ranks: 2 full batches each
    flat = [set(np.concatenate(s).tolist()) for s in shards]
    assert not flat[0] & flat[1]
    assert data.steps_per_epoch(10, 2, 2) == 2


def test_collate_and_label_feat_pool():
    o = _opts(label_feat=True)
    items = [data.Preprocessor(o, train=False)(_sample(), i) for i in range(2)]
    b = data.collate(items)
    assert (
        b["label"].shape == (2, 48, 96) and b["photo"].shape == (2, 3, 48, 96) and b["feat"] is None
    )
    assert b["pool"].max() == 29  # pooled per label class, renumbered 0..K-1

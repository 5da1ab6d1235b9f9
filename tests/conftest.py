"""Shared fixtures: the Cityscapes sample (real, or a generated stand-in) and tiny synthetic data.

- ``sample_root`` / ``sample_dir()``: the sample in the pix2pixHD layout: 8 train frames with
  photos (``aachen_00000{0..7}_000019``), 15 test frames without (``frankfurt_...``), Cityscapes
  file names, labelIds and instanceIds. It is ../shared/data/cityscapes-sample (2048x1024 real
  frames) when present; otherwise, or with ``P2PHD_SAMPLE=generated``, a stand-in with the same
  folders, names and counts, drawn by p2phd.data.demo at ``SAMPLE_SIZE`` (512x256, the same 2:1
  aspect), generated once per test session. So a fresh clone runs every test.
- ``tiny_cityscapes``: a tiny dataset made in the test, pix2pixHD layout, Cityscapes file names:
  ``train_label``/``train_inst``/``train_img`` (3 frames) and ``test_label``/``test_inst``
  (2 frames), 128x64 (W x H). Labels are Cityscapes labelIds (uint8 PNG, 0..33); instance maps
  are 16-bit PNGs with labelId*1000+k for "thing" classes (24..33) and the labelId elsewhere;
  photos are RGB.
- ``tiny_manifest``: ``tiny_cityscapes``'s train split prepared at its original size
  (``--load_size 0``, one job): a ready dataset manifest Path.
"""

import atexit
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
REAL_SAMPLE = (REPO / ".." / "shared" / "data" / "cityscapes-sample").resolve()
USE_REAL = (
    os.environ.get("P2PHD_SAMPLE", "") != "generated" and (REAL_SAMPLE / "train_label").is_dir()
)
# (width, height) of the sample's frames: the real 2048x1024, or the stand-in's 512x256.
SAMPLE_SIZE = (2048, 1024) if USE_REAL else (512, 256)
SAMPLE_TRAIN = [f"aachen_{i:06d}_000019" for i in range(8)]
# The real sample's 15 test frames (Cityscapes val, Frankfurt).
SAMPLE_TEST = [
    f"frankfurt_{n}"
    for n in (
        "000000_000576 000000_001236 000000_003357 000000_011810 000000_012868 000001_013710 "
        "000001_015328 000001_023769 000001_028335 000001_032711 000001_033655 000001_042733 "
        "000001_047552 000001_054640 000001_055387"
    ).split()
]
_generated: list[Path] = []
TINY_W, TINY_H = 128, 64
TINY_TRAIN = ["tinyville_000000_000019", "tinyville_000001_000019", "bigtown_000002_000042"]
TINY_TEST = ["tinyville_000100_000019", "tinyville_000101_000019"]


def generate_sample(root: Path, w: int = 512, h: int = 256) -> Path:
    """The stand-in: demo scenes (roads, buildings, cars, persons) under the sample's names."""
    from p2phd.data import demo

    for phase, names in (("train", SAMPLE_TRAIN), ("test", SAMPLE_TEST)):
        for folder in ("label", "inst", *(["img"] if phase == "train" else [])):
            (root / f"{phase}_{folder}").mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(names):
            scene = demo.Scene(np.random.default_rng([7, len(phase), i]), h, w).build()
            Image.fromarray(scene.label, "L").save(
                root / f"{phase}_label" / f"{name}_gtFine_labelIds.png", compress_level=1
            )
            Image.fromarray(scene.inst.astype(np.uint16)).save(
                root / f"{phase}_inst" / f"{name}_gtFine_instanceIds.png", compress_level=1
            )
            if phase == "train":
                photo = demo.photo(scene, np.random.default_rng([8, i]))
                Image.fromarray(photo, "RGB").save(
                    root / "train_img" / f"{name}_leftImg8bit.png", compress_level=1
                )
    return root


def sample_dir() -> Path:
    """The real sample, or the stand-in (generated on first use, removed when the session ends)."""
    if USE_REAL:
        return REAL_SAMPLE
    if not _generated:
        tmp = Path(tempfile.mkdtemp(prefix="p2phd-sample-"))
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        _generated.append(generate_sample(tmp / "cityscapes-sample", *SAMPLE_SIZE))
    return _generated[0]


@pytest.fixture(scope="session")
def sample_root() -> Path:
    return sample_dir()


def tiny_frame(
    seed: int, w: int = TINY_W, h: int = TINY_H
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label uint8 HxW, instance ids int32 HxW, photo uint8 HxWx3) of one synthetic frame."""
    rng = np.random.default_rng(seed)
    label = np.full((h, w), 7, np.uint8)  # road
    label[: h // 3] = 23  # sky
    label[h // 3 : h // 2] = 11  # building
    label[:2] = 0  # unlabeled border rows, as Cityscapes has (ego vehicle etc.)
    inst = label.astype(np.int32)
    for k in range(int(rng.integers(2, 5))):  # cars (26) and persons (24): thing classes
        cls = 26 if k % 2 == 0 else 24
        y, x = int(rng.integers(h // 2, h - 8)), int(rng.integers(0, w - 12))
        label[y : y + 8, x : x + 12] = cls
        inst[y : y + 8, x : x + 12] = cls * 1000 + k
    palette = rng.integers(0, 256, (34, 3))
    photo = np.clip(palette[label] + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)
    return label, inst, photo


def write_frame(root: Path, phase: str, name: str, seed: int, photo: bool = True) -> None:
    label, inst, img = tiny_frame(seed)
    for folder in (f"{phase}_label", f"{phase}_inst", f"{phase}_img"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    Image.fromarray(label).save(root / f"{phase}_label" / f"{name}_gtFine_labelIds.png")
    Image.fromarray(inst.astype(np.uint16)).save(
        root / f"{phase}_inst" / f"{name}_gtFine_instanceIds.png"
    )
    if photo:
        Image.fromarray(img).save(root / f"{phase}_img" / f"{name}_leftImg8bit.png")


def write_ab_pairs(root: Path, n: int = 3, seed: int = 1) -> Path:
    """RGB-to-RGB pairs for label_nc 0 (``train_A``/``train_B``, ``pair<i>.png``, 64x128 noise)."""
    rng = np.random.default_rng(seed)
    for folder in ("train_A", "train_B"):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)).save(
                root / folder / f"pair{i}.png"
            )
    return root


@pytest.fixture
def tiny_cityscapes(tmp_path: Path) -> Path:
    root = tmp_path / "tiny_cityscapes"
    for i, name in enumerate(TINY_TRAIN):
        write_frame(root, "train", name, seed=i)
    for i, name in enumerate(TINY_TEST):
        write_frame(root, "test", name, seed=100 + i, photo=False)
    (root / "test_img").rmdir()
    return root


@pytest.fixture
def tiny_manifest(tiny_cityscapes: Path, tmp_path: Path) -> Path:
    from p2phd.data import prepare

    out = tmp_path / "manifests" / "tiny-train-orig.h5"
    rc = prepare.main(
        ["--dataroot", str(tiny_cityscapes), "--load_size", "0", "--jobs", "1", "--out", str(out)]
    )
    assert rc == 0 and out.is_file()
    return out


@contextmanager
def held_by_child(target: Path, tag: str = "") -> Iterator[int]:
    """Hold the output lock of ``target`` (p2phd.core.lock) in another process; yields its pid."""
    code = (
        "import sys, time\n"
        "from p2phd.core import lock\n"
        "lock.acquire(sys.argv[1], tag=sys.argv[2])\n"
        "print('locked', flush=True)\n"
        "time.sleep(600)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(target), tag], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "locked"
        yield child.pid
    finally:
        child.kill()
        child.wait()


# ---- CPU seconds per test phase (load on a shared machine inflates wall time, not CPU time) ----
def _cpu_now() -> float:
    """User+system seconds of this process and its waited-for children (subprocess verbs, msrun)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


_cpu: list[tuple[float, str, str]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cpu-durations",
        type=int,
        default=None,
        metavar="N",
        help="show the N phases (setup/call/teardown) with the most CPU seconds, and the total "
        "(0: all); with P2PHD_CPU_LOG=file, also append every phase's CPU seconds to file",
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    t = _cpu_now()
    yield
    _cpu.append((_cpu_now() - t, "setup", item.nodeid))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    t = _cpu_now()
    yield
    _cpu.append((_cpu_now() - t, "call", item.nodeid))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item):
    t = _cpu_now()
    yield
    _cpu.append((_cpu_now() - t, "teardown", item.nodeid))


def pytest_sessionfinish(session: pytest.Session) -> None:
    log = os.environ.get("P2PHD_CPU_LOG")
    if log and _cpu:
        with open(log, "a") as f:
            f.writelines(f"{s:.2f}\t{phase}\t{node}\n" for s, phase, node in _cpu)


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    n = config.getoption("--cpu-durations")
    if n is None or not _cpu:
        return
    tr = terminalreporter
    tr.write_sep("=", f"CPU seconds (user+sys incl. children), top {n or 'all'}")
    for s, phase, node in sorted(_cpu, reverse=True)[: n or None]:
        tr.write_line(f"{s:7.2f}s {phase:8s} {node}")
    tr.write_line(
        f"total in tests: {sum(s for s, _, _ in _cpu):.1f} CPU s; process so far: "
        f"{_cpu_now():.1f} CPU s"
    )

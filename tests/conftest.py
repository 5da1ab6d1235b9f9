"""Shared fixtures: the Cityscapes sample (real, or a generated stand-in) and tiny synthetic data.

- ``sample_root`` / ``sample_dir()``: the sample in the pix2pixHD layout: 8 train frames with
  photos (``aachen_00000{0..7}_000019``), 15 test frames without (``frankfurt_...``), Cityscapes
  file names, labelIds and instanceIds. It is the folder ``P2PHD_SAMPLE`` names (default: the
  checkout's ``../shared/data/cityscapes-sample``; 2048x1024 real frames) when it holds one;
  otherwise a stand-in with the same folders, names and counts, drawn by p2phd.data.demo at
  ``SAMPLE_SIZE`` (512x256, the same 2:1 aspect), generated once per test session. So a fresh
  clone runs every test but those marked ``needs_sample`` (real photos compared with reference
  numbers), which skip with ``NO_SAMPLE`` as their reason.
- ``tiny_cityscapes``: a tiny dataset made in the test, pix2pixHD layout, Cityscapes file names:
  ``train_label``/``train_inst``/``train_img`` (3 frames) and ``test_label``/``test_inst``
  (2 frames), 128x64 (W x H). Labels are Cityscapes labelIds (uint8 PNG, 0..33); instance maps
  are 16-bit PNGs with labelId*1000+k for "thing" classes (24..33) and the labelId elsewhere;
  photos are RGB.
- ``tiny_manifest``: ``tiny_cityscapes``'s train split prepared at its original size
  (``--load_size 0``, one job): a ready dataset manifest Path.

Built once per session and shared by all test files (and by both pytest-xdist workers of
``make test``; the second asker waits on a lock while the first builds):

- ``build_once(name, build)``: your own shared artifact: ``build(folder)`` fills a fresh folder
  the first time, later calls return it. Read-only for everyone: copy what you change.
- ``sample_manifest(phase, load_size, copy_to=None)``: the sample's split prepared at that width
  (``train``: 8 frames with photos, ``test``: 15 label maps; 128 -> 128x64). With ``copy_to`` a
  private copy (for verbs that write beside the manifest, e.g. evaluate's feature cache).
  ``train_util.sample_manifest(folder)`` is the train split at 128 copied into ``folder``.
- ``train_util.system_chain()``: the system test's chain of verbs on generated demo data:
  512p -> 1024p (4 epochs, every epoch's state), 512p-feat -> precompute -> cluster ->
  1024p-feat -> renders (see its docstring for the keys). Assert on its runs rather than
  training another tiny run of the same kind.

Keeping ``make test`` short (its budget is 6 min on this 2-core machine; it takes 6-6.5): a
training process costs ~10 CPU s before its first step (MindSpore import ~2 s, graph compile of
the G and D steps ~7 s, of which the exact instance norm's backward ~2 s; each further step of
the tiny nets ~0.1-0.2 s), a render or precompute process ~3-4 s, msrun three processes. So:
reuse the shared runs and manifests above (the system chain serves test_system.py,
test_train_1024p.py and test_feature_chain.py), put several assertions on one training, train
tiny (``train_util.TINY``: ngf 8, one D scale of two layers, 128x64) and few steps, and run
verbs in the test's process (``train_util.here``, ``cli.run_verb``: ~2 CPU s less each) unless
the process itself is under test (a kill, msrun, an rlimit, the command-line contract). A
reference output of a net that is not itself under test (the MindSpore side of an ONNX or
fyu/drn comparison) can run in PyNative (``runtime.setup("CPU", pynative=True)``): the same
kernels without a graph compile; so can a fixture's training of a step or three whose numbers
no test reads (``--pynative``; more steps cost more than the compile). Mark
tests that train, run msrun, chain verbs, export, drive a browser or run full-size networks
``@pytest.mark.slow`` (``make test-fast`` runs the rest, in under a minute), state your tests'
CPU seconds (``pytest --cpu-durations 0``) in your report, and add a file costing over ~15 CPU s
to ``COST_ORDER``.
"""

import atexit
import fcntl
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
# Where the real Cityscapes sample is: the one setting, P2PHD_SAMPLE (a folder in the pix2pixHD
# layout; any path without train_label/, e.g. P2PHD_SAMPLE=none, runs on the generated stand-in).
SAMPLE_ENV = "P2PHD_SAMPLE"
REAL_SAMPLE = Path(
    os.environ.get(SAMPLE_ENV) or REPO.parent / "shared" / "data" / "cityscapes-sample"
).resolve()
USE_REAL = (REAL_SAMPLE / "train_label").is_dir()
# The reason every test that needs the real photos skips with (they cannot be redistributed).
NO_SAMPLE = (
    f"needs the real Cityscapes sample (none at {REAL_SAMPLE}): set {SAMPLE_ENV}=/path/to/"
    "cityscapes-sample (8 aachen train frames and 15 frankfurt val frames, pix2pixHD layout)"
)
needs_sample = pytest.mark.skipif(not USE_REAL, reason=NO_SAMPLE)
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


@pytest.fixture(scope="session", autouse=True)
def _mindspore_on_cpu() -> None:
    """MindSpore fixes its device when a process runs its first kernel, after which
    ``ms.set_device`` raises: set it before any test, so that a test calling it (test_nets_models)
    passes whatever ran before it in this process (test order differs under xdist)."""
    import p2phd  # noqa: F401, I001  (the oneDNN/GLOG env before MindSpore)
    import mindspore as ms

    ms.set_device("CPU")


@pytest.fixture(scope="module", autouse=True)
def _graph_mode_per_file() -> Iterator[None]:
    """Each test file starts in graph mode (MindSpore's default, what the verbs run): a verb run
    in the test's process with --pynative, or a PyNative reference, leaves its mode set for the
    rest of its own file only."""
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE)
    yield
    ms.set_context(mode=ms.GRAPH_MODE)


# ---- built once per session, shared by every test module (and every pytest-xdist worker) ----
_shared_root: list[Path] = []


@pytest.fixture(scope="session", autouse=True)
def _shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder build_once() builds in: the session's base temp folder, which all xdist
    workers share (each worker's own is a subfolder of it)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    root = base / "shared"
    root.mkdir(exist_ok=True)
    _shared_root[:] = [root]
    return root


def build_once(name: str, build: Callable[[Path], object]) -> Path:
    """``<shared>/<name>``, made by ``build(folder)`` the first time any test of the session asks
    for it (other xdist workers wait on a lock meanwhile), then returned as it is. Treat it as
    read-only: copy what a test changes or writes beside. A failing build fails every asker."""
    if not _shared_root:
        raise RuntimeError("build_once is for tests and fixtures (the session has not started)")
    folder = _shared_root[0] / name
    failed = _shared_root[0] / f".{name}.failed"
    with open(_shared_root[0] / f".{name}.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # released when the file closes
        if failed.exists():  # one failing build per session, not one per asker
            pytest.fail(f"build_once({name!r}) failed earlier:\n{failed.read_text()}")
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            try:
                build(folder)
            except BaseException as e:
                failed.write_text(f"{type(e).__name__}: {e}"[-3000:])
                raise
            (folder / ".built").touch()
    return folder


def sample_manifest(
    phase: str = "train", load_size: int = 128, copy_to: Path | None = None
) -> Path:
    """The sample's ``phase`` split (train: 8 frames with photos; test: 15 label maps) prepared
    once per session at ``load_size`` wide (128: 128x64; 0: original size), one job. With
    ``copy_to`` (a folder), a private copy there named ``sample-<phase>-<size>.h5``."""
    name = f"sample-{phase}-{load_size}.h5"

    def prepare_it(folder: Path) -> None:
        from p2phd.core.cli import run_verb
        from p2phd.data import prepare

        argv = ["--dataroot", str(sample_dir()), "--phase", phase, "--load_size", str(load_size)]
        assert run_verb(prepare.main, [*argv, "--jobs", "1", "--out", str(folder / name)]) == 0

    shared = build_once(f"sample-{phase}-{load_size}", prepare_it) / name
    if copy_to is None:
        return shared
    copy_to.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(shared, copy_to / name))


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


# ---- order: the costliest files first, so that `make test`'s two xdist workers (one file at a
# time each) finish together instead of one starting test_system.py when the other is done.
# CPU seconds of each file are printed by `--cpu-durations 0` (summed per file); a new file that
# takes more than ~15 CPU s belongs in this list, at its place.
COST_ORDER = (  # CPU s per file in `make test` (two runs, 30 Nov 2026), most first
    "test_system.py",  # 92 (builds the system chain; two later files read it)
    "test_fullres.py",  # 62 (its training step peaks near 8 GB in its own process)
    "test_train_resume.py",  # 56
    "test_train.py",  # 41
    "test_devices.py",  # 40
    "test_lowmem_conv.py",  # 40
    "test_render.py",  # 39
    "test_precompute.py",  # 38
    "test_evaluate.py",  # 37
    "test_cityscapes_layout.py",  # 29 (one run, 6 Dec 2026)
    "test_amp.py",  # 27
    "test_onnx.py",  # 23
    "test_train_dp.py",  # 23
    "test_import.py",  # 22
    "test_export.py",  # 22
    "test_edit_browser.py",  # 19
    "test_hardening.py",  # 17
    "test_nets_layers.py",  # 15
    "test_install.py",  # 14
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(COST_ORDER)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: keeps file order


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
    if hasattr(session.config, "workeroutput"):  # an xdist worker: hand the numbers over
        session.config.workeroutput["p2phd_cpu"] = _cpu
    log = os.environ.get("P2PHD_CPU_LOG")
    if log and _cpu:
        with open(log, "a") as f:
            f.writelines(f"{s:.2f}\t{phase}\t{node}\n" for s, phase, node in _cpu)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """xdist's controller: collect a finished worker's numbers for the summary."""
    _cpu.extend(getattr(node, "workeroutput", {}).get("p2phd_cpu", []))


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    n = config.getoption("--cpu-durations")
    if n is None or not _cpu:
        return
    tr = terminalreporter
    tr.write_sep("=", f"CPU seconds (user+sys incl. children), top {n or 'all'}")
    for s, phase, node in sorted(_cpu, reverse=True)[: n or None]:
        tr.write_line(f"{s:7.2f}s {phase:8s} {node}")
    files: dict[str, float] = {}
    for s, _, node in _cpu:
        files[node.split("::")[0]] = files.get(node.split("::")[0], 0.0) + s
    tr.write_line(
        "per file: "
        + ", ".join(f"{f} {s:.0f}" for f, s in sorted(files.items(), key=lambda kv: -kv[1])[:12])
    )
    tr.write_line(
        f"total in tests: {sum(s for s, _, _ in _cpu):.1f} CPU s; this process and its finished "
        f"children (xdist workers, verbs): {_cpu_now():.1f} CPU s"
    )

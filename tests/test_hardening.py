"""Bad input and safety (issue 12), with the real verbs: a decompression bomb, outputs that cannot
be written (refused before any work), a full disk (one line, the previous artifact intact, no
temporary left), two writers on one output (the second refused at once, no stale lock after a
crash) and a run shorter than --print_freq/--display_freq (its last step is logged and shown).
Render's and the feature verbs' cases sit beside their other tests (test_render.py,
test_feature_chain.py); the Makefile's in test_makefile.py."""

import hashlib
import os
import re
import resource
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from conftest import REPO, held_by_child
from train_util import TINY, here, sample_manifest, stats, train

from p2phd.core import cli, lock
from p2phd.core.cli import run_verb
from p2phd.data import prepare, sources
from p2phd.features import cluster, precompute
from p2phd.rendering import render
from p2phd.training import train as train_verb

BIN = REPO / "bin"


def run_bin(verb: str, *args, fsize: int = 0, cwd: Path | None = None):
    """bin/<verb> in a fresh process; ``fsize`` caps the size of any file it writes (ulimit -f)."""

    def cap() -> None:
        # EFBIG instead of SIGXFSZ killing the process: what a full disk (ENOSPC) looks like
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, str(BIN / verb), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONHASHSEED="0"),
        preexec_fn=cap if fsize else None,
        timeout=600,
    )


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Temporaries and lock files anywhere under folder (none may survive a verb)."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.name.endswith((".tmp", ".lock")) or p.name.startswith(".tmp")
    )


def failure_lines(stderr: str) -> list[str]:
    """The verbs' failure lines (a progress bar may share the terminal line)."""
    return re.findall(
        r"\b(?:prepare|train|render|precompute|cluster): (?:failed|error): .*", stderr
    )


# ---------------------------------------------------------------------------- decompression bomb


def bomb_png(path: Path, w: int = 30000, h: int = 30000) -> Path:
    """A PNG whose header declares w x h 8-bit pixels: a few hundred bytes on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096)  # the decoder never gets this far
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def test_decompression_bomb_is_refused_naming_the_file_and_the_limit(
    tiny_cityscapes: Path, tmp_path: Path, capsys
) -> None:
    label = next((tiny_cityscapes / "train_label").glob("*.png"))
    bomb_png(label)
    assert label.stat().st_size < 2000
    out = tmp_path / "bomb.h5"
    p = run_bin("prepare", "--dataroot", tiny_cityscapes, "--jobs", "1", "--out", out)
    assert p.returncode == 2 and p.stdout == ""
    (line,) = failure_lines(p.stderr)  # one line: no warning, no traceback
    assert "Traceback" not in p.stderr and "Warning" not in p.stderr
    assert line.startswith(f"prepare: error: {label}: 30000x30000 = 900,000,000 pixels")
    assert f"limit of {sources.DEFAULT_MAX_PIXELS:,}" in line
    assert "--max_image_pixels 900000000" in line
    assert not out.exists() and leftovers(tmp_path) == []

    # The limit is an option: a genuine large image passes when it is raised.
    ok = next((tiny_cityscapes / "train_label").glob("*.png"))
    small = tmp_path / "small"
    for i, name in enumerate(["a_000000_000019", "b_000000_000019"]):
        from conftest import write_frame

        write_frame(small, "train", name, seed=i)
    args = ["--dataroot", str(small), "--jobs", "1", "--load_size", "0"]
    assert run_verb(prepare.main, [*args, "--max_image_pixels", "8000", "--out", str(out)]) == 2
    assert "128x64 = 8,192 pixels is over the limit of 8,000" in capsys.readouterr().err
    assert run_verb(prepare.main, [*args, "--max_image_pixels", "8192", "--out", str(out)]) == 0
    assert out.is_file() and ok.exists()
    # ... and a worker refuses a file that grew past it after the header check.
    s = sources.find_samples(small, "train", 35, False, "").samples[0]
    problem = sources.load_sample(s, 35, 0, 1, max_pixels=4000)
    assert isinstance(problem, sources.Problem) and "--max_image_pixels" in str(problem)


# ---------------------------------------------------------------------------- unwritable outputs


def test_unwritable_outputs_are_refused_before_any_work(
    tiny_cityscapes: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    afile = tmp_path / "file.txt"
    afile.write_text("not a folder")
    # prepare must not look at a single image: its header check would fail the test (exit 1)
    monkeypatch.setattr(prepare, "check_headers", lambda *a: pytest.fail("decoded before refusing"))
    cases = [
        (prepare.main, ["--dataroot", str(tiny_cityscapes), "--out", f"{afile}/x.h5"]),
        # the manifest and runs do not exist: the output is refused before they are opened
        (train_verb.main, ["no.h5", "--name", "r", "--checkpoints_dir", f"{afile}/runs"]),
        (render.main, ["--run", "no-run", "no.h5", "--out", f"{afile}/render"]),
        (precompute.main, ["--run", "no-run", "no.h5", "--out", f"{afile}/f.h5"]),
        (cluster.main, ["no.h5", "--out", f"{afile}/c.h5"]),
    ]
    for main, argv in cases:
        assert run_verb(main, argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{afile} is not a folder" in err, err
    # a folder this process may not write in: a read-only one (chmod is no obstacle to root, so
    # also /proc/sys, which no one may create files in)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    for folder in [ro, Path("/proc/sys")]:
        if os.access(folder, os.W_OK):
            continue  # root ignores the mode bits of ro
        argv = ["--dataroot", str(tiny_cityscapes), "--out", str(folder / "sub" / "x.h5")]
        assert run_verb(prepare.main, argv) == 2
        assert f"cannot write in {folder}" in capsys.readouterr().err
    ro.chmod(0o755)
    with pytest.raises(cli.UsageError, match="is a folder, expected a file name"):
        cli.check_writable(ro, "--out")
    with pytest.raises(cli.UsageError, match="exists and is not a folder"):
        cli.check_writable(afile, "--out", folder=True)
    assert cli.check_writable(tmp_path / "new" / "deeper" / "x.h5", "--out").name == "x.h5"
    # The user's case, end to end: one line, exit 2, no joblib warning
    p = run_bin("prepare", "--dataroot", tiny_cityscapes, "--out", f"{afile}/x.h5")
    assert p.returncode == 2 and len(failure_lines(p.stderr)) == 1
    assert "Warning" not in p.stderr and "Traceback" not in p.stderr


# ---------------------------------------------------------------------------- a full disk


def test_disk_full_writing_a_manifest_keeps_the_previous_one(
    tiny_manifest: Path, tiny_cityscapes: Path
) -> None:
    before = sha(tiny_manifest)
    assert tiny_manifest.stat().st_size > 8000
    args = ["--dataroot", tiny_cityscapes, "--load_size", "0", "--jobs", "1"]
    p = run_bin("prepare", *args, "--out", tiny_manifest, fsize=8000)
    assert p.returncode == 1 and p.stdout == "", p.stderr
    assert failure_lines(p.stderr) == [
        f"prepare: failed: no space left on the device writing {tiny_manifest} "
        "(nothing was replaced; free some space and run again)"
    ], p.stderr
    assert "Traceback" not in p.stderr and "Warning" not in p.stderr
    assert sha(tiny_manifest) == before and leftovers(tiny_manifest.parent) == []


# ---------------------------------------------------------------------------- two writers


def test_lock_refuses_a_second_writer_and_dies_with_its_process(tmp_path: Path) -> None:
    target = tmp_path / "out.h5"
    with held_by_child(target) as pid:
        with pytest.raises(
            cli.UsageError, match=f"is being written by another process \\(pid {pid}\\)"
        ):
            lock.acquire(target)
        with lock.hold(target, tag="shard-1-of-2") as other:  # another shard: another lock
            assert other.name == ".out.h5.shard-1-of-2.lock"
    # the child was killed (SIGKILL), which is a crash: its lock went with it
    with lock.hold(target) as path:
        assert path == tmp_path / ".out.h5.lock" and path.read_text() == f"{os.getpid()}\n"
    assert not path.exists()  # removed on a normal release


def test_second_prepare_on_one_manifest_is_refused_at_once(
    tiny_cityscapes: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "m.h5"
    argv = [
        "--dataroot",
        str(tiny_cityscapes),
        "--jobs",
        "1",
        "--load_size",
        "0",
        "--out",
        str(out),
    ]
    with held_by_child(out) as pid:
        t0 = time.monotonic()
        assert run_verb(prepare.main, argv) == 2
        assert time.monotonic() - t0 < 5
        err = capsys.readouterr().err
        assert f"--out {out}: is being written by another process (pid {pid})" in err
    assert not out.exists()
    assert run_verb(prepare.main, argv) == 0 and out.is_file()  # no stale lock after the kill


# ---------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> tuple[Path, list]:
    """A 3-step run (--print_freq/--display_freq 100): what a short run leaves."""
    work = tmp_path_factory.mktemp("short")
    m = sample_manifest(work)
    # --pynative: no graph compile (half the time); these tests are about files, not numbers
    args = [m, "--name", "r", *TINY, "--no_vgg_loss", "--pynative"]
    args += ["--max_steps", "3", "--save_epoch_freq", "0"]
    p = here("train", args, work)
    assert p.returncode == 0, p.stderr[-2000:]
    return work / "outputs" / "r", args


@pytest.mark.slow  # trains (short_run)
def test_short_run_logs_and_shows_its_last_step(short_run) -> None:
    run, args = short_run
    lines = stats(run)
    assert [ln["step"] for ln in lines] == [3] and lines[0]["G_GAN"] > 0
    page = (run / "web" / "index.html").read_text()
    assert (
        "epoch 1 (step 3)" in page
        and (run / "web" / "images" / "epoch001_synthesized_image.jpg").is_file()
    )
    # resuming the finished run adds nothing
    p = train(args, run.parent.parent)
    assert p.returncode == 0 and "already trained" in p.stderr, p.stderr[-2000:]
    assert stats(run) == lines


@pytest.mark.slow  # trains (short_run)
def test_train_disk_full_and_a_second_trainer(short_run) -> None:
    run, args = short_run
    work = run.parent.parent
    snap = sha(run / "G.ckpt")
    latest = (run / "state" / "latest").read_text()
    # another process holds the run: refused at once, nothing written
    with held_by_child(run) as pid:
        p = train([*args[:-4], "--max_steps", "4", "--save_epoch_freq", "0"], work)
        assert p.returncode == 2, p.stderr[-2000:]
        assert f"run folder outputs/r: is being written by another process (pid {pid})" in p.stderr
    assert (run / "state" / "latest").read_text() == latest
    # the disk fills while the step-4 state is saved: the step-3 state and G.ckpt stay
    limit = (run / "G.ckpt").stat().st_size // 2
    p = run_bin(
        "train", *args[:-4], "--max_steps", "4", "--save_epoch_freq", "0", cwd=work, fsize=limit
    )
    assert p.returncode == 1, p.stderr[-2000:]
    (line,) = failure_lines(p.stderr)
    assert line == (
        "train: failed: no space left on the device writing outputs/r/state/step-00000004 "
        "(nothing was replaced; free some space and run again)"
    )
    assert "Traceback" not in p.stderr and "CRITICAL" not in p.stderr
    assert sha(run / "G.ckpt") == snap and (run / "state" / "latest").read_text() == latest
    assert leftovers(work / "outputs") == []
    assert all(ln["step"] <= 4 for ln in stats(run))  # every line whole (stats() parses them)


def test_a_bad_label_with_workers_running_is_one_line(
    tiny_cityscapes: Path, tmp_path: Path
) -> None:
    """Leaving joblib's generator early (a bad sample) made joblib warn about cancelled tasks."""
    import numpy as np
    from PIL import Image

    names = sorted((tiny_cityscapes / "train_label").glob("*.png"))
    bad = np.array(Image.open(names[0]))
    bad[0, 0] = 200
    Image.fromarray(bad).save(names[0])
    p = run_bin("prepare", "--dataroot", tiny_cityscapes, "--jobs", "2", "--out", tmp_path / "m.h5")
    assert p.returncode == 2, p.stderr
    (line,) = failure_lines(p.stderr)
    assert str(names[0]) in line and "label values 200" in line
    assert "Warning" not in p.stderr and "Traceback" not in p.stderr
    assert leftovers(tmp_path) == [] and not (tmp_path / "m.h5").exists()

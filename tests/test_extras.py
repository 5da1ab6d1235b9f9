"""Optional parts (pyproject.toml's extras, p2phd/core/extras.py): with their packages
unimportable (tests/without.py, in a subprocess), a verb or option that needs one exits 2 with one
line naming the ``pip install 'p2phd[...]'`` that adds it, and the verbs that do not need them
work, with real data."""

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from p2phd.core import extras

BIN = REPO / "bin"
WITHOUT = REPO / "tests" / "without.py"
# every optional package at once: what `pip install p2phd` alone gives
NONE = ",".join(sorted({m for mods in extras.EXTRAS.values() for m in mods}))


def without(blocked: str, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(WITHOUT), blocked, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("verb", "args", "extra"),
    [
        (
            "train",
            ["{manifest}", "--name", "x", "--no_vgg_loss", "--tensorboard", "--dry_run"],
            "board",
        ),
        ("export", ["--run", "{tmp}/run", "--format", "ONNX"], "onnx"),
        ("edit", ["{tmp}/run"], "edit"),
    ],
)
def test_a_missing_extra_exits_2_naming_its_pip_install(
    verb: str, args: list[str], extra: str, tiny_manifest: Path, tmp_path: Path
) -> None:
    args = [a.format(manifest=tiny_manifest, tmp=tmp_path) for a in args]
    p = without(NONE, BIN / verb, *args, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert p.stdout == ""
    (line,) = p.stderr.strip().splitlines()  # one line
    assert line.endswith(f"pip install 'p2phd[{extra}]'"), line


def test_verbs_that_need_no_extra_work_without_them(tiny_cityscapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.h5"
    p = without(
        NONE, BIN / "prepare", "--dataroot", tiny_cityscapes, "--load_size", "0",
        "--jobs", "1", "--out", out, cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"{out}\n" and out.is_file()
    p = without(NONE, BIN / "train", out, "--name", "x", "--no_vgg_loss", "--dry_run", cwd=tmp_path)
    assert p.returncode == 0, p.stderr


def test_segmentation_engine_without_the_onnx_extra(tmp_path: Path) -> None:
    """``--seg_engine auto`` falls back to MindSpore (the same classes, bench-evaluate); the
    ONNX engines by name exit 2 naming their extra."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from p2phd.core.cli import UsageError\n"
        "from p2phd.metrics.segmentation import resolve_engine\n"
        "print(resolve_engine('auto', 'CPU'))\n"
        "for name in ('onnxruntime', 'openvino'):\n"
        "    try:\n"
        "        resolve_engine(name, 'CPU')\n"
        "    except UsageError as exc:\n"
        "        print(exc)\n"
    )
    p = without("onnx,onnxruntime,openvino", probe, cwd=REPO)
    assert p.returncode == 0, p.stderr
    auto, ort, ov = p.stdout.splitlines()
    assert auto == "mindspore"
    assert ort.endswith("pip install 'p2phd[onnx]'") and "--seg_engine onnxruntime" in ort
    assert ov.endswith("pip install 'p2phd[openvino]'") and "openvino" in ov
    assert extras.available("onnx")  # the suite's own venv has every extra (make setup)

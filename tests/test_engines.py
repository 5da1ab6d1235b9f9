"""Render's engine and precision (p2phd.deploy.engines, deploy.cache, core.cpu).

- auto's rule per CPU (P2PHD_CPU_FLAGS stands for other CPUs), device and mode;
- ``render --run`` with auto renders the run's cached ONNX export within one level of
  ``--engine mindspore`` in every mode (global, local, a feature run with clusters and --style),
  records the engine and precision; a rerun with another engine is not refused, with bf16 it is;
- shards started at once export the run once;
- ``--precision bf16`` runs on this CPU (AMX-BF16) and moves pixels by a few levels; a CPU
  without AMX-BF16/AVX512_BF16 is refused with one line naming them.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import REPO
from PIL import Image
from train_util import system_chain

from p2phd.core.cli import UsageError, run_verb
from p2phd.deploy import cache, engines
from p2phd.rendering import render


def test_auto_rule_per_cpu_device_and_mode(monkeypatch) -> None:
    choose = engines.choose
    small, large = (512, 1024), (1024, 2048)
    monkeypatch.setenv("P2PHD_CPU_FLAGS", "avx2 avx512f avx512_bf16 amx_tile amx_bf16")
    assert choose("auto", "fp32", "CPU", "global", small).engine == engines.RULE["amx"]
    assert choose("auto", "fp32", "CPU", "local", large).engine == "openvino"
    bf16 = choose("auto", "bf16", "CPU", "local", large)
    assert (bf16.engine, bf16.precision) == ("openvino", "bf16")
    assert choose("auto", "fp32", "Ascend", "global", small).engine == "mindspore"
    assert choose("auto", "fp32", "CPU", "global", small, "encoder").engine == "mindspore"
    assert choose("onnxruntime", "fp32", "CPU", "global", small).engine == "onnxruntime"
    for bad in (("onnxruntime", "bf16"), ("mindspore", "bf16")):  # bf16 is OpenVINO's
        with pytest.raises(UsageError, match="runs on openvino"):
            choose(*bad, "CPU", "global", small)
    with pytest.raises(UsageError, match="has no encoder"):
        choose("openvino", "fp32", "CPU", "global", small, "encoder")
    monkeypatch.setenv("P2PHD_CPU_FLAGS", "avx2 fma")  # an AVX2-only CPU
    assert choose("auto", "fp32", "CPU", "global", small).engine == engines.RULE["avx2"]
    monkeypatch.setenv("P2PHD_CPU_FLAGS", "asimd")  # e.g. ARM: no OpenVINO measurements
    assert choose("auto", "fp32", "CPU", "global", small).engine == "onnxruntime"
    with pytest.raises(UsageError, match="neither amx_bf16 nor avx512_bf16"):
        choose("auto", "bf16", "CPU", "global", small)


def test_auto_without_the_optional_engines(monkeypatch) -> None:
    """A base install without the onnx extras (pretended: the packages' presence is what
    engines.installed reports): auto takes the other ONNX engine, then MindSpore; an explicit
    engine or bf16 exits 2 naming the extra."""
    monkeypatch.setenv("P2PHD_CPU_FLAGS", "avx2 avx512f amx_bf16")
    have = {"mindspore", "onnxruntime"}
    monkeypatch.setattr(engines, "installed", lambda e: e in have)
    small = (512, 1024)
    got = engines.choose("auto", "fp32", "CPU", "global", small)
    assert got.engine == "onnxruntime" and "openvino not installed" in got.reason
    with pytest.raises(UsageError, match=r"pip install 'p2phd\[openvino\]'"):
        engines.choose("auto", "bf16", "CPU", "global", small)
    have.discard("onnxruntime")
    assert engines.choose("auto", "fp32", "CPU", "global", small).engine == "mindspore"
    with pytest.raises(UsageError, match=r"p2phd\[onnx\]"):
        engines.choose("onnxruntime", "fp32", "CPU", "global", small)


# ---- renders of the system chain's runs (tiny nets, 128x64 and 256x128 label maps) ----------


def _copy_run(src: Path, dst: Path) -> Path:
    """The run's options and weights only: the auto renders write engine-cache/ into it."""
    dst.mkdir(parents=True)
    for name in ("options.json", "G.ckpt"):
        shutil.copy(src / name, dst / name)
    return dst


def _pngs(folder: Path) -> dict[str, np.ndarray]:
    return {
        p.name: np.asarray(Image.open(p)).astype(np.int16)
        for p in sorted(folder.glob("*_synthesized*.png"))
    }


def _levels(a: Path, b: Path) -> np.ndarray:
    pa, pb = _pngs(a), _pngs(b)
    assert pa and pa.keys() == pb.keys()
    return np.concatenate([np.abs(pa[k] - pb[k]).ravel() for k in pa])


def _render(capsys, *args: str | Path) -> tuple[int, str]:
    rc = run_verb(render.main, [str(a) for a in args])
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict[str, Path]:
    c = dict(system_chain())
    work = tmp_path_factory.mktemp("engines")
    for key in ("512p", "1024p", "1024p-feat"):
        c[key] = _copy_run(c[key], work / key)
    c["work"] = work
    return c


MODES = {  # run, manifest, extra options
    "global": ("512p", "train64", []),
    "local": ("1024p", "test128", []),
    "feature-clusters-style": ("1024p-feat", "test128", ["--style", "car=0"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_auto_within_one_level_of_mindspore(mode: str, chain, capsys) -> None:
    key, man, extra = MODES[mode]
    if key == "1024p-feat":
        extra = ["--clusters", str(chain["clusters"]), *extra]
    out = chain["work"] / f"render-{mode}"
    args = ["--run", chain[key], chain[man], *extra]
    rc, err = _render(capsys, *args, "--engine", "mindspore", "--out", out / "ms")
    assert rc == 0, err
    # auto over that finished folder before the run has its cached export: nothing rendered,
    # and the manifest is written from G.ckpt's meta (no export to read it from)
    before = {p: p.stat().st_mtime_ns for p in (out / "ms").glob("*_synthesized*.png")}
    rc, err = _render(capsys, *args, "--out", out / "ms")
    assert rc == 0, err
    assert {p: p.stat().st_mtime_ns for p in before} == before
    rc, err = _render(capsys, *args, "--out", out / "auto")
    assert rc == 0, err
    settings = json.loads((out / "auto" / "render-settings.json").read_text())
    assert settings["engine"].split()[0] in engines.ONNX_ENGINES  # this CPU, fp32
    assert settings["precision"] == "fp32" and "render: engine " in err
    assert len(list((chain[key] / cache.DIR).glob("*.onnx"))) == 1
    d = _levels(out / "ms", out / "auto")
    # MindSpore and the ONNX engines sum each conv in their own order (float32 ulps): a pixel
    # moves by one level only where G's output sits on a rounding boundary
    assert d.max() <= 1 and (d == 0).mean() >= 0.99, (d.max(), (d == 0).mean())
    with h5py.File(out / "auto" / "render.h5") as f:
        assert f.attrs["engine"] == settings["engine"].split()[0]
        assert f.attrs["precision"] == "fp32"
    # a finished folder rendered again by another engine: nothing refused, nothing re-rendered
    before = {p: p.stat().st_mtime_ns for p in (out / "auto").glob("*_synthesized*.png")}
    rc, err = _render(capsys, *args, "--engine", "mindspore", "--out", out / "auto")
    assert rc == 0, err
    assert {p: p.stat().st_mtime_ns for p in before} == before


@pytest.mark.slow
def test_bf16_renders_a_few_levels_off_and_is_a_setting(chain, capsys, monkeypatch) -> None:
    out = chain["work"] / "render-global"  # test_auto_within_one_level_of_mindspore's
    args = ["--run", chain["512p"], chain["train64"]]
    if not (out / "auto").is_dir():
        assert _render(capsys, *args, "--out", out / "auto")[0] == 0
    rc, err = _render(capsys, *args, "--out", out / "auto", "--precision", "bf16")
    assert rc == 2 and "other precision" in err  # bf16 is another render setting
    rc, err = _render(capsys, *args, "--out", out / "bf16", "--precision", "bf16")
    assert rc == 0 and "openvino (bf16)" in err
    d = _levels(out / "auto", out / "bf16")
    # bf16 keeps 8 of float32's 24 mantissa bits: each layer's inputs and weights are rounded by
    # up to 2^-9 (0.2 %) relative; over this G's ~12 layers, normalised in between, the output
    # in [-1, 1] moves by ~1e-2, i.e. about a level of 127.5 on average (NVIDIA's 1024p G: mean
    # 1.7 levels, max 22). It must move some pixels (bf16 really ran) and only by a few levels.
    assert (d > 0).mean() > 0.01 and d.mean() < 4 and d.max() < 64, (d.mean(), d.max())
    settings = json.loads((out / "bf16" / "render-settings.json").read_text())
    assert settings["precision"] == "bf16" and settings["engine"] == "openvino"
    with h5py.File(out / "bf16" / "render.h5") as f:
        assert f.attrs["precision"] == "bf16"
    assert "bf16" in (out / "bf16" / "index.html").read_text()
    # a CPU without bf16 arithmetic: one line naming what it lacks, nothing written
    monkeypatch.setenv("P2PHD_CPU_FLAGS", "avx2 avx512f")
    rc, err = _render(capsys, *args, "--out", out / "refused", "--precision", "bf16")
    assert rc == 2 and err.count("\n") == 1 and "amx_bf16 nor avx512_bf16" in err
    assert not (out / "refused").exists()


@pytest.mark.slow
def test_shards_started_at_once_export_once(chain, tmp_path) -> None:
    run = _copy_run(chain["512p"], tmp_path / "run")
    out = tmp_path / "shards"
    cmd = [sys.executable, str(REPO / "bin" / "render"), "--run", str(run), str(chain["train64"])]
    procs = [
        subprocess.Popen(
            [*cmd, "--out", str(out), "--shard", f"{i}/2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert sum("to ONNX once" in e for e in errs) == 1, errs  # the other used the winner's file
    files = sorted(p.name for p in (run / cache.DIR).iterdir() if not p.name.endswith(".lock"))
    assert len(files) == 2 and files[0].endswith(".onnx") and files[1].endswith(".onnx.json")
    assert run_verb(render.main, ["--run", str(run), str(chain["train64"]), "--out", str(out)]) == 0
    assert (out / "index.html").is_file()

"""bin/render and bin/precompute on 2 msrun workers (CPU backend; precompute as 2 nodes of one
worker): disjoint shards, output equal to one process, a failing rank fails the run naming itself
and a rerun does only what is missing; rank 0's wait names a silent rank; the Make plans with
NPROC, NODES and NODE_RANK."""

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from train_util import free_port

from p2phd.core import checkpoint, ranks, runs, runtime
from p2phd.core.cli import run_verb
from p2phd.data.dataset import Dataset
from p2phd.features import precompute
from p2phd.features.feature_manifest import FeatureManifest, FeatureWriter
from p2phd.rendering import render
from p2phd.rendering.page import read_manifest

pytestmark = pytest.mark.slow  # msrun workers: not in `make test-fast`

VENV_BIN = Path(sys.executable).parent

# msrun runs this instead of bin/render: the real verb, with save_png wrapped to record what each
# rank wrote and (FAIL_AFTER=k) to make rank 1 fail when about to write its (k+1)-th picture.
RENDER_SCRIPT = """
import os, sys
sys.path.insert(0, {repo!r})
from p2phd.core.cli import run_verb
from p2phd.rendering import files as rf, render

rank, fail_after, seen = os.environ.get("MS_NODE_ID", "?"), int(os.environ.get("FAIL_AFTER", "0")), [0]
orig = rf.save_png
def recording(array, path):
    if path.name.endswith("_synthesized.png"):
        seen[0] += 1
        if rank == "1" and fail_after and seen[0] > fail_after:
            raise OSError(f"disk full (test) writing {{path.name}}")
    orig(array, path)
    with open({saved!r} + f"-{{rank}}.txt", "a") as f:
        f.write(path.name + "\\n")
rf.save_png = recording
sys.exit(run_verb(render.main))
"""


def _build_run(folder: Path, arch: runs.ArchOptions, manifest: Path) -> Path:
    """A run folder made from options (random weights): what render and precompute read."""
    from p2phd.nets import build_encoder, build_generator

    runtime.setup("CPU", seed=5)
    folder.mkdir(parents=True)
    runs.write_options(folder, dataclasses.asdict(arch), {"path": str(manifest), "sha256": ""})
    nets = {"netG": build_generator(arch)}
    if arch.instance_feat:
        nets["netE"] = build_encoder(arch, 64)
    checkpoint.save(folder / "G.ckpt", nets, {"epoch": 1, "step": 1})
    return folder


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import sample_manifest

    root = tmp_path_factory.mktemp("devices")
    for phase in ("test", "train"):  # 15 test label maps, 8 train frames with photos: 64x128
        shutil.copy(sample_manifest(phase, 128), root / f"{phase}.h5")
    # a shallow G (2 downsamplings, 1 block): each worker compiles it and renders 15 maps, and
    # NVIDIA's default depth (4, 9) costs 1.7 CPU s more per process for nothing asserted here
    shallow = dict(ngf=4, n_downsample_global=2, n_blocks_global=1, load_size=128)
    _build_run(root / "labels", runs.ArchOptions(**shallow), root / "train.h5")
    feat = runs.ArchOptions(**shallow, nef=4, n_downsample_E=2, instance_feat=True)
    _build_run(root / "feat", feat, root / "train.h5")
    return root


def _msrun_cmd(script: list[str], logs: Path, port: int, nodes: int, node: int) -> list[str]:
    per_node = 2 // nodes
    return [
        str(VENV_BIN / "msrun"),
        "--worker_num=2",
        f"--local_worker_num={per_node}",
        f"--node_rank={node}",
        "--master_addr=127.0.0.1",
        f"--master_port={port}",
        f"--log_dir={logs}",
        "--join=True",
        *script,
    ]


def msrun(
    script: list[str], cwd: Path, logs: Path, nodes: int = 1, **env: str
) -> subprocess.CompletedProcess:
    """msrun with 2 workers: on this node, or as 2 nodes of 1 worker each (two msrun commands
    started together, as on two machines sharing cwd). Returns node 0's exit status and the
    console output of all nodes (stdout and stderr joined)."""
    full_env = dict(
        os.environ,
        PATH=f"{VENV_BIN}:{os.environ.get('PATH', '')}",  # msrun starts plain `python`
        PYTHONPATH=str(REPO),
        P2PHD_PROGRESS_SECONDS="1",
        **env,
    )
    # a free port, not a fixed range: other checkouts' suites may run msrun on this machine too
    port = free_port()
    procs = [
        subprocess.Popen(
            _msrun_cmd(script, logs, port, nodes, node),
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in range(nodes)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    codes = [p.returncode for p in procs]
    return subprocess.CompletedProcess(procs[0].args, max(codes, key=abs), "".join(outs))


def _pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def _saved(prefix: Path, rank: int) -> list[str]:
    path = Path(f"{prefix}-{rank}.txt")
    return path.read_text().split() if path.exists() else []


def test_render_on_two_workers_fails_naming_the_rank_then_resumes_identical(
    work: Path, tmp_path: Path
) -> None:
    run, data = work / "labels", work / "test.h5"
    names = Dataset(data).names
    single = tmp_path / "single"
    assert run_verb(render.main, ["--run", str(run), str(data), "--out", str(single)]) == 0

    out, saved = tmp_path / "ranked", tmp_path / "saved"
    script = tmp_path / "render_hooked.py"
    script.write_text(RENDER_SCRIPT.format(repo=str(REPO), saved=str(saved)))
    args = [str(script), "--run", str(run), str(data), "--out", str(out)]

    # 1. rank 1 fails on its 3rd sample: the run fails and the console names rank 1
    p = msrun(args, tmp_path, tmp_path / "logs1", FAIL_AFTER="2")
    assert p.returncode != 0
    log1 = (tmp_path / "logs1" / "worker_1.log").read_text()
    assert "rank 1/2 failed: OSError: disk full (test)" in log1
    assert "rank 1/2 failed: OSError: disk full (test)" in p.stdout, p.stdout[-3000:]
    assert not (out / "render.h5").exists() and not (out / "index.html").exists()
    for r in (0, 1):  # each rank wrote only its own rows, r, r+2, ...
        mine = {f"{n}_synthesized.png" for n in names[r::2]}
        written = {f for f in _saved(saved, r) if f.endswith("_synthesized.png")}
        assert written <= mine, (r, written - mine)
    assert len([f for f in _saved(saved, 1) if "synth" in f]) == 2
    done = {n for n in names if (out / f"{n}_synthesized.png").exists()}
    assert 2 <= len(done) < len(names)
    kept = {n: (out / f"{n}_synthesized.png").stat().st_mtime_ns for n in done}

    # 2. the rerun renders only what is missing, then rank 0 writes the page and manifest
    for r in (0, 1):
        Path(f"{saved}-{r}.txt").unlink(missing_ok=True)
    p = msrun(args, tmp_path, tmp_path / "logs2")
    assert p.returncode == 0, p.stdout[-3000:]
    rerendered = {f.removesuffix("_synthesized.png") for r in (0, 1) for f in _saved(saved, r)}
    assert rerendered.isdisjoint(done) and rerendered | done >= set(names)
    assert {n: (out / f"{n}_synthesized.png").stat().st_mtime_ns for n in done} == kept
    # progress: whole lines per rank on the console, no carriage-return bars
    assert "\r" not in p.stdout and re.search(r"render rank 1/2: .*img", p.stdout)
    assert f"{out}\n" in (tmp_path / "logs2" / "worker_0.log").read_text()  # rank 0 prints it

    assert _pngs(out) == _pngs(single) and len(_pngs(out)) == 2 * len(names)
    assert (out / "index.html").read_bytes() == (single / "index.html").read_bytes()
    got, want = read_manifest(out / "render.h5"), read_manifest(single / "render.h5")
    assert got["rows"] == want["rows"] and got["attrs"]["complete"]
    assert not list(out.glob("render-shard-*"))


@pytest.fixture(scope="module")
def single_features(work: Path) -> Path:
    """The feature manifest of one process (the reference)."""
    out = work / "single-features.h5"
    assert (
        run_verb(
            precompute.main,
            ["--run", str(work / "feat"), str(work / "train.h5"), "--out", str(out)],
        )
        == 0
    )
    return out


def test_precompute_on_two_nodes_equals_one_process(
    work: Path, single_features: Path, tmp_path: Path
) -> None:
    run, data = work / "feat", work / "train.h5"
    single, out = single_features, tmp_path / "ranked.h5"
    cmd = [str(REPO / "bin" / "precompute"), "--run", str(run), str(data), "--out", str(out)]
    p = msrun(cmd, tmp_path, tmp_path / "logs", nodes=2)  # node 1 runs rank 1
    logs = {r: (tmp_path / "logs" / f"worker_{r}.log").read_text() for r in (0, 1)}
    assert p.returncode == 0, p.stdout[-3000:]
    assert re.search(r"precompute rank 0/2: .*4/4", logs[0]), logs[0][-2000:]
    assert re.search(r"precompute rank 1/2: .*4/4", logs[1]), logs[1][-2000:]
    assert f"{out}\n" in logs[0] and f"{out}\n" not in logs[1]
    assert not list(tmp_path.glob("ranked.shard-*"))  # merged, then removed
    got, want = FeatureManifest(out), FeatureManifest(single)
    assert got.names == want.names
    assert got.attrs["options"] == {**want.attrs["options"], "out": str(out)}
    for name in want.names:
        np.testing.assert_array_equal(got.map(name), want.map(name))
    g, w = got.rows(), want.rows()
    for col in w:  # the per-object table, row for row
        np.testing.assert_array_equal(g[col], w[col])
    np.testing.assert_array_equal(got.map_sizes, want.map_sizes)


def test_precompute_shard_and_merge_by_hand(
    work: Path, single_features: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    run, data = work / "feat", work / "train.h5"
    single, out = single_features, tmp_path / "f.h5"
    base = ["--run", str(run), str(data)]
    # shard 0/3 (rows 0, 3, 6) interrupted after its first sample, then resumed
    real_add = FeatureWriter.add

    def dying_add(self, i, fmap, rows):
        if i == 3:
            raise KeyboardInterrupt
        real_add(self, i, fmap, rows)

    monkeypatch.setattr(FeatureWriter, "add", dying_add)
    assert run_verb(precompute.main, [*base, "--out", str(out), "--shard", "0/3"]) == 130
    assert Path(f"{tmp_path / 'f.shard-0-of-3.h5'}.tmp").exists()
    monkeypatch.setattr(FeatureWriter, "add", real_add)
    capsys.readouterr()
    assert run_verb(precompute.main, [*base, "--out", str(out), "--shard", "0/3"]) == 0
    assert "resuming, 1 of 3 samples already written" in capsys.readouterr().err
    assert run_verb(precompute.main, [*base, "--out", str(out), "--shard", "1/3"]) == 0
    assert capsys.readouterr().out == f"{tmp_path / 'f.shard-1-of-3.h5'}\n"
    assert run_verb(precompute.main, [*base, "--out", str(out), "--merge"]) == 2  # 2 missing
    assert run_verb(precompute.main, [*base, "--out", str(out), "--shard", "2/3"]) == 0
    assert run_verb(precompute.main, [*base, "--out", str(out), "--merge"]) == 0
    got, want = FeatureManifest(out), FeatureManifest(single)
    for name in want.names:
        np.testing.assert_array_equal(got.map(name), want.map(name))
    for col, values in want.rows().items():
        np.testing.assert_array_equal(got.rows()[col], values)
    assert not list(tmp_path.glob("f.shard-*"))


def test_rank_zero_names_a_failed_or_silent_rank(tmp_path: Path) -> None:
    place = runtime.Place(rank=0, world=3)
    with ranks.reporting(tmp_path, place, "render"):
        ranks._write(ranks.status_path(tmp_path, 1), {"state": "done"})
        ranks._write(ranks.status_path(tmp_path, 2), {"state": "failed", "error": "OSError: x"})
        with pytest.raises(RuntimeError, match=r"rank 2/3 failed: OSError: x"):
            ranks.wait_for_ranks(tmp_path, place, lambda: False, lambda: "all", "render", 5)
        ranks.status_path(tmp_path, 2).unlink()  # rank 2 never wrote (killed before it began)
        with pytest.raises(RuntimeError, match=r"rank 2/3 gave no sign of life for 1 s"):
            ranks.wait_for_ranks(tmp_path, place, lambda: False, lambda: "all", "render", 1)
        ranks.wait_for_ranks(tmp_path, place, lambda: True, lambda: "all", "render", 1)
    assert ranks.read_status(tmp_path, 0)["state"] == "done"
    # a failing rank's error names it, and its status file says so for rank 0
    with pytest.raises(RuntimeError, match=r"^rank 1/3 failed: ValueError: bad"):
        with ranks.reporting(tmp_path, runtime.Place(rank=1, world=3), "render"):
            raise ValueError("bad")
    assert ranks.read_status(tmp_path, 1)["error"] == "ValueError: bad"


def test_msrun_environment_gives_rank_world_and_device(monkeypatch) -> None:
    env = {"MS_ROLE": "MS_WORKER", "MS_WORKER_NUM": "4", "MS_NODE_ID": "3", "DEVICE_ID": "1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert runtime.place() == runtime.Place(rank=3, world=4, local_rank=1)
    monkeypatch.setenv("MS_ROLE", "MS_SCHED")
    assert runtime.place().scheduler
    monkeypatch.setenv("MS_ROLE", "MS_WORKER")
    monkeypatch.delenv("MS_NODE_ID")  # several nodes without --node_rank
    with pytest.raises(Exception, match="--node_rank"):
        runtime.place()


def _make(*args: str) -> str:
    r = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "-n", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_make_plans_msrun_on_one_node_and_two(tmp_path: Path) -> None:
    data = tmp_path / "mkdev"
    data.mkdir()
    common = ["RUN=zz_dev", "MODE=512p-feat", f"DATA={data}"]
    one = _make("render-test", *common)
    assert "msrun --" not in one
    plan = _make("render-test", "NPROC=2", *common)
    for verb in ("train", "precompute", "render"):
        line = next(ln for ln in plan.splitlines() if f"bin/{verb} " in ln)
        assert "msrun --worker_num=2 --local_worker_num=2 --node_rank=0" in line, line
        assert "--master_addr=127.0.0.1 --master_port=8118" in line and "--join=True" in line
    render_line = next(ln for ln in plan.splitlines() if "bin/render " in ln)
    assert "--log_dir=outputs/zz_dev_512p_feat/render-test-msrun-logs" in render_line
    second = _make(
        "render-test", "NPROC=4", "NODES=2", "NODE_RANK=1", "MASTER_ADDR=10.0.0.1", *common
    )
    for verb in ("train", "precompute", "render"):
        line = next(ln for ln in second.splitlines() if f"bin/{verb} " in ln)
        assert (
            "msrun --worker_num=8 --local_worker_num=4 --node_rank=1 --master_addr=10.0.0.1" in line
        ), line

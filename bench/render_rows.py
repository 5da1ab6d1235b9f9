"""bench_vs_nvidia's render rows: p2phd's bin/render against NVIDIA's inference, per frame.

For each row, NVIDIA's own code makes random weights of NVIDIA's G with NVIDIA's options
(bench/nvidia_side.py weights), bin/import turns them into a p2phd run, bin/prepare reads the
Cityscapes sample's test label maps at the row's size, and then, interleaved, one fresh process
per line: NVIDIA's inference in fp32 and under bf16 autocast (encode + G per frame, median of the
timed frames after one warm-up) and bin/render over 1 + RUNS frames (``--max_samples``), by its
default path and by each engine. Render's own log gives the steady seconds per frame (after the
first, which includes graph compile or export); its whole render loop counts (reading the
manifest, G, PNG writing overlapped), so p2phd's figure is, if anything, on the high side against
NVIDIA's G-only one.

Peak memory is the largest sum of RSS over the process and all its children, sampled every
50 ms (and never below the largest single process's ru_maxrss), measured the same way for both
sides. Heavy processes take an exclusive flock on --lock while they run (waiting for it is not
timed), so two large jobs never share the machine.
"""

import fcntl
import os
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = ROOT / "bin"
FRAMES_PER_SPLIT = 500  # Cityscapes val: the whole-split figure


@dataclass
class RenderRow:
    """A shape: NVIDIA's name and options for its G, p2phd's render size (label map width)."""

    nv_name: str
    nv_options: str
    netg: str
    ngf: int
    width: int
    bf16: bool  # also the bf16 lines (NVIDIA autocast, OpenVINO bf16)


ROWS = {
    # label2city_512p: global G, ngf 64, scale_width 1024 -> 512x1024
    "render-g64-512x1024": RenderRow(
        "label2city_512p", "--netG global --ngf 64", "global", 64, 1024, False,
    ),
    # label2city_1024p (NVIDIA's scripts/train_1024p_24G.sh): local G, ngf 32, full 2048x1024
    "render-1024p-2048x1024": RenderRow(
        "label2city_1024p",
        "--netG local --ngf 32 --num_D 3 --niter_fix_global 10 --resize_or_crop none "
        "--loadSize 2048",
        "local", 32, 2048, True,
    ),
}  # fmt: skip


@dataclass
class Result:
    """One process: steady s/frame (wall and CPU), start-up + first frame s, peak tree GB."""

    label: str
    s_frame: float | None = None
    first_s: float | None = None
    wall_s: float | None = None
    cpu_s: float | None = None
    cpu_frame: float | None = None  # process-tree CPU s per frame (all threads)
    peak_gb: float | None = None
    error: str = ""
    notes: list[str] = field(default_factory=list)


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _tree(root: int) -> tuple[int, int, float]:
    """Over root and its live descendants: (sum of VmRSS, largest VmHWM, bytes; CPU s)."""
    rss = hwm = 0
    cpu, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            for task in Path(f"/proc/{pid}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:  # gone meanwhile
            continue
        kb = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M))
        rss += int(kb.get("VmRSS", 0)) * 1024
        hwm = max(hwm, int(kb.get("VmHWM", 0)) * 1024)  # a process's own peak: no spike missed
        cpu += (int(stat[11]) + int(stat[12])) / _TICK  # utime + stime, all its threads
    return rss, hwm, cpu


@contextmanager
def heavy(lock: str):
    """Hold an exclusive flock on `lock` (flock(1)'s kind) while a large process runs."""
    if not lock:
        yield
        return
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_measured(
    cmd: list[str], env: dict | None = None, lock: str = "", watch: Path | None = None
) -> dict:
    """Run cmd to the end: wall and CPU s, peak RSS of its process tree, its output; with
    `watch`, (wall s, tree CPU s, count) each time the count of *_synthesized.png there grows."""
    return _run_once(cmd, env, lock, watch)


def _run_once(cmd: list[str], env: dict | None, lock: str, watch: Path | None) -> dict:
    with heavy(lock):
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        peak, marks, done = [0], [], threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                rss, hwm, cpu = _tree(proc.pid)
                peak[0] = max(peak[0], rss, hwm)
                n = len(list(watch.glob("*_synthesized.png"))) if watch and watch.is_dir() else 0
                if n > (marks[-1][2] if marks else 0):
                    marks.append((time.perf_counter() - t0, cpu, n))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, err = proc.communicate()  # the pipes never fill while we wait
        done.set()
        sampler.join()
        wall = time.perf_counter() - t0
    return {
        "rc": proc.returncode,
        "wall_s": wall,
        "cpu_s": _children_cpu(),
        "peak_gb": peak[0] / 1e9,
        "marks": marks,
        "stdout": out,
        "stderr": err,
    }


_LAST = [0.0]  # RUSAGE_CHILDREN's CPU total before the last child


def _children_cpu() -> float:
    """CPU s of the child just reaped (RUSAGE_CHILDREN sums all reaped children)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = r.ru_utime + r.ru_stime
    last, _LAST[0] = _LAST[0], cpu
    return cpu - last


def steady_from_marks(marks: list[tuple[float, float, int]]) -> tuple[float, float] | None:
    """(wall, CPU) s per frame between the first and the last PNG seen, or None (< 2 marks)."""
    if len(marks) < 2 or marks[-1][2] == marks[0][2]:
        return None
    (t0, c0, n0), (t1, c1, n1) = marks[0], marks[-1]
    return (t1 - t0) / (n1 - n0), (c1 - c0) / (n1 - n0)


_FIRST = re.compile(r"first batch of (\d+) in ([\d.]+) s")
_STEADY = re.compile(r"then ([\d.]+) s/image")
_IMAGES = re.compile(r"render: (\d+) images in")


def _error(r: dict) -> str:
    """The end of a failed process's stderr: the error's message (some span several lines)."""
    tail = [ln.strip() for ln in r["stderr"].strip().splitlines()[-4:] if ln.strip()]
    return " / ".join(tail)[-400:] or f"exit {r['rc']}"


def render_result(label: str, r: dict) -> Result:
    """A Result from one bin/render process (its log names the first-batch and steady times)."""
    res = Result(label, wall_s=r["wall_s"], cpu_s=r["cpu_s"], peak_gb=r["peak_gb"])
    if r["rc"]:
        res.error = _error(r)
        return res
    first, steady, images = (x.search(r["stderr"]) for x in (_FIRST, _STEADY, _IMAGES))
    if first and images and first[1] == images[1]:  # one frame: all of it is the first
        res.first_s = r["wall_s"]
        return res
    if not (first and steady and images):
        res.error = "no first/steady times in render's log"
        return res
    res.s_frame = float(steady[1])
    from_pngs = steady_from_marks(r["marks"])
    if from_pngs:  # CPU per frame: the process tree's CPU between the first and last PNG
        res.cpu_frame = from_pngs[1]
    # what a user waits for the first frame: start-up (imports, weights, an export) + frame 1
    res.first_s = r["wall_s"] - res.s_frame * (int(images[1]) - int(first[1]))
    res.notes += [ln.strip()[:140] for ln in r["stderr"].splitlines() if "engine" in ln.lower()]
    return res


def json_result(label: str, r: dict, runs: int) -> Result:
    """A Result from a process printing measure()'s JSON line (median wall ms of `runs`)."""
    import json

    res = Result(label, wall_s=r["wall_s"], cpu_s=r["cpu_s"], peak_gb=r["peak_gb"])
    if r["rc"]:
        res.error = _error(r)
        return res
    j = json.loads(r["stdout"].strip().splitlines()[-1])
    res.s_frame, res.cpu_frame = j["wall_ms"] / 1000, j["cpu_ms"] / 1000
    res.first_s = r["wall_s"] - res.s_frame * runs
    return res


def _env() -> dict:
    """p2phd's processes: this checkout first on the path."""
    return dict(os.environ, PYTHONPATH=str(ROOT))


def sample_maps(sample: Path) -> list[str]:
    """LABEL:INST pairs of the sample's test split, sorted by name."""
    labels = sorted((sample / "test_label").glob("*_gtFine_labelIds.png"))
    return [
        f"{lab}:{sample / 'test_inst' / lab.name.replace('labelIds', 'instanceIds')}"
        for lab in labels
    ]


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def table(name: str, results: list[Result], runs: int) -> str:
    """The row's markdown table: every line's ratios to the first (NVIDIA fp32)."""
    base = results[0]
    lines = [
        f"{name}: {runs} timed frames after 1 warm-up per process; ratios to {base.label}",
        "",
        "| path | s/frame | x NVIDIA | CPU s/frame | x NVIDIA | start-up + 1st frame s "
        f"| peak GB | x NVIDIA | min for {FRAMES_PER_SPLIT} frames |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if r.error:
            lines.append(f"| {r.label} | failed: {r.error} | | | | | | | |")
            continue
        split = fmt(r.s_frame * FRAMES_PER_SPLIT / 60, 1) if r.s_frame else "-"
        lines.append(
            f"| {r.label} | {fmt(r.s_frame)} | {ratio(r.s_frame, base.s_frame)} | "
            f"{fmt(r.cpu_frame)} | {ratio(r.cpu_frame, base.cpu_frame)} | {fmt(r.first_s, 1)} | "
            f"{fmt(r.peak_gb)} | {ratio(r.peak_gb, base.peak_gb)} | {split} |"
        )
    notes = [f"- {r.label}: {n}" for r in results for n in r.notes]
    return "\n".join(lines + ([""] + notes if notes else []))


@dataclass
class Context:
    """What every render row needs: inputs, the work folder, the frame count and the lock."""

    nvidia: str
    torch_python: str
    sample: Path
    work: Path
    runs: int
    lock: str


def _p2phd(ctx: Context, *args: str, lock: bool = False) -> dict:
    cmd = [sys.executable, "-m", *args]
    return run_measured(cmd, _env(), ctx.lock if lock else "")


def _checked(r: dict, what: str) -> str:
    if r["rc"]:
        raise RuntimeError(f"{what} failed: {_error(r)}")
    return r["stdout"].strip().splitlines()[-1]


def prepare_row(ctx: Context, name: str) -> tuple[Path, Path]:
    """NVIDIA-shaped random weights -> bin/import -> a run; the test maps at the row's size."""
    row = ROWS[name]
    nv = ctx.work / f"{name}-nvidia"
    side = [ctx.torch_python, str(ROOT / "bench" / "nvidia_side.py"), ctx.nvidia, "weights"]
    _checked(run_measured([*side, row.nv_name, row.nv_options, str(nv)]), "NVIDIA weights")
    run = _checked(
        _p2phd(ctx, "p2phd.import", str(nv / row.nv_name), "--checkpoints_dir",
               str(ctx.work / "runs"), "--name", name, lock=True),
        "bin/import",
    )  # fmt: skip
    (nv / row.nv_name / "latest_net_G.pth").rename(nv / "G.pth")  # NVIDIA's side reads it
    man = ctx.work / f"test-{row.width}.h5"
    if not man.is_file():
        _checked(
            _p2phd(ctx, "p2phd.prepare", "--dataroot", str(ctx.sample), "--phase", "test",
                   "--load_size", str(row.width), "--jobs", "1", "--out", str(man)),
            "bin/prepare",
        )  # fmt: skip
    return Path(run), man


def _nvidia_line(ctx: Context, name: str, run: Path, precision: str) -> Result:
    row = ROWS[name]
    pth = ctx.work / f"{name}-nvidia" / "G.pth"  # the weights bin/import read
    cmd = [ctx.torch_python, str(ROOT / "bench" / "nvidia_side.py"), ctx.nvidia, "frames",
           str(pth), row.netg, str(row.ngf), str(row.width), precision, str(ctx.runs),
           *sample_maps(ctx.sample)[: ctx.runs + 1]]  # fmt: skip
    label = f"NVIDIA {precision}" + (" autocast" if precision == "bf16" else "")
    return json_result(label, run_measured(cmd, lock=ctx.lock), ctx.runs)


def _render(ctx: Context, label: str, source: list[str], man: Path, frames: int) -> Result:
    out = ctx.work / "out"
    cmd = [sys.executable, "-m", "p2phd.render", *source, str(man), "--out", str(out),
           "--overwrite", "--max_samples", str(frames)]  # fmt: skip
    r = run_measured(cmd, _env(), ctx.lock, watch=out)
    for png in out.glob("*.png"):
        png.unlink()
    return render_result(label, r)


Line = tuple[str, list[str]]  # label, render's source + options


def p2phd_lines(name: str, run: Path) -> list[Line]:
    """p2phd's lines, in the order they run: the default path, then each engine explicitly."""
    row, src = ROWS[name], ["--run", str(run)]
    lines: list[Line] = [("p2phd default (render --run)", src)]
    if row.bf16:
        lines.append(("p2phd default --precision bf16", [*src, "--precision", "bf16"]))
    for engine in ("mindspore", "onnxruntime", "openvino"):
        lines.append((f"p2phd --engine {engine}", [*src, "--engine", engine]))
    if row.bf16:
        bf16 = [*src, "--engine", "openvino", "--precision", "bf16"]
        lines.append(("p2phd --engine openvino --precision bf16", bf16))
    return lines


def measure_row(ctx: Context, name: str) -> list[Result]:
    """Every line of one render row, interleaved: NVIDIA fp32, p2phd default, NVIDIA bf16, ..."""
    run, man = prepare_row(ctx, name)
    frames = ctx.runs + 1
    results = [_nvidia_line(ctx, name, run, "fp32")]
    print(f"  {table_line(results[-1])}", flush=True)
    lines = p2phd_lines(name, run)
    # auto's first use exports G to the run's engine cache: start-up and memory of that run
    first = _render(ctx, "p2phd default, first use (exports; 1 frame)", lines[0][1], man, 1)
    results.append(first)
    print(f"  {table_line(first)}", flush=True)
    for i, (label, source) in enumerate(lines):
        results.append(_render(ctx, label, source, man, frames))
        print(f"  {table_line(results[-1])}", flush=True)
        if i == 0 and ROWS[name].bf16:
            results.append(_nvidia_line(ctx, name, run, "bf16"))
            print(f"  {table_line(results[-1])}", flush=True)
    return results


def table_line(r: Result) -> str:
    """A progress line while the row runs."""
    if r.error:
        return f"{r.label}: failed: {r.error}"
    return (
        f"{r.label}: {fmt(r.s_frame)} s/frame, CPU {fmt(r.cpu_frame)} s/frame, "
        f"first {fmt(r.first_s, 1)} s, "
        f"peak {fmt(r.peak_gb)} GB, load {os.getloadavg()[0]:.1f}"
    )

"""Runtime: the oneDNN ISA fix is in effect in a fresh process; setup(), seeds, versions."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter: import the runtime, set MindSpore up, run one small convolution.
PROBE = """
import os
import p2phd.core.runtime as rt
print("ISA=" + os.environ.get("ONEDNN_MAX_CPU_ISA", ""), flush=True)
rt.setup("CPU", pynative=True)
import numpy as np, mindspore as ms
from mindspore import nn
conv = nn.Conv2d(8, 8, 3, pad_mode="pad", padding=1, has_bias=True)
conv(ms.Tensor(np.ones((1, 8, 16, 16), np.float32))).asnumpy()
"""


def _probe(**env: str) -> tuple[str, str, list[str]]:
    """(ONEDNN_MAX_CPU_ISA seen by the process, the ISA oneDNN says it uses, the convolution
    implementations it executed)."""
    full = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    full.update(ONEDNN_VERBOSE="1", PYTHONPATH=str(REPO), **env)
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        env=full,
        cwd="/",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    isa = next(line.removeprefix("ISA=") for line in lines if line.startswith("ISA="))
    # onednn_verbose,v1,info,cpu,isa:<name>: the ISA in effect, i.e. the CPU's best capped at
    # ONEDNN_MAX_CPU_ISA ("Intel AVX2", "Intel SSE4.1", "Intel AVX-512 with ...")
    (effective,) = [ln.split("isa:", 1)[1] for ln in lines if ",info,cpu,isa:" in ln]
    # onednn_verbose,v1,primitive,exec,cpu,convolution,<implementation>,<prop_kind>,...
    impls = [line.split(",")[6] for line in lines if ",exec,cpu,convolution," in line]
    return isa, effective, impls


def test_fresh_process_gets_avx2_gemm_convolutions() -> None:
    isa, effective, impls = _probe()
    assert isa == "AVX2"
    # capped at AVX2: on an AVX-512 CPU oneDNN would otherwise pick its slow reference convolution
    assert not any(word in effective for word in ("AVX-512", "AMX", "AVX10")), effective
    assert impls and all("gemm:jit" in impl for impl in impls), impls
    assert not any("ref" in impl for impl in impls), impls


def test_user_value_is_kept() -> None:
    # SSE41 is below every x86-64 CPU MindSpore runs on, so oneDNN reports it whatever the CPU:
    # seeing it (and not AVX2, p2phd's default) shows the user's value reached oneDNN.
    isa, effective, impls = _probe(ONEDNN_MAX_CPU_ISA="SSE41")
    assert isa == "SSE41"
    assert effective == "Intel SSE4.1", effective
    assert impls, "no convolution ran"


def test_setup_seeds_and_versions() -> None:
    from p2phd.core import runtime

    rt = runtime.setup("CPU", seed=3)
    assert (rt.rank, rt.world_size, rt.is_main, rt.distributed, rt.graph_mode) == (
        0,
        1,
        True,
        False,
        True,
    )
    a = np.random.rand(3)
    runtime.setup("CPU", seed=3)
    np.testing.assert_array_equal(a, np.random.rand(3))
    v = runtime.versions()
    assert v["p2phd"] and v["mindspore"].startswith("2.") and v["numpy"].startswith("1.")
    assert not runtime.under_msrun()

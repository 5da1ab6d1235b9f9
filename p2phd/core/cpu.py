"""What this CPU can do, for choosing an inference engine and precision (render, edit, bench).

``flags()`` reads the ISA flags of /proc/cpuinfo (Linux's names: ``avx2``, ``avx512f``,
``avx512_bf16``, ``amx_bf16``...). ``P2PHD_CPU_FLAGS`` replaces them when set (space- or
comma-separated; empty = a CPU without any), so the choices made on other CPUs can be tried and
tested on this one. ``describe()`` is the one line benchmarks and logs print: model, the flags
that matter here, core count.

Imports nothing of p2phd (``core`` is the base) and no MindSpore.
"""

import os
import re
from functools import cache
from pathlib import Path

ENV = "P2PHD_CPU_FLAGS"
CPUINFO = Path("/proc/cpuinfo")
# the flags that decide engine speed and bf16 support, in the order describe() names them
RELEVANT = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
# either gives bf16 arithmetic that OpenVINO's CPU plugin uses (AMX tiles or AVX-512 dot
# products); without both, OpenVINO would emulate bf16 slower than fp32
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first processor in /proc/cpuinfo; ('', {}) elsewhere."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return "", frozenset()
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    return (model[1].strip() if model else ""), frozenset(flags[1].split() if flags else ())


def flags() -> frozenset[str]:
    """The CPU's ISA flags (lower case), or those of ``P2PHD_CPU_FLAGS`` when it is set."""
    given = os.environ.get(ENV)
    if given is not None:
        return frozenset(w.lower() for w in re.split(r"[\s,]+", given) if w)
    return _cpuinfo()[1]


def has(flag: str) -> bool:
    return flag in flags()


def isa_class() -> str:
    """``amx``, ``avx512``, ``avx2`` or ``other``: the widest vector unit (engine choice)."""
    f = flags()
    if "amx_tile" in f or "amx_bf16" in f:
        return "amx"
    if "avx512f" in f:
        return "avx512"
    return "avx2" if "avx2" in f else "other"


def bf16_missing() -> str:
    """'' when the CPU computes bf16 natively, else a phrase naming what it lacks."""
    if any(has(f) for f in BF16_FLAGS):
        return ""
    source = ENV if os.environ.get(ENV) is not None else "/proc/cpuinfo flags"
    return f"this CPU has neither {' nor '.join(BF16_FLAGS)} ({source})"


def describe() -> str:
    """e.g. 'Intel(R) Xeon(R) Processor; avx2 avx512f avx512_bf16 amx_bf16; 2 cores'."""
    model = _cpuinfo()[0] or "unknown CPU"
    present = [f for f in RELEVANT if has(f)]
    override = f" ({ENV})" if os.environ.get(ENV) is not None else ""
    return f"{model}; {' '.join(present) or 'no AVX2'}{override}; {os.cpu_count()} cores"

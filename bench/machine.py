"""Where a benchmark ran: the one header line every bench/*.py table starts with.

    # machine: <CPU model> (family 6 model 207 stepping 2), 2 cores; ISA: avx2 avx512f
    #   avx512_bf16 amx_bf16 amx_tile (missing: -); 2026-12-06 21:50 UTC, load 1.2

The ISA flags listed are the ones that decide which kernels the engines use for the networks
here: AVX2 (every engine's fp32 baseline), AVX-512F (wider fp32 kernels), AVX512_BF16 and
AMX-BF16/AMX-TILE (bf16 inference: OpenVINO's bf16 precision, PyTorch's bf16 autocast).
Linux reads them from /proc/cpuinfo; elsewhere the model comes from the platform module and the
flags are reported as unknown. Stdlib only, and it must not import p2phd: the torch-side scripts
import it too, and ``import p2phd`` sets ONEDNN_MAX_CPU_ISA=AVX2 in the process, which the
children (NVIDIA's PyTorch among them) would inherit.
"""

import os
import platform
import time
from pathlib import Path

# /proc/cpuinfo spellings of the flags that matter for these benchmarks, in print order
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
CPUINFO = Path("/proc/cpuinfo")


def _first_cpu() -> dict[str, str]:
    """The fields of the first processor block of /proc/cpuinfo ({} where there is none)."""
    if not CPUINFO.is_file():
        return {}
    fields: dict[str, str] = {}
    for line in CPUINFO.read_text(errors="replace").splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # what this process may use (containers, taskset)
    except AttributeError:
        return os.cpu_count() or 0


def cpu_info() -> dict:
    """CPU model, family/model/stepping, usable cores and the FLAGS present (None: unknown)."""
    f = _first_cpu()
    model = f.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    have = set(f.get("flags", "").split())
    return {
        "model": model,
        # KVM guests often show only "Intel(R) Xeon(R) Processor": the numbers name the part
        "ident": (
            f"family {f['cpu family']} model {f['model']} stepping {f.get('stepping', '?')}"
            if "cpu family" in f and "model" in f
            else ""
        ),
        "cores": _cores(),
        "flags": {flag: (flag in have) if have else None for flag in FLAGS},
    }


def header(extra: str = "") -> str:
    """One line naming CPU, ISA flags, cores and the date (UTC), to print above a table."""
    c = cpu_info()
    known = [k for k, v in c["flags"].items() if v is not None]
    if known:
        isa = " ".join(k for k in FLAGS if c["flags"][k])
        missing = " ".join(k for k in FLAGS if c["flags"][k] is False) or "-"
        isa = f"ISA: {isa or 'none of ' + ' '.join(FLAGS)} (missing: {missing})"
    else:
        isa = "ISA flags: unknown (no /proc/cpuinfo)"
    ident = f" ({c['ident']})" if c["ident"] else ""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    # p2phd's engine choice reads P2PHD_CPU_FLAGS instead of /proc/cpuinfo when it is set
    told = os.environ.get("P2PHD_CPU_FLAGS")
    told = (
        f"; P2PHD_CPU_FLAGS={told!r} (what p2phd's engine choice sees)" if told is not None else ""
    )
    tail = told + (f"; {extra}" if extra else "")
    return f"# machine: {c['model']}{ident}, {c['cores']} cores; {isa}; {stamp}{load}{tail}"


if __name__ == "__main__":
    print(header())

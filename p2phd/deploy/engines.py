"""Which engine runs the generator, and at which precision: one decision for bin/render and
bin/edit.

``choose(engine, precision, device_target, netG, size, why_not_onnx)`` -> ``Choice`` (engine,
precision, reason) or a UsageError (exit 2, one line):

- ``--engine mindspore|onnxruntime|openvino`` is taken as given; ``auto`` (the default) is
  MindSpore on Ascend/GPU (the device path), MindSpore where the ONNX graph cannot say what the
  run needs (``why_not_onnx``: the encoder of --use_encoded_image, --amp), and on the CPU the
  ONNX engine of ``RULE`` below for the CPU's widest vector unit (``size`` and ``netG`` are
  named in the reason: the measurements behind the rule covered 256x512 to 1024x2048);
  onnxruntime when ``--providers`` asks for more than its CPU provider.
- ``--precision bf16`` runs OpenVINO with bf16 inference precision, on CPUs with AMX-BF16 or
  AVX512_BF16 only (``core.cpu``; exit 2 naming the missing flag elsewhere, and for an engine
  that is not auto or openvino).

The ONNX engines compute the same function as MindSpore's graph and round differently: pixels
stay within one level of ``--engine mindspore`` (test_engines). MindSpore's CPU path is kept as
the reference and the device path.
"""

import importlib.util
from dataclasses import dataclass

from p2phd.core import cpu, extras
from p2phd.core.cli import UsageError

AUTO = "auto"
MINDSPORE, ONNXRUNTIME, OPENVINO = "mindspore", "onnxruntime", "openvino"
ENGINES = (AUTO, MINDSPORE, ONNXRUNTIME, OPENVINO)
ONNX_ENGINES = (ONNXRUNTIME, OPENVINO)
FP32, BF16 = "fp32", "bf16"
PRECISIONS = (FP32, BF16)

# auto's fp32 engine on the CPU, by its widest vector unit (core.cpu.isa_class). Measured in one
# process per shape, interleaved, random weights, batch 1, the same ONNX export in both ONNX
# engines (OpenVINO at the CPU's full ISA: onnx_run.openvino_isa), median s/frame (CPU s) on an
# Intel Xeon (Sapphire Rapids: avx2 avx512f avx512_bf16 amx_bf16), 2 cores, 2026-12-06, a busy
# machine (ratios, not absolute times):
#   global G ngf 64, 256x512:         onnxruntime 2.19 (2.19)   OpenVINO 1.92 (1.88)
#   global G ngf 64, 512x1024:        MindSpore 17.3 (16.3)  onnxruntime 10.5 (9.87)
#                                     OpenVINO 8.18 (7.60)  [OpenVINO bf16 1.80 (1.52)]
#   local G (ngf 32, global 64), 1024x2048: MindSpore 19.9 (32.0)  onnxruntime 11.0 (18.4)
#                                     OpenVINO 8.84 (15.2)  [OpenVINO bf16 1.96 (3.54)]
# OpenVINO led at every size, so the size does not enter the rule. On the AVX2-only AMD EPYC of
# earlier development OpenVINO also led onnxruntime (bench-vs-nvidia rows of that machine).
# OpenVINO's CPU plugin is for x86 (and ARM, unmeasured): elsewhere onnxruntime.
RULE: dict[str, str] = {"amx": OPENVINO, "avx512": OPENVINO, "avx2": OPENVINO, "other": ONNXRUNTIME}


@dataclass(frozen=True)
class Choice:
    """What runs G: ``engine`` (mindspore, onnxruntime, openvino), ``precision`` (fp32, bf16),
    ``reason`` (why, for the log line on stderr)."""

    engine: str
    precision: str = FP32
    reason: str = ""

    @property
    def onnx(self) -> bool:
        return self.engine in ONNX_ENGINES

    def describe(self) -> str:
        bf16 = " (bf16)" if self.precision == BF16 else ""
        return f"{self.engine}{bf16}: {self.reason}" if self.reason else f"{self.engine}{bf16}"


def installed(engine: str) -> bool:
    """Whether the packages an engine needs are importable (the ONNX ones are optional extras:
    the export needs ``onnx``, running it ``onnxruntime`` or ``openvino``)."""
    if engine == MINDSPORE:
        return True
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", engine))


def _require(engine: str) -> None:
    """Exit 2 naming the extra that installs ``engine`` (core.extras: the one home of extras)."""
    if not installed(engine):
        raise extras.refusal(extras.ENGINE_EXTRA[engine], f"--engine {engine}", ("onnx", engine))


def check_precision(precision: str, engine: str, device_target: str = "CPU") -> None:
    """bf16 needs OpenVINO (auto picks it) on a CPU that computes bf16 (UsageError otherwise)."""
    if precision == FP32:
        return
    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision}")
    if engine not in (AUTO, OPENVINO):
        raise UsageError(f"--precision bf16 runs on openvino; --engine {engine} computes in fp32")
    if device_target != "CPU":
        raise UsageError(f"--precision bf16 is a CPU path; on {device_target} use --amp")
    missing = cpu.bf16_missing()
    if missing:
        raise UsageError(f"--precision bf16: {missing}; render in fp32 (the default)")


def choose(
    engine: str,
    precision: str,
    device_target: str,
    netG: str,
    size: tuple[int, int],
    why_not_onnx: str = "",
    providers: str = "CPU",
) -> Choice:
    """The engine and precision that render (see module doc); UsageError for impossible asks."""
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {engine}")
    check_precision(precision, engine, device_target)
    if why_not_onnx and (engine in ONNX_ENGINES or precision == BF16):
        what = f"--engine {engine}" if engine != AUTO else "--precision bf16"
        raise UsageError(f"{what} runs an ONNX export, which has no {why_not_onnx}")
    if engine != AUTO:
        _require(engine)
        return Choice(engine, precision, "--engine")
    if precision == BF16:
        _require(OPENVINO)
        return Choice(OPENVINO, BF16, "--precision bf16 runs on OpenVINO")
    if device_target != "CPU":
        return Choice(MINDSPORE, FP32, f"MindSpore runs on the {device_target} device")
    if why_not_onnx:
        return Choice(MINDSPORE, FP32, f"the ONNX export has no {why_not_onnx}")
    if providers.strip().upper() != "CPU":  # execution providers are onnxruntime's
        _require(ONNXRUNTIME)
        return Choice(ONNXRUNTIME, FP32, f"--providers {providers}")
    isa = cpu.isa_class()
    h, w = size
    best = RULE[isa]
    usable = [e for e in (best, *ONNX_ENGINES) if installed(e)]
    if not usable:  # a base install without the onnx extras: the reference engine
        return Choice(MINDSPORE, FP32, "no ONNX engine installed (pip install 'p2phd[onnx]')")
    why = f"fastest measured on {isa} CPUs ({netG} G, {h}x{w})"
    return Choice(usable[0], FP32, why if usable[0] == best else f"{best} not installed")

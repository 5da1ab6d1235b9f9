"""Which engine runs the generator, and at which precision: one decision for bin/render and
bin/edit.

``choose(engine, precision, device_target, netG, size, why_not_onnx)`` -> ``Choice`` (engine,
precision, reason) or a UsageError (exit 2, one line):

- ``--engine mindspore|onnxruntime|openvino`` is taken as given; ``auto`` (the default) is
  MindSpore on Ascend/GPU (the device path), MindSpore where the ONNX graph cannot say what the
  run needs (``why_not_onnx``: the encoder of --use_encoded_image, --amp), and on the CPU the
  ONNX engine of ``RULE`` below for the CPU's widest vector unit and the size.
- ``--precision bf16`` runs OpenVINO with bf16 inference precision, on CPUs with AMX-BF16 or
  AVX512_BF16 only (``core.cpu``; exit 2 naming the missing flag elsewhere, and for an engine
  that is not auto or openvino).

The ONNX engines compute the same function as MindSpore's graph and round differently: pixels
stay within one level of ``--engine mindspore`` (test_engines). MindSpore's CPU path is kept as
the reference and the device path.
"""

from dataclasses import dataclass

from p2phd.core import cpu
from p2phd.core.cli import UsageError

AUTO = "auto"
MINDSPORE, ONNXRUNTIME, OPENVINO = "mindspore", "onnxruntime", "openvino"
ENGINES = (AUTO, MINDSPORE, ONNXRUNTIME, OPENVINO)
ONNX_ENGINES = (ONNXRUNTIME, OPENVINO)
FP32, BF16 = "fp32", "bf16"
PRECISIONS = (FP32, BF16)

# auto's fp32 engine on the CPU, by the widest vector unit (core.cpu.isa_class) and the pixels
# of one G input (H*W). Measured (interleaved, s/frame, random weights, batch 1; the same ONNX
# export in both engines, OpenVINO with its full ISA: onnx_run.openvino_isa) on an Intel Xeon
# (Sapphire Rapids: avx2 avx512f avx512_bf16 amx_bf16), 2 cores, 2026-12-06:
#   512p global G, ngf 64, 512x1024:          MindSpore ?  onnxruntime ?  OpenVINO ?
#   1024p local G (global ngf 64), 1024x2048: MindSpore ?  onnxruntime ?  OpenVINO ?
# On an AVX2-only AMD EPYC OpenVINO led onnxruntime at both sizes (bench-vs-nvidia's earlier
# rows; docs/render-engines.md).
LARGE = 1024 * 2048  # from this many pixels per G input the large-size column applies
RULE: dict[str, tuple[str, str]] = {  # isa class -> (engine below LARGE, engine from LARGE)
    "amx": (ONNXRUNTIME, OPENVINO),
    "avx512": (ONNXRUNTIME, OPENVINO),
    "avx2": (OPENVINO, OPENVINO),
    "other": (ONNXRUNTIME, ONNXRUNTIME),  # OpenVINO's CPU plugin is x86/ARM only
}


@dataclass(frozen=True)
class Choice:
    """What runs G: ``engine`` (mindspore, onnxruntime, openvino), ``precision`` (fp32, bf16),
    ``reason`` (why, for the log line and render-settings.json)."""

    engine: str
    precision: str = FP32
    reason: str = ""

    @property
    def onnx(self) -> bool:
        return self.engine in ONNX_ENGINES

    def describe(self) -> str:
        bf16 = " (bf16)" if self.precision == BF16 else ""
        return f"{self.engine}{bf16}: {self.reason}" if self.reason else f"{self.engine}{bf16}"


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
) -> Choice:
    """The engine and precision that render (see module doc); UsageError for impossible asks."""
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {engine}")
    check_precision(precision, engine, device_target)
    if why_not_onnx and (engine in ONNX_ENGINES or precision == BF16):
        what = f"--engine {engine}" if engine != AUTO else "--precision bf16"
        raise UsageError(f"{what} runs an ONNX export, which has no {why_not_onnx}")
    if engine != AUTO:
        return Choice(engine, precision, "--engine")
    if precision == BF16:
        return Choice(OPENVINO, BF16, "--precision bf16 runs on OpenVINO")
    if device_target != "CPU":
        return Choice(MINDSPORE, FP32, f"MindSpore runs on the {device_target} device")
    if why_not_onnx:
        return Choice(MINDSPORE, FP32, f"the ONNX export has no {why_not_onnx}")
    isa = cpu.isa_class()
    large = size[0] * size[1] >= LARGE
    name = RULE[isa][large]
    h, w = size
    return Choice(name, FP32, f"fastest measured for {isa} CPUs at {h}x{w} ({netG} G)")

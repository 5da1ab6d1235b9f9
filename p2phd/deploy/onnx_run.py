"""An exported ONNX file as render's generator, through onnxruntime or OpenVINO (no MindSpore).

- ``providers(spec)``: ``--providers`` words (``CPU``, ``CUDA``, ``TensorRT``, ``OpenVINO``,
  ``DirectML``... or full ``XExecutionProvider`` names, comma-separated, in priority order) ->
  onnxruntime provider names; a provider this onnxruntime build lacks is a UsageError naming it
  and what is available (one line, exit 2).
- ``session_options(threads)``: the settings bench-vs-nvidia measured (docs/deploying.md):
  all graph optimisations, ``threads`` intra-op threads (0 = onnxruntime's choice, one per
  physical core), one inter-op thread, and the CPU memory arena off (peak RSS; see the doc).
- ``OnnxGenerator(path, sidecar, providers, threads, engine)``: call(label, index[, feat]) on
  NumPy arrays -> NumPy output, the same arguments render gives a MindSpore generator.
  ``engine`` ``onnxruntime`` (default) or ``openvino`` (OpenVINO's CPU plugin reads the same
  file; measured faster on this AVX2 CPU: docs/deploying.md). OpenVINO ignores ``providers``.
  ``precision`` ``bf16`` runs OpenVINO in bfloat16 (deploy.engines decides who may ask).
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from p2phd.core.cli import UsageError

# short names for --providers; anything else must be an onnxruntime provider name
SHORT = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "directml": "DmlExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}


def providers(spec: str) -> list[str]:
    """The onnxruntime providers for ``--providers`` (see module doc)."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    wanted = [SHORT.get(w.strip().lower(), w.strip()) for w in spec.split(",") if w.strip()]
    if not wanted:
        raise UsageError("--providers: give at least one, e.g. CPU or CUDA,CPU")
    for name in wanted:
        if name not in have:
            raise UsageError(
                f"--providers: onnxruntime {ort.__version__} here has no {name} (available: "
                f"{', '.join(have)}); CUDA/TensorRT need the onnxruntime-gpu package and their "
                "libraries instead of onnxruntime"
            )
    return wanted


def session_options(threads: int = 0, arena: bool = False, spin: bool = True) -> Any:
    """onnxruntime SessionOptions for G (see module doc).

    The memory arena keeps every block it ever grew; with it off, buffers go back to the
    allocator between calls and the memory pattern plan still reuses them within a call.
    ``spin`` False: idle intra-op threads sleep instead of spinning (the segmenter's choice:
    its convolutions are large, and on a shared CPU spinning threads burn time that other
    work needs: 2.60 against 2.95 CPU s per DRN-D-105 image at 256x512, bench-evaluate).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.enable_cpu_mem_arena = arena
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3  # warnings about unused initializers etc. are not the user's
    return so


ENGINES = ("onnxruntime", "openvino")


# OpenVINO's inference precision per --precision. Its CPU plugin computes in bf16 by default on
# CPUs with AMX, so fp32 (exact, the default) must be asked for explicitly.
OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


@contextmanager
def openvino_isa() -> Iterator[None]:
    """OpenVINO's CPU plugin with the CPU's full ISA while it compiles.

    p2phd sets ONEDNN_MAX_CPU_ISA=AVX2 for MindSpore's oneDNN (p2phd/__init__.py); OpenVINO's own
    oneDNN reads it too, the first time it compiles in a process: capped at AVX2 it loses
    AVX-512 and AMX, and refuses bf16 deconvolutions. So p2phd's value (not a user's) is lifted
    for that moment and put back, so MindSpore code run later in the process still sees it.
    """
    import p2phd

    ours = not p2phd.USER_ONEDNN_ISA and "ONEDNN_MAX_CPU_ISA" in os.environ
    saved = os.environ.pop("ONEDNN_MAX_CPU_ISA") if ours else None
    try:
        yield
    finally:
        if saved is not None:
            os.environ["ONEDNN_MAX_CPU_ISA"] = saved


class OpenVINOSession:
    """A file (or the bytes of a model) compiled by OpenVINO for its CPU plugin (latency hint,
    ``precision`` fp32 or bf16: OV_PRECISION; a --half file's fp16 weights are computed in the
    precision asked); ``run`` as onnxruntime's session."""

    def __init__(self, model: str | Path | bytes, threads: int, precision: str = "fp32") -> None:
        import openvino as ov

        core = ov.Core()
        config = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": OV_PRECISION[precision],
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        source = model if isinstance(model, bytes) else str(model)
        with openvino_isa():
            self.model = core.compile_model(core.read_model(source), "CPU", config)
        self.request = self.model.create_infer_request()

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = self.request.infer(feeds)
        return [np.array(out[self.model.output(n)]) for n in names]


class OnnxGenerator:
    """An exported ONNX model as render's generator: call(label, index[, feat]) -> np.ndarray.

    Render builds the same (label, index, features) arguments for every run; this drops what
    the graph does not take (index without edges) and keeps a grey --uint8 output one channel.
    """

    def __init__(
        self,
        path: str | Path,
        sidecar: dict[str, Any],
        provider_names: list[str],
        threads: int = 0,
        engine: str = "onnxruntime",
        precision: str = "fp32",
    ) -> None:
        if engine == "openvino":
            self.session: Any = OpenVINOSession(path, threads, precision)
        else:
            import onnxruntime as ort

            self.session = ort.InferenceSession(
                str(path), session_options(threads), providers=provider_names
            )
        self.names = [s["name"] for s in sidecar["inputs"]]
        self.grey_uint8 = bool(sidecar["uint8"]) and sidecar["output_nc"] == 1

    def __call__(self, label: np.ndarray, index: np.ndarray, feat: Any = None) -> np.ndarray:
        given = {"label": label, "instance": index, "features": feat}
        out = self.session.run(["image"], {n: given[n] for n in self.names})[0]
        return out[..., :1] if self.grey_uint8 else out

"""The optional parts of p2phd (pyproject.toml's extras) and the check a verb makes before it
uses one: a verb or option whose packages are missing exits 2 with one line naming the
``pip install`` that adds them; everything else works without them.

- ``onnx``: onnx + onnxruntime: bin/export --format ONNX, bin/render --onnx, bin/edit through an
  export, bin/evaluate --seg_engine onnxruntime (the CPU's default segmentation engine).
- ``openvino``: openvino, and onnx to write the graphs it reads: --engine / --seg_engine openvino.
- ``edit``: flask + werkzeug: bin/edit's web server.
- ``board``: tensorboardX: bin/train --tensorboard.
"""

import importlib

from p2phd.core.cli import UsageError

# extra -> the modules it installs (import names), in pyproject.toml's [project.optional-dependencies]
EXTRAS: dict[str, tuple[str, ...]] = {
    "onnx": ("onnx", "onnxruntime"),
    "openvino": ("openvino", "onnx"),
    "edit": ("flask", "werkzeug"),
    "board": ("tensorboardX",),
}
# the extra that installs each ONNX engine (--engine, --seg_engine)
ENGINE_EXTRA = {"onnxruntime": "onnx", "openvino": "openvino"}


def missing(extra: str, modules: tuple[str, ...] = ()) -> list[str]:
    """Which of ``modules`` (default: all of the extra's) cannot be imported here."""
    gone = []
    for name in modules or EXTRAS[extra]:
        try:
            importlib.import_module(name)
        except ImportError:
            gone.append(name)
    return gone


def available(extra: str, modules: tuple[str, ...] = ()) -> bool:
    return not missing(extra, modules)


def require(extra: str, what: str, modules: tuple[str, ...] = ()) -> None:
    """UsageError (exit 2) naming ``pip install 'p2phd[extra]'`` unless ``what`` can run."""
    gone = missing(extra, modules)
    if gone:
        raise refusal(extra, what, gone)


def refusal(extra: str, what: str, gone: list[str] | tuple[str, ...]) -> UsageError:
    """The one-line exit-2 error for ``what`` without ``gone``, naming the pip install."""
    return UsageError(
        f"{what} needs {' and '.join(gone)}, not installed here: pip install 'p2phd[{extra}]'"
    )

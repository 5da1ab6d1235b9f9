"""Which engine renders for bin/edit: the run's G.ckpt in MindSpore, or its ONNX export.

``resolve(o, info)`` decides from ``--onnx`` and ``--engine`` and checks before anything loads:

- ``--onnx auto`` (default): the run's export ``<run>/<run-name>.onnx`` (what ``make
  export-onnx`` writes) when it exists, else G.ckpt; ``--onnx FILE``: that file; ``--onnx ''``:
  G.ckpt. ``--engine auto`` (default) runs a file in onnxruntime and G.ckpt in MindSpore;
  ``onnxruntime``/``openvino`` need a file, ``mindspore`` ignores the automatic one.
- An export is used only if it is what render --onnx would accept (its sidecar's SHA-256 is the
  file's, ``deploy.sidecar.verify``) and comes from this run: its sidecar's checkpoint SHA-256 is
  the run's G.ckpt's and its architecture the run's. A stale export exits 2 naming the file,
  also when found automatically: editing with other weights than the run's would mislead.
- The choice is announced on stderr (one line), so a user sees which weights render.

Why automatic: the interaction is where speed is felt most (issue 22), onnxruntime and OpenVINO
render the editor's previews several times faster than MindSpore on a CPU (README: Editing), and
the checks above make using the export as safe as using G.ckpt. ``Engine.generator()`` is the
model callable of ``editing.model`` (NumPy in/out); the ONNX path imports no MindSpore.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2phd.core import extras
from p2phd.core.cli import UsageError, log

AUTO = "auto"
ENGINES = (AUTO, "mindspore", "onnxruntime", "openvino")


@dataclass
class Engine:
    """What renders: ``name`` mindspore (the run's G.ckpt) or an ONNX engine with its file."""

    name: str = "mindspore"
    onnx: Path | None = None
    sidecar: dict[str, Any] = field(default_factory=dict)
    providers: str = "CPU"
    threads: int = 0

    @property
    def stride(self) -> int:
        """The multiple the ONNX file's H and W must be (0: any size, the checkpoint)."""
        return int(self.sidecar["stride"]) if self.onnx is not None else 0

    def render_args(self) -> list[str]:
        """bin/render's options for the same engine (a run folder is passed apart for MindSpore)."""
        if self.onnx is None:
            return []
        args = ["--onnx", str(self.onnx.resolve()), "--engine", self.name]
        if self.name == "onnxruntime" and self.providers != "CPU":
            args += ["--providers", self.providers]
        return args + (["--threads", str(self.threads)] if self.threads else [])

    def describe(self) -> str:
        if self.onnx is None:
            return "G.ckpt through MindSpore"
        half = ", float16" if self.sidecar.get("half") else ""
        return f"the ONNX export {self.onnx} through {self.name}{half}"

    def generator(self, info: Any) -> Any:
        """The model callable: (label, index[, feat]) NumPy -> output NumPy."""
        if self.onnx is None:
            return mindspore_generator(info)
        from p2phd.deploy.onnx_run import OnnxGenerator, providers

        names = providers(self.providers) if self.name == "onnxruntime" else []
        return OnnxGenerator(self.onnx, self.sidecar, names, self.threads, self.name)


def mindspore_generator(info: Any) -> Any:
    """The run's G.ckpt (+ condition encoding) in ``rendering.loop.build_net``, as one callable."""
    from types import SimpleNamespace

    from mindspore import Tensor

    from p2phd.core import runs
    from p2phd.rendering.loop import build_net

    G, E, _, _ = runs.load_inference(info.run_dir, 1)
    net = build_net(SimpleNamespace(arch=info.arch, mode=info.mode), G, E)

    def generate(*arrays: Any) -> Any:
        return net(*(Tensor(a) for a in arrays)).asnumpy()

    return generate


def default_export(run_dir: Path) -> Path:
    """Where ``make export-onnx`` writes the run's export (Makefile: onnx_file)."""
    return run_dir / f"{run_dir.resolve().name}.onnx"


def resolve(o: Any, info: Any) -> Engine:
    """The engine of ``--onnx``/``--engine``, its export checked (UsageError, exit 2)."""
    if o.engine == "mindspore" and o.onnx not in ("", AUTO):
        raise UsageError(f"--engine mindspore renders G.ckpt; it does not run --onnx {o.onnx}")
    path = _export_path(o, info.run_dir)
    if path is None:
        if o.engine in ("onnxruntime", "openvino"):
            where = "--onnx ''" if o.onnx == "" else f"no {default_export(info.run_dir)}"
            raise UsageError(
                f"--engine {o.engine} runs an ONNX export ({where}): make one with bin/export "
                f"--run {info.run_dir} --format ONNX --out {default_export(info.run_dir)}"
            )
        engine = Engine()
    else:
        name = "onnxruntime" if o.engine == AUTO else o.engine
        extras.require(
            extras.ENGINE_EXTRA[name], f"bin/edit through the ONNX export {path}", (name,)
        )
        engine = Engine(name, path, check_export(path, info), o.providers, o.threads)
        if name == "onnxruntime":  # a provider this onnxruntime lacks: exit 2 before loading
            from p2phd.deploy.onnx_run import providers

            providers(o.providers)
    log(f"edit: rendering with {engine.describe()}{_hint(o, info, engine)}")
    return engine


def _export_path(o: Any, run_dir: Path) -> Path | None:
    if o.engine == "mindspore" or o.onnx == "":
        return None
    if o.onnx != AUTO:
        return Path(o.onnx)
    found = default_export(run_dir)
    if found.is_file() and not extras.available("onnx", ("onnxruntime",)):
        log(f"edit: {found} is not used: onnxruntime is not installed (pip install 'p2phd[onnx]')")
        return None
    return found if found.is_file() else None


def _hint(o: Any, info: Any, engine: Engine) -> str:
    """Why this engine, and how to get the other one (the rest of the announcement)."""
    if engine.onnx is not None:
        how = "found automatically" if o.onnx == AUTO else "--onnx"
        return f" ({how}; --engine mindspore renders G.ckpt instead)"
    if o.engine == "mindspore" or o.onnx == "":
        return ""
    others = sorted(p.name for p in info.run_dir.glob("*.onnx") if not p.name.startswith("."))
    found = f"; {', '.join(others)} there is used with --onnx FILE" if others else ""
    return (
        f" (no ONNX export {default_export(info.run_dir)}: bin/export --run {info.run_dir} "
        f"--format ONNX --out that file, or make export-onnx, renders previews faster{found})"
    )


def check_export(path: Path, info: Any) -> dict[str, Any]:
    """The export's sidecar, after checking the file and that it was made from this run."""
    from p2phd.core import manifest, runs
    from p2phd.deploy import sidecar

    side = sidecar.read(path, "ONNX")
    sidecar.verify(path, side)
    ckpt = runs.trained_snapshot(info.run_dir)
    made_from = side.get("run", {}).get("checkpoint_sha256", "")
    if made_from != manifest.sha256_file(ckpt):
        raise UsageError(
            f"{path}: exported from another G.ckpt than {ckpt} (stale: the run changed since); "
            f"export it again (bin/export --run {info.run_dir} --format ONNX --out {path}) "
            "or pass --engine mindspore"
        )
    if runs.arch_from_dict(side["run"]["options"]) != info.arch:
        raise UsageError(
            f"{path}: exported with other options than {info.run_dir}/options.json; export again"
        )
    return side

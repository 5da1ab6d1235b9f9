"""The package tree reads as the pipeline: no import cycle, the base imports no stage, and each
stage imports only the stages before it."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "p2phd"
STAGES = ("data", "training", "features", "rendering", "interop", "deploy", "metrics", "editing")


def module_name(f: Path) -> str:
    parts = f.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(f: Path, modules: set[str]) -> set[str]:
    """Every p2phd module f imports, at module level or inside functions."""
    name = module_name(f)
    pkg = name if f.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(f.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in modules else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    files = {module_name(f): f for f in PKG.rglob("*.py")}
    return {m: imports_of(f, set(files)) for m, f in files.items()}


def test_no_import_cycle():
    g = graph()
    # a package's __init__ and its own submodules are one unit: drop those edges
    g = {
        m: {d for d in ds if not d.startswith(m + ".") and not m.startswith(d + ".")}
        for m, ds in g.items()
    }
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for d in sorted(g[m]):
            assert state.get(d) != 1, "import cycle: " + " -> ".join(path[path.index(d) :] + [d])
            if d not in state:
                visit(d)
        path.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_base_and_nets_import_no_stage():
    for m, deps in graph().items():
        if m.startswith(("p2phd.core", "p2phd.nets")):
            bad = sorted(d for d in deps if d.count(".") and d.split(".")[1] in STAGES)
            assert not bad, f"{m} imports stage modules {bad}"


# The stages in pipeline order (docs/internals.md): each imports the base, nets/ and only
# stages before it. training reads features (--load_features); interop builds a training state
# for imported runs; rendering runs exported graphs (deploy) and styles (features); metrics
# segments through deploy's ONNX writer and reads .pth files through interop; editing renders.
STAGE_ORDER = (
    "data",
    "features",
    "training",
    "interop",
    "deploy",
    "rendering",
    "metrics",
    "editing",
)


def test_stages_import_only_earlier_stages():
    assert sorted(STAGE_ORDER) == sorted(STAGES)
    for m, deps in graph().items():
        stage = m.split(".")[1] if m.count(".") else ""
        if stage not in STAGE_ORDER:
            continue
        later = STAGE_ORDER[STAGE_ORDER.index(stage) + 1 :]
        bad = sorted(d for d in deps if d.count(".") and d.split(".")[1] in later)
        assert not bad, f"{m} (stage {stage}) imports later stages {bad}"


def test_entry_points_are_thin():
    """p2phd/<verb>.py only forwards to its stage: the code lives in the stage folders."""
    for f in PKG.glob("*.py"):
        if f.name != "__init__.py":
            assert len(f.read_text().splitlines()) <= 15, f"{f.name} holds code; move it to a stage"
            assert "def main" not in f.read_text()

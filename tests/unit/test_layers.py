"""The package's layers (docs/architecture.md): every import in llmrec goes down, never up
or sideways, so that a change in a lower layer cannot need one above it."""

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "platform" / "llmrec"

LAYERS = {
    "config": 0,
    "console": 0,
    "_moved": 0,
    "data": 1,
    "api": 1,
    "modeling": 2,
    "ranking": 3,
    "registry": 4,
    "understanding": 5,
    "serving": 6,
    "experiments": 7,
    "evaluation": 7,
    "training": 8,
    "workflows": 9,
    "config_reference": 10,
}


def _part(module: str) -> str | None:
    """The top-level part of ``llmrec`` a dotted module belongs to (None: llmrec itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "llmrec" else None


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmrec"):
            if node.module == "llmrec":
                out += [(node.lineno, f"llmrec.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("llmrec.")]
    return out


def test_every_part_of_llmrec_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()}
    parts -= {"__init__", "__pycache__", "py"}  # py: py.typed
    assert parts == set(LAYERS), "add the new part to LAYERS and docs/architecture.md"


def test_imports_only_go_down():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent)
        own = _part(".".join(rel.with_suffix("").parts))
        if own is None or own == "__init__":
            continue
        for line, module in _imports(path):
            other = _part(module)
            if other is None or other == own or other == "_moved":
                continue
            if LAYERS[other] >= LAYERS[own]:
                wrong.append(
                    f"{rel}:{line} ({own}, layer {LAYERS[own]}) imports {module} "
                    f"(layer {LAYERS[other]})"
                )
    assert not wrong, "\n".join(wrong)


def test_no_module_is_over_400_lines():
    """STYLE.md: a module over 400 lines is asking to be split (by what it does)."""
    folders = [PACKAGE, REPO / "serve_deployments", REPO / "jobs", REPO / "benchmarks"]
    long = {
        str(p.relative_to(REPO)): n
        for folder in folders
        for p in folder.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, long

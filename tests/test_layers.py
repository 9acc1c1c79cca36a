"""The package's import rules, read from the source with ``ast``: layers, no cycles, no hidden imports.

Layer 0 (algorithms) imports only torch, numpy, torchjd, pymoo, yaml and lower layer-0 files; layer 1 (Hugging Face
plumbing) layer 0 and layer 1; layer 2 (trainers) layers 0 and 1 and the trainers' shared base, never another
trainer; layer 3 (commands and the CLI) anything below. Imports sit at the top of a module, except those of optional
dependencies, which may be missing.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import paretoalign

PACKAGE = Path(paretoalign.__file__).resolve().parent
ROOT = "paretoalign"

#: Layer of each module (a name ending in ``.*`` covers a sub-package).
LAYERS = {
    0: ["io", "losses", "pareto", "weighting", "fused", "advantages", "engine", "tpo", "sharding"],
    1: ["gguf", "models", "data", "data.*", "rewards", "rewards.*", "generation", "oracles", "scoring", "config",
        "synthetic", "synthetic.*"],
    2: ["trainers", "trainers.*"],
    3: ["commands", "commands.*", "cli"],
}
#: Third-party packages layer 0 may import (the standard library is always allowed).
LAYER_0_THIRD_PARTY = {"torch", "numpy", "torchjd", "pymoo", "yaml"}
#: Exceptions to LAYER_0_THIRD_PARTY: GDPO's batch standard deviation is TRL's own function, so the advantages
#: equal TRL's bit for bit.
LAYER_0_EXCEPTIONS = {"advantages": {"trl"}}
#: Modules of layer 2 that every trainer may import.
TRAINER_SHARED = {"trainers.base"}
#: Optional dependencies, the only imports allowed inside a function.
OPTIONAL = {"vllm", "bitsandbytes"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> int | None:
    for layer, patterns in LAYERS.items():
        for pattern in patterns:
            if name == pattern or (pattern.endswith(".*") and name.startswith(pattern[:-1])):
                return layer
    return None


def imports_of(name: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import in module ``name``; paretoalign modules are given
    relative to the package (``"data.files"``), others by their full dotted name."""
    tree = ast.parse(MODULES[name].read_text())
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, inside) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                if child.module == ROOT or child.module.startswith(ROOT + "."):
                    for alias in child.names:
                        found.append((f"{child.module}.{alias.name}", child.lineno, inside))
                else:
                    found.append((child.module, child.lineno, inside))
            elif isinstance(child, ast.ImportFrom) and child.level > 0:
                found.append(("<relative>", child.lineno, inside))
            visit(child, inside)

    visit(tree, False)
    resolved = []
    for target, line, inside in found:
        if target == ROOT or target.startswith(ROOT + "."):
            relative = target.removeprefix(ROOT).lstrip(".")
            while relative and relative not in MODULES:  # ``from paretoalign.data import X``: X is a name
                relative = relative.rpartition(".")[0]
            target = relative
        resolved.append((target, line, inside))
    return resolved


def internal_edges() -> dict[str, set[str]]:
    return {
        name: {target for target, _, _ in imports_of(name) if target in MODULES and target not in ("", name)}
        for name in MODULES
        if name
    }


def test_every_module_has_a_layer():
    unplaced = [name for name in MODULES if name and layer_of(name) is None]
    assert unplaced == [], f"modules with no layer in LAYERS: {unplaced}"


def test_no_import_cycles():
    edges = internal_edges()
    state: dict[str, str] = {}
    cycles = []

    def walk(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                walk(target, [*stack, target])
        state[node] = "done"

    for name in sorted(edges):
        if name not in state:
            walk(name, [name])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


@pytest.mark.parametrize("name", sorted(name for name in MODULES if name))
def test_imports_go_down_the_layers(name):
    layer = layer_of(name)
    problems = []
    for target, line, _ in imports_of(name):
        if target == "<relative>":
            problems.append(f"line {line}: relative import")
        elif target in MODULES:
            target_layer = layer_of(target) if target else None
            if target_layer is None or target_layer > layer:
                problems.append(f"line {line}: imports {target} (layer {target_layer}) from layer {layer}")
            elif layer == 2 and target.startswith("trainers.") and target not in TRAINER_SHARED | {name}:
                problems.append(f"line {line}: a trainer imports another trainer, {target}")
        elif layer == 0:
            top = target.split(".")[0]
            allowed = LAYER_0_THIRD_PARTY | LAYER_0_EXCEPTIONS.get(name, set())
            if top not in sys.stdlib_module_names and top not in allowed:
                problems.append(f"line {line}: layer 0 imports the third-party package {target}")
    assert problems == [], f"{ROOT}.{name}: " + "; ".join(problems)


@pytest.mark.parametrize("name", sorted(name for name in MODULES if name))
def test_imports_are_at_the_top_except_optional_ones(name):
    hidden = [
        f"line {line}: {target or ROOT}"
        for target, line, inside in imports_of(name)
        if inside and target.split(".")[0] not in OPTIONAL
    ]
    assert hidden == [], f"{ROOT}.{name} imports inside functions: {hidden}"


def test_the_rules_catch_what_they_forbid(tmp_path, monkeypatch):
    """The checks above see a cycle, an upward import and a function-local import in planted modules."""
    monkeypatch.setitem(MODULES, "losses", tmp_path / "losses.py")
    monkeypatch.setitem(MODULES, "io", tmp_path / "io.py")
    (tmp_path / "losses.py").write_text(
        "from paretoalign.io import write_json_atomic\n"
        "from paretoalign.trainers.preference import ParetoPreferenceTrainer\n"
        "def f():\n    import transformers\n"
    )
    (tmp_path / "io.py").write_text("from paretoalign import losses\n")
    with pytest.raises(AssertionError, match="import cycles: io -> losses -> io"):
        test_no_import_cycles()
    with pytest.raises(AssertionError, match="imports trainers.preference"):
        test_imports_go_down_the_layers("losses")
    with pytest.raises(AssertionError, match="line 4: transformers"):
        test_imports_are_at_the_top_except_optional_ones("losses")

"""The import graph between evoforge's parts (its sub-packages and top-level modules) is a directed acyclic graph, read
from the source with `ast`: settings sit in one leaf package, the pillars talk through plain data, and no package
dodges a cycle with a lazy `__getattr__`.

Only module-level imports must form a DAG. They run while a module is being loaded, so a cycle among them makes the
result depend on which module happens to be imported first (a half-initialised module, an ImportError on a name not
yet defined). An import inside a function runs when the function is called, after every module has loaded: it cannot
see a half-built module, and it is how light commands (`evoforge status`) and jailed child processes stay off heavy
modules. Those are counted apart and only checked against the rules of the house (which pillar may know which)."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import evoforge

ROOT = Path(evoforge.__file__).parent
PILLARS = ("task", "research", "experiment", "analysis", "memory", "llm")
# Modules that keep a module-level __getattr__, and why: each keeps child processes light, not a cycle away.
LAZY_ATTRIBUTES = {
    "evoforge": "`evoforge.run`/`resume` load the loop; the telemetry helper and the sandbox harness import evoforge",
    "evoforge.experiment": "`Engineer` is heavy; the jailed harness and supervisor import evoforge.experiment.*",
}


@dataclass
class Graph:
    """Imports between parts: part → part → how many import statements, module-level and function-level apart."""

    module_level: dict[str, Counter[str]] = field(default_factory=dict)
    function_level: dict[str, Counter[str]] = field(default_factory=dict)
    lazy: set[str] = field(default_factory=set)  # modules defining a module-level __getattr__
    imports: dict[str, set[str]] = field(default_factory=dict)  # module → evoforge modules it imports (any level)

    def edges(self, level: dict[str, Counter[str]]) -> dict[str, set[str]]:
        return {part: set(targets) for part, targets in level.items()}


def module_name(path: Path) -> str:
    parts = ["evoforge", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    """The part a module belongs to: "evoforge.memory.sampling.ucb1" → "memory"; the root package → "evoforge"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "evoforge"


def targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The evoforge modules an import statement loads (`from evoforge import sandbox` loads evoforge.sandbox)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "evoforge"]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    if source.split(".")[0] != "evoforge":
        return []
    found = []
    for alias in node.names:
        sub = f"{source}.{alias.name}"
        is_module = (ROOT.parent / sub.replace(".", "/")).with_suffix(".py").exists() or \
            (ROOT.parent / sub.replace(".", "/")).is_dir()
        found.append(sub if is_module else source)
    return found


def _type_checking_only(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)  # never runs: annotations only


def imports_of(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement that can run, with whether it sits in a function (code under `if TYPE_CHECKING:`
    never runs)."""
    found: list[tuple[ast.Import | ast.ImportFrom, bool]] = []
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, in_function = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_only(child):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                found.append((child, in_function))
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            stack.append((child, inside))
    return found


def build() -> Graph:
    graph = Graph()
    for path in sorted(ROOT.rglob("*.py")):
        module = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        if any(isinstance(node, ast.FunctionDef) and node.name == "__getattr__" for node in tree.body):
            graph.lazy.add(module)
        graph.imports[module] = set()
        for statement, in_function in imports_of(tree):
            level = graph.function_level if in_function else graph.module_level
            for target in targets(statement, module, path.name == "__init__.py"):
                graph.imports[module].add(target)
                if part_of(target) != part_of(module):
                    level.setdefault(part_of(module), Counter())[part_of(target)] += 1
    return graph


GRAPH = build()


def describe(level: dict[str, Counter[str]]) -> str:
    return "\n".join(f"  {part} -> {', '.join(sorted(level[part]))}" for part in sorted(level))


def test_module_level_imports_between_parts_form_a_dag() -> None:
    module_level = GRAPH.edges(GRAPH.module_level)
    try:
        order = list(graphlib.TopologicalSorter(module_level).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import cycle between parts: {' -> '.join(exc.args[1])}\n"
                             f"module-level imports:\n{describe(GRAPH.module_level)}") from None
    assert set(PILLARS) <= set(order)
    # the graph was read: the pillars import plain data and settings, and the conductor imports the pillars
    assert {"config", "models"} <= module_level["research"] and set(PILLARS) <= module_level["loop"] | {"llm"}
    assert sum(sum(c.values()) for c in GRAPH.function_level.values()) > 0  # counted apart, not mixed in


def test_settings_are_one_leaf_package_on_one_strict_base() -> None:
    assert GRAPH.module_level["config"].keys() <= {"models", "errors"}, GRAPH.module_level["config"]
    assert "config" not in GRAPH.function_level
    assert not {"models", "errors"} & GRAPH.module_level.keys()  # the vocabulary below it imports nothing of evoforge
    strict = []  # where a model refuses unknown fields (the LLM's answer schemas ignore them: not settings)
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "ConfigDict" and any(
                keyword.arg == "extra" and ast.unparse(keyword.value) == "'forbid'" for keyword in node.keywords
            ):
                strict.append(module_name(path))
    assert strict == ["evoforge.config._base"]


def test_no_lazy_getattr_dodges_a_cycle() -> None:
    assert GRAPH.lazy == set(LAZY_ATTRIBUTES), GRAPH.lazy


def test_the_rules_of_the_house_hold_at_every_level() -> None:
    """`memory` and `experiment` know nothing of LLMs; analysis reaches no research internals; the proposer's base
    class does not import its own subclasses; reading a record, or drawing progress, does not load the loop."""
    for level in (GRAPH.module_level, GRAPH.function_level):
        for pillar in ("memory", "experiment", "config"):
            assert "llm" not in level.get(pillar, {}), (pillar, level.get(pillar))
        assert "research" not in level.get("analysis", {})
        for reader in ("views", "export", "render", "progress"):
            assert not {"loop", "llm", "runs", "research", "analysis"} & set(level.get(reader, {})), reader
    assert not {"evoforge.research.offline", "evoforge.research.llm_proposer"} & GRAPH.imports["evoforge.research.base"]


def test_the_record_file_name_is_declared_once() -> None:
    declared = [module_name(path) for path in ROOT.rglob("*.py") if '"record.db"' in path.read_text(encoding="utf-8")]
    assert declared == ["evoforge.run_folder"]
    assert "evoforge.run_folder" in GRAPH.imports["evoforge.experiment.isolation"]
    assert "evoforge.run_folder" in GRAPH.imports["evoforge.memory.record"]


def test_loading_a_task_loads_no_pillar() -> None:
    """Settings and the task loader stand alone: reading task.yaml pulls in neither the record (SQLAlchemy), the
    LLM SDKs nor numpy (they did while task.yaml's model imported each pillar's settings module)."""
    heavy = ("numpy", "sqlalchemy", "openai", "evoforge.memory", "evoforge.llm", "evoforge.research",
             "evoforge.analysis", "evoforge.experiment")
    code = f"import sys, evoforge.task, evoforge.config; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout

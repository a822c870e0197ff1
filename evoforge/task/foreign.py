"""Task folders laid out for other frameworks (OpenEvolve, ASI-Evolve), read as they are: the task.yaml fields
they imply are inferred from their files, never written into them (`evoforge init --from` writes them out)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import yaml

from evoforge.errors import TaskError

OPENEVOLVE_STAGES = ("stage1", "stage2", "stage3")
OPENEVOLVE_THRESHOLDS = (0.5, 0.75, 0.9)  # OpenEvolve's defaults for evaluator.cascade_thresholds
OPENEVOLVE_TIMEOUT_S = 300.0  # OpenEvolve's default evaluator.timeout
ASI_COMMAND = 'bash "$EVOFORGE_TASK_DIR/eval.sh"'
ASI_KNOWLEDGE = "init_cognition.py"
TITLE_CHARS = 80
LOOKED_FOR = ("task.yaml (evoforge)", "initial_program.py + evaluator.py (OpenEvolve)",
              "input.md + initial_program + eval.sh (ASI-Evolve)")


def infer_config(root: Path) -> dict[str, Any]:
    """The task.yaml fields a foreign layout in `root` implies; TaskError (one line, naming what was looked for
    and what was missing) when the folder is in no layout evoforge knows."""
    if not root.is_dir():
        raise TaskError(f"{root}: {'not a folder' if root.exists() else 'no such folder'} (give a task folder)")
    files = {p.name for p in root.iterdir()}
    asi_program = _initial_program(root, files)
    if "eval.sh" in files and "input.md" in files and asi_program is not None:
        return _asi_evolve(root, asi_program)
    if "evaluator.py" in files and "initial_program.py" in files:
        return _openevolve(root)
    near = _near_miss(files, asi_program)
    raise TaskError(f"{root}: no task.yaml, and not a task layout evoforge knows: looked for "
                    f"{'; '.join(LOOKED_FOR)}{near}; `evoforge init DIR` writes a starter task")


def _near_miss(files: set[str], asi_program: str | None) -> str:
    """What a folder that looks half like a known layout lacks (empty when it looks like none)."""
    if "evaluator.py" in files:
        return " (found evaluator.py but no initial_program.py)"
    if "eval.sh" in files or "input.md" in files:
        needed = {"input.md": "input.md" in files, "eval.sh": "eval.sh" in files,
                  "initial_program": asi_program is not None}
        have = " and ".join(k for k, v in needed.items() if v)
        lack = " or ".join(k for k, v in needed.items() if not v)
        return f" (found {have} but no {lack})"
    if asi_program is not None:
        return f" (found {asi_program} but no evaluator.py, eval.sh or task.yaml)"
    return ""


def _initial_program(root: Path, files: set[str]) -> str | None:
    """`initial_program`, else the one `initial_program.*` file (.py first)."""
    if "initial_program" in files and (root / "initial_program").is_file():
        return "initial_program"
    found = sorted((f for f in files if f.startswith("initial_program.") and (root / f).is_file()),
                   key=lambda f: (not f.endswith(".py"), f))
    return found[0] if found else None


def _openevolve(root: Path) -> dict[str, Any]:
    """initial_program.py + evaluator.py (+ config.yaml): objective combined_score (maximised; OpenEvolve's average
    of the numeric metrics when the evaluator gives none), `evaluate_stage1/2/3` as stages stage1..3 promoted at
    `evaluator.cascade_thresholds`, the config's `prompt.system_message` as the problem."""
    config = _openevolve_yaml(root / "config.yaml")
    evaluator_cfg = config.get("evaluator") if isinstance(config.get("evaluator"), dict) else {}
    prompt_cfg = config.get("prompt") if isinstance(config.get("prompt"), dict) else {}
    timeout = float(evaluator_cfg.get("timeout") or OPENEVOLVE_TIMEOUT_S)
    problem = prompt_cfg.get("system_message")
    if not isinstance(problem, str) or not problem.strip():
        problem = ("Improve initial_program.py (the code between EVOLVE-BLOCK-START and EVOLVE-BLOCK-END, when "
                   "marked) so that evaluator.py gives it a higher combined_score.")
    data: dict[str, Any] = {
        "name": root.resolve().name, "problem": problem.strip() + "\n", "program": "initial_program.py",
        "evaluator": "evaluator.py", "objective": {"metric": "combined_score", "direction": "maximize"},
        "timeout_s": timeout, "layout": "openevolve",
    }
    stages = _openevolve_stages(root / "evaluator.py")
    if stages and evaluator_cfg.get("cascade_evaluation", True) is not False:
        thresholds = evaluator_cfg.get("cascade_thresholds") or list(OPENEVOLVE_THRESHOLDS)
        listed: list[dict[str, Any]] = []
        for index, name in enumerate(stages):
            stage: dict[str, Any] = {"name": name, "timeout_s": timeout}
            if index < len(stages) - 1 and index < len(thresholds):
                stage["promote"] = {"min_score": float(thresholds[index])}
            listed.append(stage)
        data["stages"] = listed
    return data


def _openevolve_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise TaskError(" ".join(f"{path}: cannot read OpenEvolve's config ({exc})".split())) from None
    return loaded if isinstance(loaded, dict) else {}


def _openevolve_stages(evaluator: Path) -> list[str]:
    """stage1, stage2, stage3 as far as evaluator.py defines evaluate_stage1, _2, _3 without a gap."""
    try:
        tree = ast.parse(evaluator.read_text(encoding="utf-8"), filename=str(evaluator))
    except (SyntaxError, UnicodeDecodeError):
        return []  # the loader's own check of the evaluator reports it
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}
    stages: list[str] = []
    for name in OPENEVOLVE_STAGES:
        if f"evaluate_{name}" not in defined:
            break
        stages.append(name)
    return stages


def _asi_evolve(root: Path, program: str) -> dict[str, Any]:
    """input.md + initial_program + eval.sh: eval.sh runs in the trial folder, where the candidate is the file
    `code`, and writes results.json with eval_score (the objective, maximised) and success."""
    return {
        "name": root.resolve().name, "problem": "input.md", "program": program, "command": ASI_COMMAND,
        "objective": {"metric": "eval_score", "direction": "maximize"}, "layout": "asi-evolve",
    }


def asi_knowledge(root: Path) -> list[Any]:
    """The ASI-Evolve folder's `init_cognition.py` knowledge list as cognition-base items (heuristics titled by
    their first sentence, their `source` kept), to seed a run's knowledge base; [] when there is none."""
    from evoforge.memory.cognition import KnowledgeItem

    items = []
    for content, source in knowledge_items(root / ASI_KNOWLEDGE):
        first = content.split(". ")[0].rstrip(".")
        title = first if len(first) <= TITLE_CHARS else first[: TITLE_CHARS - 3].rstrip() + "..."
        items.append(KnowledgeItem(kind="heuristic", title=title, content=content, source=source or ASI_KNOWLEDGE))
    return items


def knowledge_items(path: Path) -> list[tuple[str, str]]:
    """(content, source) of each knowledge item an ASI-Evolve `init_cognition.py` lists as literal text
    (`CognitionItem(content=..., source=...)` calls or dicts with a "content" key); read, never run."""
    if not path.is_file():
        return []
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError) as exc:
        raise TaskError(" ".join(f"{path}: cannot read its knowledge list ({exc})".split())) from None
    items: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        fields: dict[str, Any] = {}
        if isinstance(node, ast.Call):
            fields = {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg}
        elif isinstance(node, ast.Dict):
            fields = {_literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True) if k}
        content = fields.get("content")
        if isinstance(content, str) and content.strip():
            source = fields.get("source")
            items.append((content.strip(), source.strip() if isinstance(source, str) else ""))
    return items


def _literal(node: ast.AST) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None


def write_inferred(root: Path) -> Path:
    """Write ROOT/task.yaml with the fields ROOT's foreign layout implies, for the user to adjust; refuses when
    ROOT already has a task.yaml. Returns the file written."""
    root = Path(root)
    target = root / "task.yaml"
    if target.exists():
        raise TaskError(f"{target}: already exists; `evoforge init --from` writes a task.yaml only where none is")
    data = infer_config(root)
    header = (f"# inferred by `evoforge init --from` from the {data['layout']} layout of this folder; adjust freely\n"
              "# (without this file, `evoforge run` infers the same fields)\n")
    try:
        target.write_text(header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100),
                          encoding="utf-8")
    except OSError as exc:
        raise TaskError(f"{target}: cannot write ({exc.strerror or exc})") from None
    return target

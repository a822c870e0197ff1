"""Loads a task folder into a validated `Task`; each mistake is reported as one line naming file and field."""

from __future__ import annotations

import ast
import functools
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from evoforge.config import TaskConfig
from evoforge.errors import TaskError
from evoforge.task.foreign import infer_config

TASK_FILE = "task.yaml"
ASI_PROGRAM = "code"


@dataclass(frozen=True)
class Task:
    """A loaded task: its folder, validated config, and the texts the loop needs."""

    root: Path
    config: TaskConfig
    problem_text: str
    seed_program: str

    # These are asked for at each stage: worked out once per Task (its config is not edited in place: a changed task
    # is a new Task). What would make them stale: the task folder's files moved or re-linked during a run.
    @functools.cached_property
    def program_name(self) -> str:
        """File name the candidate is written under in each trial folder (e.g. `initial_program.py`; `code` in
        the ASI-Evolve layout, whose eval.sh reads it there)."""
        return ASI_PROGRAM if self.config.layout == "asi-evolve" else Path(self.config.program).name

    @functools.cached_property
    def evaluator_path(self) -> Path | None:
        return (self.root / self.config.evaluator).resolve() if self.config.evaluator else None

    @functools.cached_property
    def private_paths(self) -> tuple[Path, ...]:
        """What only the evaluator's process sees: task.yaml, the evaluator and the task's `hidden` paths."""
        paths = [self.root / TASK_FILE, *([self.evaluator_path] if self.evaluator_path else [])]
        every = (p.resolve() for p in [*paths, *(self.root / h for h in self.config.hidden)])
        return tuple(dict.fromkeys(p for p in every if p.exists()))  # a foreign layout has no task.yaml


def load_task(path: str | Path) -> Task:
    """Read PATH/task.yaml (PATH is the task folder or the yaml file itself) and check what it points at; a folder
    without task.yaml in a foreign layout (OpenEvolve's, ASI-Evolve's: see foreign.py) is read as it is.

    Raises TaskError with a one-line message naming the file and the field at the first mistake found.
    The evaluator is checked statically (parsed, never imported): it must define `evaluate(program_path)`.
    """
    path = Path(path)
    if path.is_dir() and not (path / TASK_FILE).is_file():
        data = infer_config(path)
        return _checked(path, _validated(data, Path(f"{path} ({data['layout']} layout)")), None)
    yaml_path = _find_task_file(path)
    return _checked(yaml_path.parent, _parse_config(yaml_path), yaml_path)


def _checked(root: Path, config: TaskConfig, yaml_path: Path | None) -> Task:
    """The task in `root` once every file `config` names is there (`yaml_path` None: an inferred config)."""
    where = yaml_path or Path(f"{root} ({config.layout} layout)")
    problem = _problem_text(root, config.problem, where)
    program = _existing_file(root, config.program, "program", where)
    if config.evaluator is not None:
        evaluator = _existing_file(root, config.evaluator, "evaluator", where)
        _check_evaluator(evaluator, _read_text(evaluator))
    for index, hidden in enumerate(config.hidden):
        target = (root / hidden).resolve()
        if not target.is_relative_to(root.resolve()) or target == root.resolve():
            raise TaskError(f"{where}: field 'hidden.{index}': {hidden!r} is not inside the task folder {root}")
        if not target.exists():
            raise TaskError(f"{where}: field 'hidden.{index}': {hidden!r} not found in {root}")
    if config.prompts is not None and not (root / config.prompts).is_dir():
        raise TaskError(f"{where}: field 'prompts': folder '{config.prompts}' not found in {root}")
    return Task(
        root=root.resolve(),
        config=config,
        problem_text=problem,
        seed_program=_read_text(program),
    )


def problem_is_file(root: Path, problem: str) -> bool:
    """True when task.yaml's `problem` names a file (one word that is a file of the task folder, or has a suffix
    or a '/'), False when it is the problem's text itself."""
    value = problem.strip()
    if not value or any(c.isspace() for c in value):
        return False
    return bool(Path(value).suffix) or "/" in value or (root / value).is_file()


def _problem_text(root: Path, problem: str, where: Path) -> str:
    """`problem` as a file of the task folder when it names one, else as the problem's text."""
    if not problem.strip():
        raise TaskError(f"{where}: field 'problem': empty; give a file (problem.md) or the problem's text")
    if problem_is_file(root, problem):
        return _read_text(_existing_file(root, problem.strip(), "problem", where))
    return problem

def task_snapshot(task: Task) -> dict[str, str]:
    """The texts defining the task (task.yaml, problem, program, evaluator, prompts), by relative path."""
    snapshot: dict[str, str] = {}
    yaml_path = task.root / TASK_FILE
    if yaml_path.is_file():
        snapshot[TASK_FILE] = _read_text(yaml_path)
    else:
        snapshot[TASK_FILE] = yaml.safe_dump(task.config.model_dump(mode="json"), sort_keys=False)
    if problem_is_file(task.root, task.config.problem):
        snapshot[_relative(task.root, task.config.problem.strip())] = task.problem_text
    snapshot[_relative(task.root, task.config.program)] = task.seed_program
    if task.config.evaluator is not None:
        snapshot[_relative(task.root, task.config.evaluator)] = _read_text(task.root / task.config.evaluator)
    if task.config.prompts is not None:
        prompts = task.root / task.config.prompts
        files = (p for p in prompts.rglob("*") if p.is_file() and not _hidden(p.relative_to(prompts)))
        for file in sorted(files):
            key = _relative(task.root, str(Path(task.config.prompts) / file.relative_to(prompts)))
            snapshot[key] = file.read_text(encoding="utf-8", errors="replace")
    return snapshot


def _find_task_file(path: Path) -> Path:
    if path.is_dir():
        candidate = path / TASK_FILE
        if not candidate.is_file():
            raise TaskError(f"{candidate}: no such file (a task folder needs {TASK_FILE})")
        return candidate
    if path.is_file():
        return path
    if path.suffix in (".yaml", ".yml"):
        raise TaskError(f"{path}: no such file (give a task folder or its {TASK_FILE})")
    raise TaskError(f"{path / TASK_FILE}: no such file (a task folder needs {TASK_FILE})")


def _parse_config(yaml_path: Path) -> TaskConfig:
    text = _read_text(yaml_path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TaskError(_yaml_error(yaml_path, exc)) from None
    if data is None:
        raise TaskError(f"{yaml_path}: the file is empty; expected a mapping of fields (name, problem, ...)")
    if not isinstance(data, dict):
        raise TaskError(
            f"{yaml_path}: expected a mapping of fields (name: ..., problem: ...), got {type(data).__name__}"
        )
    data.setdefault("name", yaml_path.parent.resolve().name)
    return _validated(data, yaml_path)


def _validated(data: dict[str, Any], where: Path) -> TaskConfig:
    try:
        return TaskConfig.model_validate(data)
    except ValidationError as exc:
        raise TaskError(_validation_error(where, exc)) from None


def _yaml_error(yaml_path: Path, exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return _one_line(f"{yaml_path}: YAML syntax error{where}: {problem}")


def _validation_error(yaml_path: Path, exc: ValidationError) -> str:
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    if first["type"] == "extra_forbidden":
        known = ", ".join(_known_fields(first["loc"][:-1]))
        return _one_line(f"{yaml_path}: unknown field '{loc}' (known: {known}){more}")
    if first["type"] == "missing":
        return _one_line(f"{yaml_path}: field '{loc}': required, but missing{more}")
    msg = first["msg"].removeprefix("Value error, ")
    if msg.startswith("Input should be "):
        msg = "expected " + msg.removeprefix("Input should be ")
    if not loc:
        return _one_line(f"{yaml_path}: {msg}{more}")
    return _one_line(f"{yaml_path}: field '{loc}': {msg}, got {first['input']!r}{more}")


def _known_fields(loc: tuple[Any, ...]) -> list[str]:
    """The field names allowed at `loc` (a path of field names into TaskConfig)."""
    model: type[BaseModel] = TaskConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        candidates = [field.annotation, *typing.get_args(field.annotation)]  # unwrap `X | None`
        found = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not found:
            return []
        model = found[0]
    return list(model.model_fields)


def _existing_file(root: Path, relative: str, field: str, yaml_path: Path) -> Path:
    target = root / relative
    if not target.is_file():
        what = "is a folder, not a file" if target.is_dir() else "not found"
        raise TaskError(f"{yaml_path}: field '{field}': file '{relative}' {what} in {root}")
    return target


def _check_evaluator(path: Path, source: str) -> None:
    """Check, without running it, that `source` defines a top-level evaluate() with a positional parameter."""
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise TaskError(_one_line(f"{path}: syntax error at line {exc.lineno}: {exc.msg}")) from None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "evaluate":
            args = node.args
            if args.posonlyargs or args.args or args.vararg:
                return
            raise TaskError(
                f"{path}: function 'evaluate' takes no positional parameter; define evaluate(program_path)"
            )
    raise TaskError(
        f"{path}: no function 'evaluate(program_path)' defined (a top-level def returning a dict of metrics)"
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TaskError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save as UTF-8") from None
    except OSError as exc:
        raise TaskError(_one_line(f"{path}: cannot read ({exc.strerror or exc})")) from None


def _relative(root: Path, relative: str) -> str:
    """`relative` as a POSIX path under the task root when it lies there, else as written in task.yaml."""
    target = (root / relative).resolve()
    try:
        return target.relative_to(root.resolve()).as_posix()
    except ValueError:
        return Path(relative).as_posix()


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") or part == "__pycache__" for part in relative.parts)


def _one_line(text: str) -> str:
    return " ".join(text.split())

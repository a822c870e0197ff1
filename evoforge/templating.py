"""Prompt templates shared by the researcher and the analyzer: jinja2 files shipped with evoforge, any of which a
task's `prompts` folder overrides by file name; syntax errors surface when the set is built, not mid-run.
Compiled templates are shared by every set of the same files in the process, so building a set is cheap, and a
template whose every input is a short plain value (the researcher's system message) is rendered once per inputs."""

from __future__ import annotations

import functools
import math
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import jinja2
import jinja2.meta
import jinja2.nodes
import jinja2.runtime

from evoforge.errors import TaskError

if TYPE_CHECKING:
    from evoforge.task.loader import Task


def score_text(value: object) -> str:
    """A score or metric for the prompt: floats with 6 significant digits, None as 'none'."""
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def clip(text: object, limit: int = 300) -> str:
    text = str(text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


MEMO_ENTRIES = 64  # rendered texts kept per template (the researcher's system message: one per patch type)
MEMO_TEXT_CHARS = 400  # an input string longer than this is not memoized on (the texts that change every trial)
_PLAIN = (str, int, float, bool, type(None))
_MISSING = object()


@functools.lru_cache(maxsize=32)
def _environment(builtin: Path, override: Path | None) -> jinja2.Environment:
    """The jinja2 environment of one pair of folders, built once per process: it keeps the compiled templates (an
    override file edited meanwhile is read again, as jinja2 checks its time stamp), so a set built per prompt, as the
    novelty judge and the review do, does not parse its template again. The built-in files never change while the
    process runs: with no override folder nothing is checked per render."""
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(str(builtin))]
    if override is not None:
        loaders.insert(0, jinja2.FileSystemLoader(str(override)))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True, keep_trailing_newline=False, autoescape=False, auto_reload=override is not None,
    )
    env.filters["score"] = score_text
    env.filters["clip"] = clip
    return env


class _Memo:
    """The texts one compiled template rendered, by its inputs; `names` None: it cannot be memoized (it includes or
    imports another template, or reads something besides its inputs, such as a global function). `globals`: the
    environment's globals as one dict, for a template that imports nothing (None: rendered by `Template.render`)."""

    def __init__(self, names: tuple[str, ...] | None, globals_: dict[str, Any] | None) -> None:
        self.names = names
        self.globals = globals_
        self.texts: dict[tuple[object, ...], str] = {}

    def render(self, template: jinja2.Template, values: dict[str, Any]) -> str:
        """What `template.render(values)` returns, without merging the globals' ChainMap into a new context twice
        per render (half the cost of rendering the system message)."""
        if self.globals is None:
            return template.render(values)
        env = template.environment
        context = jinja2.runtime.new_context(env, template.name, template.blocks, {**self.globals, **values}, True)
        try:
            return env.concat(template.root_render_func(context))  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - jinja2 re-raises it with the template's lines in the traceback
            env.handle_exception()

    def key(self, values: dict[str, Any]) -> tuple[object, ...] | None:
        """The memo key of `values` when every input the template reads is a short plain value, else None."""
        if self.names is None:
            return None
        key: list[object] = []
        for name in self.names:
            value = values.get(name, _MISSING)  # a missing input: rendered (and refused) as before
            kind = type(value)
            if kind not in _PLAIN or (kind is str and len(value) > MEMO_TEXT_CHARS):
                return None
            key.append((kind, repr(value) if kind is float else value))  # True, 1 and 1.0 print differently
        return tuple(key)

    def keep(self, key: tuple[object, ...], text: str) -> None:
        if len(self.texts) >= MEMO_ENTRIES:
            self.texts.clear()
        self.texts[key] = text


_memos: weakref.WeakKeyDictionary[jinja2.Template, _Memo] = weakref.WeakKeyDictionary()


def _memo(env: jinja2.Environment, name: str, template: jinja2.Template) -> _Memo:
    """The memo of `template` (one per compiled template: an override edited meanwhile starts a new one)."""
    memo = _memos.get(template)
    if memo is None:
        assert env.loader is not None
        source = env.loader.get_source(env, name)[0]
        tree = env.parse(source)
        imports = (jinja2.nodes.Include, jinja2.nodes.Import, jinja2.nodes.FromImport, jinja2.nodes.Extends)
        names = tuple(sorted(jinja2.meta.find_undeclared_variables(tree)))
        # a global function (lipsum draws at random) or the random filter: not the same text each time
        chance = any(node.name in env.globals for node in tree.find_all(jinja2.nodes.Name)) or any(
            node.name == "random" for node in tree.find_all(jinja2.nodes.Filter))
        standalone = not any(tree.find_all(imports))
        memo = _memos[template] = _Memo(names if standalone and not chance else None,
                                        dict(template.globals) if standalone else None)
    return memo


class TemplateSet:
    """A named set of templates (`NAMES`) from `BUILTIN`, each overridable by a file of the same name."""

    BUILTIN: ClassVar[Path]
    NAMES: ClassVar[tuple[str, ...]]

    def __init__(self, override: Path | None = None) -> None:
        self.override = override
        self.env = _environment(self.BUILTIN, override)
        for name in self.NAMES:  # template syntax errors surface now, not mid-run
            try:
                _memo(self.env, name, self.env.get_template(name))
            except jinja2.TemplateError as exc:
                raise TaskError(f"prompt template {self._where(name)}: {exc}; fix the template") from None

    @classmethod
    def for_task(cls, task: Task) -> Self:
        """The task's overrides (task.yaml `prompts`), else the built-in templates."""
        if not task.config.prompts:
            return cls()
        folder = (task.root / task.config.prompts).resolve()
        if not folder.is_dir():
            raise TaskError(f"task.yaml field 'prompts': {folder} is not a folder; create it or remove the field")
        return cls(folder)

    def _where(self, name: str) -> str:
        if self.override is not None and (self.override / name).is_file():
            return str(self.override / name)
        return f"{name} (built in)"

    def render(self, name: str, values: dict[str, Any]) -> str:
        try:
            template = self.env.get_template(name)
            memo = _memo(self.env, name, template)
            key = memo.key(values)
            text = memo.texts.get(key) if key is not None else None
            if text is None:
                text = memo.render(template, values).strip() + "\n"
                if key is not None:
                    memo.keep(key, text)
            return text
        except jinja2.TemplateError as exc:
            raise TaskError(f"prompt template {self._where(name)}: {exc}; fix the template") from None

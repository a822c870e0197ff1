"""What every evoforge command shares: consoles that never hard-wrap piped output, clean help (usage reads
`RUN_DIR`, flags show no `<bool>`), and the one-line form of user errors.

Kept light on purpose (typer, rich and the errors module only): `evoforge --help` and `status` import it first.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

# A pipe, a file or a test reads every line whole: rich would otherwise cut at 80 columns (or $COLUMNS).
UNWRAPPED_WIDTH = 100_000


def make_console(*, stderr: bool = False) -> Console:
    """A rich console; when the stream is not a terminal, text is never wrapped and tables are as wide as their
    content (a terminal keeps its own width)."""
    console = Console(stderr=stderr)
    if console.is_terminal:
        return console
    return Console(stderr=stderr, width=UNWRAPPED_WIDTH, soft_wrap=True)


console = make_console()
err_console = make_console(stderr=True)


def fail(exc: Exception | str) -> NoReturn:
    """Print a user error as one line on stderr and exit with status 2."""
    err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
    raise typer.Exit(2)


def settings_error(exc: Any, options: Mapping[str, str]) -> str:
    """A pydantic ValidationError of command-line values as one line naming each option, the value given and the
    rule (`--trials 0: must be greater than or equal to 1`), without pydantic's dump and its URL."""
    parts = []
    for error in exc.errors(include_url=False):
        field = str(error["loc"][0]) if error.get("loc") else ""
        option = options.get(field, f"--{field.replace('_', '-')}")
        rule = str(error.get("msg") or "invalid value")
        rule = rule[:1].lower() + rule[1:]
        rule = rule.replace("input should be", "must be")
        parts.append(f"{option} {error.get('input')}: {rule}")
    return "; ".join(parts) or str(exc)


class Interrupted(Exception):
    """A Ctrl-C inside a command, carried past typer (which would end quietly) to the entry point's one line."""


def _tidy(params: list[Any]) -> list[Any]:
    """Parameters are duck-typed: typer may ship its own copy of click."""
    for param in params:
        if param.param_type_name == "argument" and param.metavar is None:
            param.metavar = (param.name or "").upper()
        elif param.param_type_name == "option" and getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""  # typer would show `<bool>` for a flag, which takes no value
    return params


class Command(TyperCommand):
    """A command whose usage line reads `evoforge status [OPTIONS] RUN_DIR` (not `{run_dir}`), whose flags show
    no `<bool>`, and whose Ctrl-C reaches the entry point."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _tidy(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = (param.metavar or (param.name or "").upper()) + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise Interrupted() from exc


class Group(TyperGroup):
    """The command groups (`evoforge`, `evoforge knowledge`): the same tidy help as Command."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _tidy(super().get_params(ctx))

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise Interrupted() from exc


def new_app(help_text: str) -> typer.Typer:
    """A typer app with evoforge's conventions; its commands pass `cls=Command`. Help and usage errors are drawn
    in rich boxes on a terminal, and as plain unwrapped lines (click's) when piped."""
    on_terminal = sys.stdout.isatty() and sys.stderr.isatty()
    return typer.Typer(add_completion=False, no_args_is_help=True, help=help_text, cls=Group,
                       pretty_exceptions_enable=False, rich_markup_mode="rich" if on_terminal else None)

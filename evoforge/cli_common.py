"""What every evoforge command shares: consoles that never hard-wrap piped output, and the one-line form of user
errors.

Kept light on purpose (typer, rich and the errors module only): `evoforge --help` and `status` import it first.
"""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

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

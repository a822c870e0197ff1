"""The `evoforge` command's entry point (also `python -m evoforge`): a Ctrl-C at any moment, even while the
command line is still being imported, ends with one line and exit status 130, and an exception that is not a user
error is reported as an internal error with a short traceback, never dressed up as a one-line user error.

Nothing but the standard library is imported before the `try`, so an interrupt is caught however early it comes.
"""

from __future__ import annotations

import sys
import traceback

INTERRUPTED = 130
INTERNAL_ERROR = 70  # EX_SOFTWARE (sysexits.h)
REPORT = ("this is a bug in evoforge, not in your task: please report it on the evoforge issue tracker with the "
          "command you ran and the lines above (`evoforge --debug ...` shows the whole traceback)")


def main(argv: list[str] | None = None) -> int:
    """Run the command line on `argv` (default: sys.argv[1:]); returns the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        from evoforge.cli import app

        app(args=args, prog_name="evoforge")
    except SystemExit as done:
        return _exit_status(done.code)
    except KeyboardInterrupt:
        return _interrupted()
    except Exception as exc:  # the last line of defence: anything unexpected is a bug to report
        common = sys.modules.get("evoforge.cli_common")  # not imported again: that may be what failed
        if common is not None and isinstance(exc, common.Interrupted):
            return _interrupted()
        if "--debug" in args:
            raise
        _internal_error(exc)
        return INTERNAL_ERROR
    return 0


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _interrupted() -> int:
    print("interrupted (Ctrl-C)", file=sys.stderr)
    return INTERRUPTED


def _internal_error(exc: BaseException) -> None:
    first = f"{type(exc).__name__}: {exc}".splitlines()[0]
    sys.stderr.write(f"internal error: {first}\n")
    sys.stderr.write("".join(traceback.format_exception(exc, limit=-4)))  # the innermost frames: where it broke
    sys.stderr.write(REPORT + "\n")


if __name__ == "__main__":
    sys.exit(main())

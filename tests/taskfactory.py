"""The loop-level task folder, under the name the loop tests import; it lives in helpers.py with the other builders."""

from helpers import knob_task as make_task

__all__ = ["make_task"]

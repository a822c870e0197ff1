"""What the user brings: problem text, seed program, evaluator, knowledge seeds."""

from evoforge.task.loader import Task, load_task

__all__ = ["Task", "load_task"]

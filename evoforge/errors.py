"""Errors a user can cause; the CLI prints each as one line."""


class EvoforgeError(Exception):
    """Base of every user-facing error: the message says what is wrong and what to do."""


class TaskError(EvoforgeError):
    """The task folder is wrong: the message names the file and the field."""


class RunError(EvoforgeError):
    """A run directory is missing, unreadable, or in a state that forbids the command."""

"""The builder's one error type: a message for the user, never a traceback."""


class BuildError(Exception):
    """The checkpoint cannot be built as asked; the message says why and what to do."""

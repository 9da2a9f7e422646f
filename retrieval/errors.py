"""The one exception type for problems a user can cause and fix."""


class RetrievalError(Exception):
    """A user-facing error: the message says what went wrong and what to do.

    The CLI prints it and exits non-zero; the app shows it as a message. Anything
    else that escapes is a bug and keeps its traceback.
    """


def first_line(exc: BaseException) -> str:
    """An exception's first line (at most 300 characters), or its type's name when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__

"""The one exception type for problems a user can cause and fix."""


class RetrievalError(Exception):
    """A user-facing error: the message says what went wrong and what to do.

    The CLI prints it and exits non-zero; the app shows it as a message. Anything
    else that escapes is a bug and keeps its traceback.
    """

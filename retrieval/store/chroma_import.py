"""Importing chromadb, which is most of a cold search's time, at less cost.

``import chromadb`` takes about half a second on an idle machine (a cold ``search``
takes one). Two parts of that are cut here, measured on 2 cores of an AMD EPYC:

- chromadb decorates its classes' methods with the ``overrides`` package's
  ``@override``, which checks each method's signature against its base class's as
  the class is created: about 0.1 s of every import, to check chromadb's own code,
  which its tests do. While chromadb is imported, ``@override`` only marks the
  method (as ``typing.override`` does); anything else imported later gets the
  checking decorator as before.
- A command that will open the store starts the import on a thread of its own
  (``start_in_background``) while the main thread loads the model's text export
  and embeds the query, which spends most of its time outside the interpreter
  lock (ONNX Runtime reading its weights): about 0.1 s more.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading


def _marking_override(method=None, **_checks):
    """``@override`` / ``@override(check_signature=...)`` without the checks."""
    if method is None:
        return _marking_override
    method.__override__ = True
    return method


@contextlib.contextmanager
def _overrides_unchecked():
    try:
        import overrides
    except ImportError:  # a chromadb that no longer uses it
        yield
        return
    saved = overrides.override, overrides.overrides
    overrides.override = overrides.overrides = _marking_override
    try:
        yield
    finally:
        overrides.override, overrides.overrides = saved


_import_lock = threading.Lock()


def import_chromadb():
    """``chromadb``, imported once."""
    with _import_lock:
        if "chromadb" in sys.modules and "chromadb.errors" in sys.modules:
            return sys.modules["chromadb"]
        with _overrides_unchecked():
            module = importlib.import_module("chromadb")
            importlib.import_module("chromadb.errors")
        return module


def start_in_background() -> None:
    """Begin importing chromadb on a thread of its own; whoever needs it first waits for the rest."""
    importlib.import_module("numpy")  # shared by both threads' imports: imported once, here, first

    threading.Thread(target=import_chromadb, name="import-chromadb", daemon=True).start()

"""The app's model, loaded while the page already answers.

``python app.py`` used to load the search model (and, for an empty collection, add the
starter gallery) before serving anything: 5 to 30 s of a blank browser tab. Now the
page is served at once and :class:`ModelLoading` does that work on a thread of its
own. The page shows "Loading the search model…" until it is done, then the notice the
work left (a model that could not be loaded, the starter gallery added) or nothing;
a search asked for meanwhile waits for the model and then runs.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

log = logging.getLogger("retrieval.app")

MODEL_PROBLEM = "**The search model could not be loaded.**"
LOADING_NOTICE = ("**Loading the search model…** The page works meanwhile; a search waits for the model "
                  "and then runs.")


class ModelLoading:
    def __init__(self, work: Callable[[], str]):
        """``work``: loads the model and prepares the collection; returns the notice for the page."""
        self._work = work
        self._done = threading.Event()
        self._notice = ""

    def start(self) -> "ModelLoading":
        threading.Thread(target=self._run, name="load-search-model", daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            self._notice = self._work()
        except Exception as exc:  # noqa: BLE001 - the page says it; the app keeps serving tag search
            log.exception("preparing the collection failed")
            self._notice = f"**The collection could not be prepared:** {exc}"
        finally:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    @property
    def notice(self) -> str:
        """What the top of the page says now."""
        return self._notice if self.done else LOADING_NOTICE

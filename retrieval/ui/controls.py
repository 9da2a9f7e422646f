"""The result controls (how many, how good, which photos, in which order) as one named value.

Every search endpoint takes its own inputs, then the controls. An API client names only
what it needs (``client.predict("a cat", k=12, api_name="/search_text")``): each control
has a default, so a control added later never breaks an older client. The handlers,
the benchmark's clients and the page all use this one definition.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, fields
from typing import Any, Callable

from ..errors import RetrievalError
from ..search.fact_filters import date_range

ORDERS = {"best match": "score", "newest first": "-date", "oldest first": "date"}


class FieldProblem(RetrievalError):
    """A mistake in one field of a search (no query, a date that is no date): the page shows it
    next to that field and keeps the results on screen. ``field``: "query" (the search bar) or
    "options" (the result controls)."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def required(value: Any, message: str) -> Any:
    """``value`` (stripped, if text), or a problem with the search bar's query when it is empty."""
    if isinstance(value, str):
        value = value.strip()
    if value is None or value == "" or value == []:
        raise FieldProblem(message, "query")
    return value


@dataclass(frozen=True)
class ResultControls:
    k: int = 12  # results per page
    min_score: float = 0.0  # 0: no cut-off
    photographer: str | None = None
    source: str | None = None
    camera: str | None = None  # as people name it ("iPhone 15 Pro", "canon")
    after: str | None = None  # taken from: 2024, 2024-06, 2024-06-01
    before: str | None = None  # taken before
    order: str = "best match"  # one of ORDERS
    collapse: bool = False  # near-identical photos as one result ("+N similar")
    contains: str | None = None  # only photos whose text holds these words (phrases apart by commas)
    words: bool = True  # a text query's words found in photos' text rank them too (hybrid)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(field.name for field in fields(cls))

    def request_fields(self) -> dict[str, Any]:
        """As fields of a ``SearchRequest``."""
        filters: dict[str, Any] = {}
        for name in ("photographer", "source", "camera"):
            if getattr(self, name):
                filters[name] = getattr(self, name)
        try:
            taken = date_range(self.after or None, self.before or None)
        except RetrievalError as exc:
            raise FieldProblem(str(exc), "options") from None
        if taken is not None:
            filters["taken_at"] = taken
        contains = [phrase.strip() for phrase in (self.contains or "").split(",") if phrase.strip()]
        return {"k": int(self.k), "min_score": float(self.min_score or 0) or None, "filters": filters,
                "sort": ORDERS.get(self.order or "", "score"), "collapse_duplicates": bool(self.collapse),
                "contains": contains, "hybrid": bool(self.words)}


def with_controls(handler: Callable, *inputs: str, request_type: type | None = None, **optional: Any) -> Callable:
    """``handler(*inputs, *optional, controls)`` as a function of the tab's inputs (``optional``
    ones with their defaults) and then every control by name, each with its default: the
    signature Gradio names the API's parameters by. ``request_type``: the handler also takes
    the web request (Gradio fills a last parameter annotated with it)."""
    keyword = inspect.Parameter.POSITIONAL_OR_KEYWORD
    parameters = [inspect.Parameter(name, keyword) for name in inputs]
    parameters += [inspect.Parameter(name, keyword, default=default) for name, default in optional.items()]
    parameters += [inspect.Parameter(field.name, keyword, default=field.default) for field in fields(ResultControls)]
    if request_type is not None:
        parameters.append(inspect.Parameter("request", keyword, default=None, annotation=request_type))
    signature = inspect.Signature(parameters)
    own = [*inputs, *optional]

    @functools.wraps(handler)
    def run(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = bound.arguments
        controls = ResultControls(**{name: values[name] for name in ResultControls.names()})
        extra = (values["request"],) if request_type is not None else ()
        return handler(*(values[name] for name in own), controls, *extra)

    run.__signature__ = signature
    return run

"""Query logic, testable with hand-made vectors and no model: composed terms (``query_syntax``),
date, camera and place filters (``fact_filters``), ranking, one result per photo and paging
(``searcher``). The filter types themselves are the store contract's (``store/filters.py``)."""

"""Tags as people write them: a list, a JSON list or a comma-separated string, each tag
lower-case and spaced once, each kept once. Metadata tables, data sets and tag queries
all read tags this way."""

from __future__ import annotations

import json
from typing import Any


def parse_tags(value: Any) -> list[str]:
    """A list, a JSON list, or a comma-separated string -> lower-case unique tags."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text.strip("[]").replace("'", "").split(",")
        else:
            value = text.split(",")
    tags: list[str] = []
    for item in value:
        tag = " ".join(str(item).split()).lower()
        if tag and tag not in tags:
            tags.append(tag)
    return tags

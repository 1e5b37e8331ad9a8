"""/metrics as Prometheus reads it: each series and its number, however the client writes it."""

from __future__ import annotations


def samples(text: str | bytes) -> dict[str, float]:
    """{series: value} from the text exposition format, the series as written (`name{labels}`):
    what a scrape stores is the number, so `1`, `1.0` and `1e0` are the same sample."""
    if isinstance(text, bytes):
        text = text.decode()
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            found[series] = float(value)
    return found

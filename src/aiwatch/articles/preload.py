"""Imported by the extraction workers' fork server (articles/workers.py): the extractors,
imported and warmed up once, so that every worker forked from it starts ready.

The first extraction in a fresh process costs about 0.35 s of CPU (the language identifier's
model, the extractors' first calls); done here, before any fork, a worker's first page costs
what every other page does."""

from __future__ import annotations

from .build import page_text  # noqa: F401 - the import is the point
from .extract import extract_article
from .page import Page

_WARM_UP = ("<html lang='en'><head><title>Warm-up</title></head><body><article><h1>Warm-up</h1>"
            + "<p>The extractors read this page once, in the fork server, before any worker starts.</p>" * 8
            + "</article></body></html>")

extract_article(Page("http://localhost/warm-up", _WARM_UP))

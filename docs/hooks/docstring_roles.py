"""MkDocs hook: docstrings cross-reference with Sphinx roles (``:func:`name```), which the Python handler leaves
as text; on the rendered pages the role is dropped and the name stays as code."""

from __future__ import annotations

import re

ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj):(<code>)~?")


def strip_roles(html: str) -> str:
    """``:func:<code>name</code>`` -> ``<code>name</code>`` (a leading ``~`` of the target is dropped too)."""
    return ROLE.sub(r"\1", html)


def on_page_content(html: str, page, config, files) -> str:
    return strip_roles(html)

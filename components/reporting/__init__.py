"""The HTML of every report: one Jinja2 environment over one set of templates.

`templates/base.html` is the layout of every page and inlines
`templates/style.css`, so that each report is one self-contained file;
`templates/macros.html` holds the table, chart and validation blocks both
reports use. Autoescaping is on: file names, reasons and slice values reach
the page as text, never as markup.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

import jinja2

TEMPLATES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


def number(value: Any, digits: int = 4, missing: str = "") -> str:
    """A float with `digits` decimals; `missing` for NaN or None; anything else as it is."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def distribution(counts: Mapping[str, int], top: int = 6) -> str:
    """`value (count)` for the most common values, and how many more there are."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{value} ({count})" for value, count in items[:top])
    return shown + (f", … {len(items) - top} more" if len(items) > top else "")


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True, undefined=jinja2.StrictUndefined,
    extensions=["jinja2.ext.do"], trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
_ENVIRONMENT.filters.update(number=number, distribution=distribution)


def render(template: str, **context: Any) -> str:
    return _ENVIRONMENT.get_template(template).render(**context)

"""Report blocks rendered twice: as markdown and as one self-contained HTML page.

A report is a list of blocks (:class:`Heading`, :class:`Text`, :class:`Bullets`,
:class:`Table`, :class:`Figure`, and :class:`Details`: blocks folded under a one-line
summary). :func:`markdown` links the figures by file name;
:func:`html` embeds them as base64 ``data:`` URIs and its styles in the page, with no
scripts and no reference to anything outside the file.

>>> blocks = [Heading("Times"), Table(["N", "time"], [["64", fmt_seconds(0.00123)]])]
>>> print(markdown(blocks))
## Times
<BLANKLINE>
| N | time |
|---|---|
| 64 | 1.23 ms |
<BLANKLINE>
>>> "<td>1.23 ms</td>" in html(blocks, title="t")
True
"""

from __future__ import annotations

import base64
import html as _html
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Bullets",
    "Details",
    "Figure",
    "Heading",
    "Table",
    "Text",
    "fmt_bytes",
    "fmt_number",
    "fmt_ratio",
    "fmt_seconds",
    "frame_table",
    "html",
    "markdown",
]


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    """A paragraph; ``code`` in backticks is shown as code."""

    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    """A PNG file of the report folder and its caption."""

    path: Path
    caption: str
    alt: str = field(default="")


@dataclass
class Details:
    """``blocks`` folded under the one-line ``summary`` (HTML ``<details>``, which
    GitHub's markdown shows folded too).

    >>> print(markdown([Details("3 more", [Bullets(["a"])])]))
    <details><summary>3 more</summary>
    <BLANKLINE>
    - a
    <BLANKLINE>
    </details>
    <BLANKLINE>
    >>> "<details><summary>3 more</summary><ul><li>a</li></ul></details>" in html(
    ...     [Details("3 more", [Bullets(["a"])])], "t")
    True
    """

    summary: str
    blocks: list = field(default_factory=list)


# --------------------------------------------------------------------------- numbers


def _missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return bool(x != x)  # NaN, pandas NA
    except TypeError:
        return True


def fmt_seconds(s: Any) -> str:
    """``0.00123`` -> ``'1.23 ms'`` (three significant digits; ``'–'`` when missing).

    >>> fmt_seconds(2.5), fmt_seconds(4.2e-5), fmt_seconds(0.00099999), fmt_seconds(None)
    ('2.50 s', '42.0 µs', '1.00 ms', '–')
    """
    if _missing(s):
        return "–"
    s = float(f"{float(s):.3g}")  # round first: 0.0009999 is 1.00 ms, not 1e+03 µs
    for scale, unit in ((1, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if abs(s) >= scale:
            return f"{s / scale:.3g} {unit}" if s / scale >= 100 else f"{s / scale:#.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_bytes(b: Any) -> str:
    """Bytes as MiB or GiB: ``fmt_bytes(3 * 2**30)`` -> ``'3.00 GiB'``.

    >>> fmt_bytes(48281600), fmt_bytes(126 * 2**30)
    ('46.0 MiB', '126 GiB')
    """
    if _missing(b):
        return "–"
    b = float(b)
    value, unit = (b / 2**30, "GiB") if b >= 2**30 else (b / 2**20, "MiB")
    return f"{value:.0f} {unit}" if value >= 100 else f"{value:#.3g} {unit}"


def fmt_number(x: Any, digits: int = 3) -> str:
    """Three significant digits, scientific notation for small or large numbers.

    >>> fmt_number(3.536e-07), fmt_number(0.25), fmt_number(2)
    ('3.54e-07', '0.25', '2')
    """
    if _missing(x):
        return "–"
    x = float(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def fmt_ratio(x: Any) -> str:
    """A speed-up: ``fmt_ratio(12.345)`` -> ``'12.3×'``.

    >>> fmt_ratio(0.0531), fmt_ratio(2304.4)
    ('0.0531×', '2304×')
    """
    if _missing(x):
        return "–"
    x = float(x)
    return f"{x:.0f}×" if x >= 100 else f"{x:.3g}×"


def frame_table(
    df, formats: Mapping[str, Callable[[Any], str]] | None = None, caption: str = ""
) -> Table:
    """A :class:`Table` of a pandas frame: ``formats`` maps columns to formatters of the
    values present; missing values show as ``–``, other cells as text (integers without
    ``.0``)."""
    formats = dict(formats or {})

    def cell(col: str, v: Any) -> str:
        if _missing(v):
            return "–"
        if col in formats:
            return formats[col](v)
        if isinstance(v, float) and math.isfinite(v) and v.is_integer():
            return str(int(v))
        return str(v)

    columns = [str(c) for c in df.columns]
    rows = [[cell(c, v) for c, v in zip(columns, r, strict=True)] for r in df.itertuples(False)]
    return Table(columns, rows, caption)


# --------------------------------------------------------------------------- markdown


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(blocks: Sequence[Any], title: str = "") -> str:
    """The report as GitHub-flavoured markdown (figures linked by file name)."""
    out: list[str] = [f"# {title}"] if title else []
    for b in blocks:
        if isinstance(b, Details):
            inner = markdown(b.blocks).rstrip("\n")
            summary = _html.escape(b.summary, quote=False)
            out.append(f"<details><summary>{summary}</summary>\n\n{inner}\n\n</details>")
        elif isinstance(b, Heading):
            out.append("#" * b.level + " " + b.text)
        elif isinstance(b, Text):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            lines = []
            if b.caption:
                lines.append(f"*{b.caption}*\n")
            lines.append("| " + " | ".join(_md_cell(c) for c in b.columns) + " |")
            lines.append("|" + "---|" * len(b.columns))
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows]
            out.append("\n".join(lines))
        elif isinstance(b, Figure):
            out.append(f"![{b.alt or b.caption}]({b.path.name})\n\n*{b.caption}*")
        else:
            raise TypeError(f"unknown report block {b!r}")
    return "\n\n".join(out) + "\n"


# --------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1, h2, h3 { line-height: 1.2; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: .85em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f2f2f2; }
td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-style: italic; padding: .3em 0; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-style: italic; font-size: .9em; }
code { background: #f4f4f4; padding: 0 .2em; }
p, li, figcaption, summary { overflow-wrap: break-word; }
.scroll { overflow-x: auto; max-width: 100%; }
details { margin: .5em 0 1em; }
summary { cursor: pointer; }
"""


def _inline(text: str, breakable: bool = False) -> str:
    """Escape ``text``; ```code``` becomes ``<code>`` and ``**bold**`` ``<strong>``.
    ``breakable``: a line may break after ``_`` and ``/`` too (table cells: long method
    names and paths then wrap instead of widening the table).

    >>> _inline("a_b/c", breakable=True), _inline("**x** `y`")
    ('a_<wbr>b/<wbr>c', '<strong>x</strong> <code>y</code>')
    """
    out = _html.escape(text)
    if breakable:
        out = re.sub(r"([_/])", r"\1<wbr>", out)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_blocks(blocks: Sequence[Any]) -> list[str]:
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Details):
            inner = "".join(_html_blocks(b.blocks))
            body.append(f"<details><summary>{_inline(b.summary)}</summary>{inner}</details>")
        elif isinstance(b, Heading):
            level = min(max(b.level, 2), 6)
            body.append(f"<h{level}>{_inline(b.text)}</h{level}>")
        elif isinstance(b, Text):
            body.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            items = "".join(f"<li>{_inline(i)}</li>" for i in b.items)
            body.append(f"<ul>{items}</ul>")
        elif isinstance(b, Table):
            cap = f"<caption>{_inline(b.caption)}</caption>" if b.caption else ""
            head = "".join(f"<th>{_inline(c, True)}</th>" for c in b.columns)
            rows = "".join(
                "<tr>" + "".join(f"<td>{_inline(c, True)}</td>" for c in r) + "</tr>"
                for r in b.rows
            )
            body.append(
                f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead>'
                f"<tbody>{rows}</tbody></table></div>"
            )
        elif isinstance(b, Figure):
            alt = _html.escape(b.alt or b.caption, quote=True)
            body.append(
                f'<figure><img src="{_data_uri(b.path)}" alt="{alt}">'
                f"<figcaption>{_inline(b.caption)}</figcaption></figure>"
            )
        else:
            raise TypeError(f"unknown report block {b!r}")
    return body


def html(blocks: Sequence[Any], title: str) -> str:
    """The report as one HTML page: figures embedded, styles inline, no scripts. Wide
    tables scroll inside their box and long words wrap, so the page itself never
    scrolls sideways."""
    body = [f"<h1>{_inline(title)}</h1>", *_html_blocks(blocks)]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )

"""One report document, two renderings: Markdown (figures beside it) and self-contained HTML (figures inline).

The report is built once as a list of blocks; rendering both formats from the same blocks keeps the numbers in
``index.md`` and ``index.html`` identical. The HTML embeds every PNG as a base64 data URI and carries its own
CSS, so it can be mailed or archived as one file, and it runs no script.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2
    anchor: str | None = None


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class BulletList:
    items: Sequence[str]


BEST_CLASS = "best"
FLAGGED_CLASS = "flagged"


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    caption: str = ""
    element_id: str | None = None
    collapsed: bool = False  # long tables: folded in HTML (<details>), full in Markdown
    row_classes: Sequence[str] = ()
    # (row, column) -> CSS class; "best" cells are also bold in Markdown, "flagged" ones carry their own marker
    cell_classes: Mapping[tuple[int, int], str] = field(default_factory=dict)


@dataclass(frozen=True)
class Figure:
    path: Path  # the PNG on disk, under the report folder
    caption: str
    alt: str = ""


@dataclass(frozen=True)
class Warnings:
    items: Sequence[str]
    title: str = "Warnings: inputs left out or not computed"


Block = Heading | Paragraph | BulletList | Table | Figure | Warnings


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> None:
        self.blocks.extend(blocks)


# --- Markdown -------------------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_marked(block: Table, row: int, column: int, text: str) -> str:
    return f"**{text}**" if block.cell_classes.get((row, column)) == BEST_CLASS else text


def to_markdown(document: Document, report_dir: Path) -> str:
    lines = [f"# {document.title}", ""]
    for block in document.blocks:
        if isinstance(block, Heading):
            lines += [f"{'#' * block.level} {block.text}", ""]
        elif isinstance(block, Paragraph):
            lines += [block.text, ""]
        elif isinstance(block, BulletList):
            lines += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            if block.caption:
                lines += [f"*{block.caption}*", ""]
            lines.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
            lines.append("|" + "|".join("---" for _ in block.header) + "|")
            lines += ["| " + " | ".join(_md_cell(_md_marked(block, r, c, text)) for c, text in enumerate(row)) + " |"
                      for r, row in enumerate(block.rows)]
            lines.append("")
        elif isinstance(block, Figure):
            relative = block.path.relative_to(report_dir).as_posix()
            lines += [f"![{block.alt or block.caption}]({relative})", "", f"*{block.caption}*", ""]
        elif isinstance(block, Warnings):
            if block.items:
                lines += [f"> **{block.title}**", ">"] + [f"> - {item}" for item in block.items] + [""]
    return "\n".join(lines).rstrip() + "\n"


# --- HTML -----------------------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 1240px;
       color: #1a1a1a; line-height: 1.45; padding: 0 12px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 1.6em; }
.table-wrap { overflow-x: auto; margin: 8px 0 16px; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { border: 1px solid #d0d0d0; padding: 3px 6px; text-align: right; white-space: nowrap; }
th { background: #f1f3f6; white-space: normal; max-width: 7.5em; vertical-align: bottom; } td:first-child, th:first-child { text-align: left; font-weight: 600; }
tr.aggregate td { background: #fafbfd; } caption { caption-side: top; text-align: left; font-style: italic;
       padding-bottom: 4px; color: #444; }
figure { margin: 12px 0 20px; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; }
.warnings { background: #fff7e6; border: 1px solid #f0c36d; padding: 8px 14px; border-radius: 4px; }
.verdict-holds { color: #17643a; font-weight: 700; } .verdict-does-not-hold { color: #a32020; font-weight: 700; }
.verdict-not-assessable { color: #8a6d00; font-weight: 700; } .verdict-inconclusive { color: #1f4f8a; font-weight: 700; }
td.best { font-weight: 700; background: #e6f3e9; } td.flagged { background: #fbe4e4; color: #8a1c1c; }
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _html_table(block: Table) -> str:
    table_id = f' id="{_esc(block.element_id)}"' if block.element_id else ""
    caption = f"<caption>{_esc(block.caption)}</caption>" if block.caption else ""
    head = "".join(f"<th>{_esc(h)}</th>" for h in block.header)
    body = []
    for index, row in enumerate(block.rows):
        css = block.row_classes[index] if index < len(block.row_classes) and block.row_classes[index] else ""
        cls = f' class="{_esc(css)}"' if css else ""
        cells = []
        for column, text in enumerate(row):
            css_cell = block.cell_classes.get((index, column))
            cells.append(f'<td class="{_esc(css_cell)}">{_esc(text)}</td>' if css_cell else f"<td>{_esc(text)}</td>")
        body.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    table = (f'<div class="table-wrap"><table{table_id}>{caption}<thead><tr>{head}</tr></thead>'
             f"<tbody>{''.join(body)}</tbody></table></div>")
    if block.collapsed:
        summary = _esc(block.caption or "table")
        return f"<details><summary>{summary} ({len(block.rows)} rows)</summary>{table}</details>"
    return table


def _verdict_markup(text: str) -> str:
    """Escaped text, with the verdict words of the lessons section coloured."""
    escaped = _esc(text)
    for verdict in ("does not hold", "not assessable", "inconclusive", "holds"):
        token = f"**{verdict}**"
        if token in escaped:
            css = "verdict-" + verdict.replace(" ", "-")
            return escaped.replace(token, f'<span class="{css}">{verdict}</span>')
    return escaped


def to_html(document: Document) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{_esc(document.title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
             f"<h1>{_esc(document.title)}</h1>"]
    for block in document.blocks:
        if isinstance(block, Heading):
            anchor = f' id="{_esc(block.anchor)}"' if block.anchor else ""
            parts.append(f"<h{block.level}{anchor}>{_esc(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            parts.append(f"<p>{_verdict_markup(block.text)}</p>")
        elif isinstance(block, BulletList):
            parts.append("<ul>" + "".join(f"<li>{_verdict_markup(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            parts.append(_html_table(block))
        elif isinstance(block, Figure):
            parts.append(f'<figure><img src="{_data_uri(block.path)}" alt="{_esc(block.alt or block.caption)}">'
                         f"<figcaption>{_esc(block.caption)}</figcaption></figure>")
        elif isinstance(block, Warnings):
            if block.items:
                items = "".join(f"<li>{_esc(i)}</li>" for i in block.items)
                parts.append(f'<div class="warnings"><strong>{_esc(block.title)}</strong><ul>{items}</ul></div>')
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"

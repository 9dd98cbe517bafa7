"""Read rendered reports back into cells, so tests compare values rather than whitespace."""

from __future__ import annotations

from html.parser import HTMLParser


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every pipe table of a Markdown text as rows of stripped cells (header first, rule row dropped)."""
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if current is None:
                current = []
                tables.append(current)
            if not all(set(c) <= set(":-") for c in cells):
                current.append(cells)
        else:
            current = None
    return tables


class _TableCells(HTMLParser):
    """The text of every <th>/<td> of every table, as tables of rows."""

    def __init__(self):
        super().__init__()
        self.tables, self.cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("th", "td"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag in ("th", "td"):
            self.tables[-1][-1].append(self.cell.strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def html_tables(page: str) -> list[list[list[str]]]:
    """Every <table> of an HTML page as rows of cell texts (header row first)."""
    parser = _TableCells()
    parser.feed(page)
    return parser.tables

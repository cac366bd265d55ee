"""Read the usage page's HTML back into numbers: each table's rows (``data-key`` → ``data-value``),
the totals cards and the links, with the standard library's parser (no browser)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Page:
    tables: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    links: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    """Per table: ``(first cell text, href)`` of each row that links somewhere."""
    totals: dict[str, str] = field(default_factory=dict)
    hrefs: list[str] = field(default_factory=list)
    srcs: list[str] = field(default_factory=list)
    csv: dict[str, str] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._table: str | None = None
        self._row: dict[str, str] | None = None
        self._link: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.page.tags.add(tag)
        if "href" in a:
            self.page.hrefs.append(a["href"])
        if "src" in a:
            self.page.srcs.append(a["src"])
        if "data-csv" in a:
            self.page.csv[a["data-csv"]] = a["href"]
        if "data-total" in a and "data-value" in a:
            self.page.totals[a["data-total"]] = a["data-value"]
        if tag == "table" and "data-table" in a:
            self._table = a["data-table"]
            self.page.tables[self._table] = []
            self.page.links[self._table] = []
        elif tag == "tr" and self._table:
            self._row = {}
        elif tag == "td" and self._row is not None:
            self._row[a["data-key"]] = a["data-value"]
        elif tag == "a" and self._row is not None:
            self._link = a["href"]
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._link is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._link is not None and self._table:
            self.page.links[self._table].append(("".join(self._text), self._link))
            self._link = None
        elif tag == "tr" and self._row is not None and self._table:
            if self._row:
                self.page.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None


def parse(html: str) -> Page:
    """The page's tables, totals and links."""
    p = _Parser()
    p.feed(html)
    return p.page

"""One message per batch, in Chinese or English: a header line and one line per finding.

``llmtally: 3 findings (provisional, 2026-12-02 14:00)`` then, most urgent first,
``🔴 **Critical: Budget passed** — feature chat used 104% of its December budget [details](…)``.
Chat channels choose the markup (:data:`MARKDOWN`, :data:`SLACK`, :data:`PLAIN`) and a size limit;
:func:`fit` keeps whole lines and ends with ``… N more`` when they do not all fit.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._time import zone
from ._finding import AlertBatch, Finding

__all__ = [
    "MARKDOWN",
    "PLAIN",
    "SLACK",
    "Markup",
    "finding_line",
    "fit",
    "header",
    "html_body",
    "lines",
    "more_line",
    "run_line",
    "severity_label",
    "truncate_bytes",
]

_WORDS = {
    "en": {
        "findings": "{n} findings",
        "finding": "1 finding",
        "provisional": "provisional, ",
        "info": "Info",
        "warning": "Warning",
        "critical": "Critical",
        "details": "details",
        "more": "… {n} more",
        "run": "Run: {dag} / {run}",
        "colon": ": ",
    },
    "zh": {
        "findings": "{n} 条发现",
        "finding": "1 条发现",
        "provisional": "临时,",
        "info": "提示",
        "warning": "警告",
        "critical": "严重",
        "details": "详情",
        "more": "…… 另有 {n} 条",
        "run": "运行:{dag} / {run}",
        "colon": ":",
    },
}
_MARKS = {"info": "🔵", "warning": "🟠", "critical": "🔴"}


@dataclass(frozen=True)
class Markup:
    """How a channel writes bold text and links, and escapes plain words."""

    bold: Callable[[str], str]
    link: Callable[[str, str], str]
    escape: Callable[[str], str]


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn reserves exactly these three characters
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_MARKDOWN_SAFE = str.maketrans({"<": "＜", ">": "＞", "[": "［", "]": "］", "*": "＊", "`": "｀"})


def _markdown_escape(text: str) -> str:
    # Names are user-controlled (feature, user, tenant tags): no links, tags (Feishu's <at id=all>),
    # emphasis or code from them; full-width look-alikes read the same and mean nothing
    return text.translate(_MARKDOWN_SAFE)


MARKDOWN = Markup(bold=lambda s: f"**{s}**", link=lambda t, u: f"[{t}]({u})", escape=_markdown_escape)
"""DingTalk, Feishu card and WeCom markdown."""
SLACK = Markup(bold=lambda s: f"*{s}*", link=lambda t, u: f"<{u}|{t}>", escape=_slack_escape)
"""Slack ``mrkdwn``."""
PLAIN = Markup(bold=lambda s: s, link=lambda t, u: f"{t}: {u}", escape=lambda s: s)
"""Plain text (email, the Slack notification fallback)."""


def _w(lang: str, word: str) -> str:
    return _WORDS[lang][word]


def header(batch: AlertBatch) -> str:
    """``llmtally: 3 findings (provisional, 2026-12-02 14:00)``; a final run shows its day."""
    lang, n = batch.lang, len(batch.findings)
    count = _w(lang, "finding") if n == 1 else _w(lang, "findings").format(n=n)
    if batch.run.provisional:
        local = batch.generated_at.astimezone(zone(batch.timezone))
        when = _w(lang, "provisional") + local.strftime("%Y-%m-%d %H:%M")
    else:
        when = batch.run.day.isoformat()
    if lang == "zh":
        return f"llmtally:{count}({when})"
    return f"llmtally: {count} ({when})"


def severity_label(severity: str, lang: str) -> str:
    """``Critical`` / ``严重`` …"""
    return _w(lang, severity)


def more_line(n: int, lang: str) -> str:
    """``… 3 more`` / ``…… 另有 3 条``."""
    return _w(lang, "more").format(n=n)


def run_line(batch: AlertBatch) -> str | None:
    """``Run: dag / run id`` when the batch came from a DAG run."""
    if not batch.run.dag_id:
        return None
    return _w(batch.lang, "run").format(dag=batch.run.dag_id, run=batch.run.run_id or "-")


def finding_line(finding: Finding, lang: str, markup: Markup) -> str:
    """One finding on one line: mark, bold severity and title, text, link."""
    title = markup.escape(finding.title_in(lang))
    label = severity_label(finding.severity, lang) + _w(lang, "colon") + title
    line = f"{_MARKS[finding.severity]} {markup.bold(label)}"
    text = finding.text_in(lang)
    if text:
        line += f" — {markup.escape(text)}"
    if finding.url:
        line += " " + markup.link(_w(lang, "details"), finding.url)
    return " ".join(line.split())  # a finding is one line whatever its words hold


def lines(batch: AlertBatch, markup: Markup) -> list[str]:
    """The finding lines of a batch, in its order."""
    return [finding_line(f, batch.lang, markup) for f in batch.findings]


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def truncate_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character, ending in ``…``."""
    if _size(text) <= limit:
        return text
    cut = text.encode("utf-8")[: max(limit - _size("…"), 0)].decode("utf-8", "ignore")
    return cut + "…" if _size(cut + "…") <= limit else cut


def fit(
    head: str | None,
    body: Sequence[str],
    limit: int,
    lang: str,
    sep: str = "\n",
    foot: str | None = None,
) -> str:
    """``head``, as many whole ``body`` lines as fit in ``limit`` UTF-8 bytes, ``… N more``, ``foot``.

    ``head`` and ``foot`` are always kept (cut only if they alone exceed the limit).
    """
    tail = [foot] if foot else []
    out = [head] if head else []
    full = sep.join([*out, *body, *tail])
    if _size(full) <= limit:
        return full
    room = limit - (_size(sep) + _size(foot) if foot else 0)
    used = _size(sep.join(out))
    for i, line in enumerate(body):
        gap = _size(sep) if out else 0
        need = used + gap + _size(line)
        rest = len(body) - i - 1
        if rest:
            need += _size(sep) + _size(more_line(rest, lang))
        if need > room:
            break
        out.append(line)
        used += gap + _size(line)
    shown = len(out) - (1 if head else 0)
    out.append(more_line(len(body) - shown, lang))
    return truncate_bytes(sep.join([*out, *tail]), limit)  # only when head and foot alone are too long


def html_body(batch: AlertBatch) -> str:
    """A small HTML page of the batch (the email's HTML part)."""
    lang = batch.lang
    items = []
    for f in batch.findings:
        label = html.escape(severity_label(f.severity, lang) + _w(lang, "colon") + f.title_in(lang))
        item = f"{_MARKS[f.severity]} <strong>{label}</strong>"
        if f.text_in(lang):
            item += f" — {html.escape(f.text_in(lang))}"
        if f.url:
            item += f' <a href="{html.escape(f.url, quote=True)}">{html.escape(_w(lang, "details"))}</a>'
        items.append(f"<li>{item}</li>")
    run = run_line(batch)
    footer = f'<p style="color:#666">{html.escape(run)}</p>' if run else ""
    return (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"></head>'
        f"<body><h3>{html.escape(header(batch))}</h3><ul>{''.join(items)}</ul>{footer}</body></html>"
    )

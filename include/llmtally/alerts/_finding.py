"""What an alert says: a :class:`Finding`, and the :class:`AlertBatch` one message carries.

Findings are built by the caller (budget checks, hour spikes, silence detection) with their words
already localized; a channel only lays them out.  ``data`` holds numbers and names, never prompt or
completion text, and must survive :func:`json.dumps` unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, TypeAlias

from .._exceptions import InputError

__all__ = ["LANGS", "SEVERITIES", "AlertBatch", "Finding", "JSONValue", "RunInfo", "Severity"]

Severity: TypeAlias = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "critical")
"""Severities from least to most urgent."""
LANGS = ("zh", "en")
"""The languages findings are written in and messages rendered in."""

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None


def _check_json(value: Any, where: str) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"finding data {where} is {value!r}: use a finite number or null")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for k, item in value.items():
            if not isinstance(k, str):
                raise InputError(f"finding data {where} has key {k!r}: keys must be strings")
            _check_json(item, f"{where}.{k}")
        return
    raise InputError(
        f"finding data {where} is a {type(value).__name__}: use numbers, strings, lists and dicts "
        "(convert dates with .isoformat())"
    )


def _check_words(words: Mapping[str, str], what: str, key: str) -> None:
    if not isinstance(words, Mapping) or not any(words.get(lang) for lang in LANGS):
        raise InputError(f"finding {key!r}: {what} needs a 'zh' or 'en' entry, e.g. {{'en': '…'}}")
    for lang, value in words.items():
        if lang not in LANGS or not isinstance(value, str):
            raise InputError(f"finding {key!r}: {what}[{lang!r}] must be a string keyed 'zh' or 'en'")


@dataclass(frozen=True)
class Finding:
    """One thing worth telling someone about, e.g. a budget passed or an hour far above normal.

    ``key`` is stable across runs for the same finding (``"budget:feature=chat:2026-12"``); a batch
    keeps the first finding of each key.  ``title`` and ``text`` are keyed by language (``"zh"``,
    ``"en"``); a missing language falls back to the other.
    """

    kind: str
    key: str
    severity: Severity
    title: Mapping[str, str]
    text: Mapping[str, str]
    data: Mapping[str, JSONValue] = field(default_factory=dict)
    url: str | None = None

    def __post_init__(self) -> None:
        if not self.kind or not self.key:
            raise InputError("a finding needs a kind and a key (the key names it across runs)")
        if self.severity not in SEVERITIES:
            raise InputError(f"finding {self.key!r}: severity {self.severity!r} is not one of {SEVERITIES}")
        _check_words(self.title, "title", self.key)
        _check_words(self.text, "text", self.key)
        _check_json(dict(self.data), "")

    def title_in(self, lang: str) -> str:
        """The title in ``lang``, else in the other language."""
        return _pick(self.title, lang)

    def text_in(self, lang: str) -> str:
        """The text in ``lang``, else in the other language (may be empty)."""
        return _pick(self.text, lang)

    @property
    def rank(self) -> int:
        """0 (info) … 2 (critical)."""
        return SEVERITIES.index(self.severity)


def _pick(words: Mapping[str, str], lang: str) -> str:
    if words.get(lang):
        return words[lang]
    return next((words[other] for other in LANGS if words.get(other)), "")


@dataclass(frozen=True)
class RunInfo:
    """Which run raised the findings: the DAG and run ids, the day and whether it is provisional.

    A provisional run looks at a day still in progress (its numbers will grow); the daily run after
    the day closes is final.
    """

    day: date
    dag_id: str | None = None
    run_id: str | None = None
    provisional: bool = False


@dataclass(frozen=True)
class AlertBatch:
    """The findings of one run for one channel: what one message carries.

    ``findings`` are ordered most urgent first; ``generated_at`` is an aware UTC instant, shown in
    ``timezone`` (IANA name) in the message; ``lang`` is ``"zh"`` or ``"en"``.
    """

    findings: Sequence[Finding]
    run: RunInfo
    generated_at: datetime
    lang: str = "zh"
    timezone: str = "Asia/Shanghai"

    def __post_init__(self) -> None:
        if self.lang not in LANGS:
            raise InputError(f"alert language {self.lang!r} is not one of {LANGS}")
        if self.generated_at.tzinfo is None:
            raise InputError("AlertBatch.generated_at must be an aware datetime (UTC)")

    @property
    def severity(self) -> Severity:
        """The most urgent severity in the batch (``info`` when empty)."""
        return max((f.severity for f in self.findings), key=SEVERITIES.index, default="info")

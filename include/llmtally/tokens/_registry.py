"""The tokenizer registry: model name -> tokenizer source -> cached counter.

Explicit, lazy and thread-safe.  Sources are resolved in this order:

1. a ``[models."NAME"]`` entry of ``llmtally.toml`` (its ``tokenizer`` is resolved in turn);
2. an existing folder of Hugging Face tokenizer files;
3. a built-in exact name (``builtin_models.toml``, case-insensitive);
4. an OpenAI model or tiktoken encoding name tiktoken knows;
5. the longest built-in prefix (for an ``org/name`` only prefixes with a ``/``, e.g. ``openai/``);
6. a Hugging Face repo id (``org/name``), fetched through the Hub cache.

Anything else raises :class:`~llmtally.UnknownModelError` -- never a guess.
"""

from __future__ import annotations

import functools
import os
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .._config import Config, load_config
from .._exceptions import ConfigError, UnknownModelError
from ._base import TokenCounter
from ._hf import load_hf_folder
from ._hub import fetch_repo, looks_like_repo_id
from ._openai import load_tiktoken

__all__ = ["Registry", "Resolution", "default_registry", "load_tokenizer", "resolve_model"]

Kind = Literal["folder", "hub", "tiktoken"]


@dataclass(frozen=True)
class Resolution:
    """Where a model name's tokenizer comes from."""

    kind: Kind
    target: str
    chain: tuple[str, ...] = ()
    template_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """Cache key: same files and template defaults share one counter."""
        return (self.kind, self.target, tuple(sorted((k, repr(v)) for k, v in self.template_kwargs.items())))


@functools.cache
def _builtin_tables() -> tuple[dict[str, str], list[tuple[str, str]]]:
    text = resources.files(__package__).joinpath("builtin_models.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    exact = {k.lower(): v for k, v in data.get("exact", {}).items()}
    prefix = sorted(((k.lower(), v) for k, v in data.get("prefix", {}).items()), key=lambda kv: -len(kv[0]))
    return exact, prefix


def _tiktoken_encoding(name: str) -> str | None:
    try:
        import tiktoken
        import tiktoken.model
    except ImportError:  # pragma: no cover - tiktoken is a core dependency
        return None
    if name in tiktoken.list_encoding_names():
        return name
    try:
        return str(tiktoken.model.encoding_name_for_model(name))
    except KeyError:
        return None


class Registry:
    """Resolves model names to counters; one loaded counter per distinct source."""

    def __init__(self, config: Config | None = None) -> None:
        self._config = config
        self._user: dict[str, tuple[str, Mapping[str, Any]]] = {}
        self._counters: dict[tuple[str, str, tuple[tuple[str, str], ...]], TokenCounter] = {}
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str, tuple[tuple[str, str], ...]], threading.Lock] = {}

    def register(self, name: str, tokenizer: str, **template_kwargs: Any) -> None:
        """Map ``name`` to a tokenizer source, as a ``[models]`` entry in llmtally.toml would."""
        if not name or not tokenizer:
            raise ConfigError("register() needs a model name and a tokenizer source")
        with self._lock:
            self._user[name] = (tokenizer, dict(template_kwargs))

    def _entries(self) -> dict[str, tuple[str, Mapping[str, Any]]]:
        cfg = self._config if self._config is not None else load_config()
        entries = {n: (e.tokenizer, e.template_kwargs) for n, e in cfg.models.items() if e.tokenizer}
        with self._lock:
            entries.update(self._user)
        return entries

    def resolve(self, source: str) -> Resolution:
        """Where ``source`` (a model name, folder, repo id or encoding) gets its tokenizer."""
        if not isinstance(source, str) or not source.strip():
            raise UnknownModelError(str(source), "empty model name")
        entries = self._entries()
        exact, prefixes = _builtin_tables()
        chain: list[str] = []
        kwargs: dict[str, Any] = {}
        current = source.strip()
        while True:
            if current in chain:
                raise ConfigError(f"model aliases loop: {' -> '.join([*chain, current])}")
            chain.append(current)
            if current in entries:
                target, extra = entries[current]
                kwargs = {**extra, **kwargs}
                current = target
                continue
            if Path(current).expanduser().is_dir():
                return Resolution("folder", str(Path(current).expanduser().resolve()), tuple(chain), kwargs)
            if current.lower() in exact:
                current = exact[current.lower()]
                continue
            enc = _tiktoken_encoding(current)
            if enc is not None:
                return Resolution("tiktoken", enc, tuple(chain), kwargs)
            repo = looks_like_repo_id(current)
            low = current.lower()
            hit = next((t for p, t in prefixes if low.startswith(p) and (not repo or "/" in p)), None)
            if hit is not None:
                current = hit
                continue
            if repo:
                return Resolution("hub", current, tuple(chain), kwargs)
            raise UnknownModelError(source, None if len(chain) == 1 else "via " + " -> ".join(chain))

    def load(self, source: str) -> TokenCounter:
        """The counter for ``source``, loaded once and shared (thread-safe)."""
        res = self.resolve(source)
        key = res.key
        with self._lock:
            counter = self._counters.get(key)
            if counter is not None:
                return counter
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                counter = self._counters.get(key)
            if counter is None:
                counter = self._load(res)
                with self._lock:
                    self._counters[key] = counter
                    self._loading.pop(key, None)
        return counter

    @staticmethod
    def _load(res: Resolution) -> TokenCounter:
        if res.kind == "tiktoken":
            return load_tiktoken(res.target)
        folder = res.target if res.kind == "folder" else str(fetch_repo(res.target))
        return load_hf_folder(folder, name=res.target, template_defaults=res.template_kwargs)

    def clear(self) -> None:
        """Forget loaded counters and registered names."""
        with self._lock:
            self._counters.clear()
            self._user.clear()


_default: Registry | None = None
_default_lock = threading.Lock()


def default_registry() -> Registry:
    """The process-wide registry (reads llmtally.toml from ``LLMTALLY_CONFIG`` or the working dir)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Registry()
            os.register_at_fork(after_in_child=_reset_after_fork)
        return _default


def _reset_after_fork() -> None:
    global _default
    _default = None


def resolve_model(source: str) -> Resolution:
    """Resolve with the default registry."""
    return default_registry().resolve(source)


def load_tokenizer(source: str) -> TokenCounter:
    """A counter for a model name, tokenizer folder, Hugging Face repo id or OpenAI model.

    >>> counter = load_tokenizer("gpt-4o")            # doctest: +SKIP
    >>> counter.count_messages([{"role": "user", "content": "你好"}])   # doctest: +SKIP
    """
    return default_registry().load(source)

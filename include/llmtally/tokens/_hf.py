"""Counters for Hugging Face tokenizer folders (``tokenizer.json`` + chat template).

Counting uses the ``tokenizers`` library directly and renders chat templates with
:class:`~llmtally.tokens._template.ChatTemplate`, so recount workers never import transformers.
A prompt is counted as transformers' ``apply_chat_template(..., tokenize=True)`` and vLLM's chat
endpoint count it: render the template, then encode the string with ``add_special_tokens=False``
(special tokens written by the template, or typed by a user, parse as single tokens).
``tokenizer.json`` is first changed as ``AutoTokenizer`` changes it for the folder's
``tokenizer_config.json`` (the tokenizer class's own pipeline, ``legacy``, ``add_prefix_space``,
added tokens, ``split_special_tokens``: see ``_hf_classes``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from .._exceptions import InputError, TokenizerLoadError
from ._base import BatchItem
from ._completion import generated_text
from ._hf_classes import NAMED_SPECIALS as _SPECIAL_TOKEN_KEYS
from ._hf_classes import as_transformers_loads
from ._render_pool import RenderPool, processes, render_item
from ._segments import SegmentCounter, segment_splitter
from ._template import ChatTemplate

__all__ = ["HFCounter", "load_hf_folder"]

_CHUNK = 512
_POOL_MIN = 16384  # chats in one batch before rendering moves to worker processes (start-up ~0.4 s)


def _token_text(value: Any) -> str | None:
    """A special token as written in tokenizer_config.json: a string or an ``AddedToken`` dict."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TokenizerLoadError(f"cannot read {path}: {exc}") from exc


def _chat_templates(folder: Path, config: Mapping[str, Any]) -> dict[str, str]:
    """Chat templates by name, with transformers' precedence:
    ``chat_template.jinja`` > ``chat_template.json`` > ``tokenizer_config.json``."""
    templates: dict[str, str] = {}
    raw = config.get("chat_template")
    if isinstance(raw, str):
        templates["default"] = raw
    elif isinstance(raw, list):
        for entry in raw:
            if isinstance(entry, Mapping) and isinstance(entry.get("template"), str):
                templates[str(entry.get("name", "default"))] = str(entry["template"])
    js = folder / "chat_template.json"
    if js.is_file():
        data = _read_json(js)
        tpl = data.get("chat_template") if isinstance(data, Mapping) else None
        if isinstance(tpl, str):
            templates["default"] = tpl
    jinja_file = folder / "chat_template.jinja"
    if jinja_file.is_file():
        templates["default"] = jinja_file.read_text(encoding="utf-8")
    extra = folder / "additional_chat_templates"
    if extra.is_dir():
        for f in sorted(extra.glob("*.jinja")):
            templates[f.stem] = f.read_text(encoding="utf-8")
    return templates


def _special_tokens(folder: Path, config: Mapping[str, Any]) -> dict[str, str]:
    merged: dict[str, Any] = {}
    stm = folder / "special_tokens_map.json"
    if stm.is_file():
        data = _read_json(stm)
        if isinstance(data, Mapping):
            merged.update(data)
    merged.update({k: v for k, v in config.items() if k in _SPECIAL_TOKEN_KEYS})
    out: dict[str, str] = {}
    for key in _SPECIAL_TOKEN_KEYS:
        text = _token_text(merged.get(key))
        if text is not None:
            out[key] = text
    return out


def _clean(text: str) -> str:
    """Replace lone surrogates (invalid in UTF-8) with U+FFFD, as a JSON-to-UTF-8 decoder would."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _check_text(text: object, what: str = "text") -> str:
    if not isinstance(text, str):
        raise InputError(f"{what} must be a string, not {type(text).__name__}")
    return text


class HFCounter:
    """Exact counter over a Hugging Face ``tokenizer.json`` and its chat template."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        template: ChatTemplate | None,
        *,
        name: str,
        fingerprint: str,
        template_defaults: Mapping[str, Any] | None = None,
        splitter: re.Pattern[str] | None = None,
        loaded_as: tuple[str, ...] = (),
    ) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tok = tokenizer
        self._template = template
        self._name = name
        self._fingerprint = fingerprint
        self._defaults = dict(template_defaults or {})
        self._splitter = splitter
        self._segments = SegmentCounter(splitter, self._encode_lengths) if splitter is not None else None
        self._pool: RenderPool | None = None
        self._end_tokens: tuple[str, ...] | None = None
        self._loaded_as = loaded_as

    def __repr__(self) -> str:
        return f"HFCounter(name={self._name!r}, fingerprint={self._fingerprint!r})"

    @property
    def name(self) -> str:
        """The folder or repo id this counter was loaded from."""
        return self._name

    @property
    def fingerprint(self) -> str:
        """Hash of ``tokenizer.json``, the chat templates and the special tokens."""
        return self._fingerprint

    @property
    def loaded_as(self) -> tuple[str, ...]:
        """What transformers' ``AutoTokenizer`` changes in ``tokenizer.json`` for this folder's
        ``tokenizer_config.json``, and the counter changed alike (see ``_hf_classes``)."""
        return self._loaded_as

    @property
    def counts_stop_token(self) -> bool:
        """Open-model engines (vLLM, SGLang, TGI, transformers) bill the stop token they generate."""
        return True

    @property
    def template(self) -> ChatTemplate | None:
        """The chat template, or ``None`` when the folder has none."""
        return self._template

    @property
    def backend(self) -> Tokenizer:
        """The underlying ``tokenizers.Tokenizer``."""
        return self._tok

    @property
    def splits_on_added_tokens(self) -> bool:
        """Whether pieces between added tokens are counted independently (see ``_segments``)."""
        return self._splitter is not None

    def with_piece_counter(self, count_pieces: Callable[[list[str]], list[int]]) -> HFCounter:
        """A counter sharing this one's tokenizer and template whose pieces between added tokens are
        counted by ``count_pieces`` (a recount engine); needs :attr:`splits_on_added_tokens`."""
        if self._splitter is None:
            raise TokenizerLoadError(f"{self._name}: pieces between added tokens are not context-free")
        twin = HFCounter(
            self._tok,
            self._template,
            name=self._name,
            fingerprint=self._fingerprint,
            template_defaults=self._defaults,
            loaded_as=self._loaded_as,
        )
        twin._splitter = self._splitter
        twin._segments = SegmentCounter(self._splitter, count_pieces)
        return twin

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
        add_generation_prompt: bool = True,
        **template_kwargs: Any,
    ) -> str:
        """The prompt string the server tokenizes for this chat."""
        del tool_choice  # HF templates do not see tool_choice; vLLM applies it outside the prompt
        kwargs = {**self._defaults, **template_kwargs}
        return self._chat_template().render(
            messages, tools=tools, add_generation_prompt=add_generation_prompt, **kwargs
        )

    def _chat_template(self) -> ChatTemplate:
        if self._template is None:
            raise TokenizerLoadError(
                f"{self._name} has no chat template (tokenizer_config.json 'chat_template', "
                "chat_template.jinja or chat_template.json); count plain text with count() instead"
            )
        return self._template

    def _encode_lengths(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        try:
            encs = self._tok.encode_batch_fast(texts, add_special_tokens=False)
        except TypeError as exc:
            # tokenizers refuses str holding lone surrogates; retry once with them replaced
            cleaned = [_clean(t) for t in texts]
            if cleaned == texts:
                raise InputError(f"tokenizer failed on input: {exc}") from exc
            encs = self._tok.encode_batch_fast(cleaned, add_special_tokens=False)
        return [len(e.ids) for e in encs]

    def count(self, text: str, *, add_special_tokens: bool = False) -> int:
        """Tokens of ``text``; ``add_special_tokens=True`` adds what the tokenizer's post-processor
        adds (e.g. BOS), as a completions endpoint does for a raw prompt."""
        _check_text(text)
        if add_special_tokens:
            try:
                return len(self._tok.encode(text, add_special_tokens=True).ids)
            except TypeError:
                return len(self._tok.encode(_clean(text), add_special_tokens=True).ids)
        if not text:
            return 0
        return self._lengths([text])[0]

    def _lengths(self, texts: list[str]) -> list[int]:
        if self._segments is not None:
            return self._segments.count(texts)
        return self._encode_lengths(texts)

    def count_messages(
        self,
        messages: Sequence[Mapping[str, Any]],
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: Any = None,
        add_generation_prompt: bool = True,
        **template_kwargs: Any,
    ) -> int:
        """Prompt tokens the server bills: the rendered template, encoded without added specials."""
        rendered = self.render(messages, tools, tool_choice, add_generation_prompt, **template_kwargs)
        return self._lengths([rendered])[0] if rendered else 0

    def render_item(self, item: BatchItem) -> str:
        """The string a batch item is encoded as (a text as is, a chat rendered)."""
        if isinstance(item, str):
            return item
        return render_item(self._chat_template(), self._defaults, item)

    def _rendered_chunks(self, items: Sequence[BatchItem]) -> Iterator[list[str]]:
        """Items as strings, in order, chunk by chunk; a large chat batch renders in worker processes
        (``LLMTALLY_RENDER_PROCESSES``), chunks arriving in order while earlier ones are encoded."""
        windows = [items[i : i + _CHUNK] for i in range(0, len(items), _CHUNK)]
        n_chats = sum(1 for it in items if not isinstance(it, str))
        workers = processes()
        if self._template is None or n_chats < _POOL_MIN or workers < 2:
            for window in windows:
                yield [self.render_item(it) for it in window]
            return
        if self._pool is None:
            self._pool = RenderPool(self._template, self._defaults, workers)
        chats = [[it for it in window if not isinstance(it, str)] for window in windows]
        for window, rendered in zip(windows, self._pool.render(chats), strict=True):
            it = iter(rendered)
            yield [item if isinstance(item, str) else next(it) for item in window]

    def count_batch(self, items: Sequence[BatchItem]) -> list[int]:
        """Counts of texts and chats, in order.

        Rendering (Python) overlaps encoding (Rust, all cores, GIL released): a thread encodes the
        previous chunk while the next renders -- in worker processes for large chat batches.
        """
        counts: list[int] = []
        pending: Future[list[int]] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmtally-encode") as pool:
            for rendered in self._rendered_chunks(items):
                if pending is not None:
                    counts.extend(pending.result())
                pending = pool.submit(self._lengths, rendered)
            if pending is not None:
                counts.extend(pending.result())
        return counts

    @property
    def end_tokens(self) -> tuple[str, ...]:
        """The tokenizer's special tokens, EOS first: any of them ends a generated reply."""
        if self._end_tokens is None:
            eos = self._template.special_tokens.get("eos_token") if self._template is not None else None
            special = [t.content for t in self._tok.get_added_tokens_decoder().values() if t.special]
            self._end_tokens = tuple(dict.fromkeys([eos, *special] if eos else special))
        return self._end_tokens

    def generated_text(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        content: str | None = None,
        reasoning: str | None = None,
        tool_calls: Any = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        **template_kwargs: Any,
    ) -> str:
        """The text the model generated for a reply split into ``content``, ``reasoning`` and
        ``tool_calls``, rebuilt with the chat template (see ``_completion``); its tokens, plus the stop
        token, are what the engine billed."""
        return generated_text(
            self._chat_template(),
            messages,
            content=content,
            reasoning=reasoning,
            tool_calls=tool_calls,
            tools=tools,
            end_tokens=self.end_tokens,
            **{**self._defaults, **template_kwargs},
        )


def load_hf_folder(
    folder: str | os.PathLike[str],
    *,
    name: str | None = None,
    template_defaults: Mapping[str, Any] | None = None,
    segment_cache: bool = True,
) -> HFCounter:
    """Load a counter from a folder holding Hugging Face tokenizer files.

    ``segment_cache`` counts pieces between added tokens once each (see ``_segments``); it is used
    only where the tokenizer makes that exact, and ``False`` always encodes whole strings.
    """
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise TokenizerLoadError(f"{path} is not a folder of tokenizer files")
    tok_file = path / "tokenizer.json"
    if not tok_file.is_file():
        raise TokenizerLoadError(
            f"{path} has no tokenizer.json; llmtally needs the fast-tokenizer file "
            "(save one with transformers: AutoTokenizer.from_pretrained(...).save_pretrained(folder))"
        )
    blob = tok_file.read_bytes()
    cfg_file = path / "tokenizer_config.json"
    config: Mapping[str, Any] = {}
    if cfg_file.is_file():
        data = _read_json(cfg_file)
        if not isinstance(data, Mapping):
            raise TokenizerLoadError(f"{cfg_file} is not a JSON object")
        config = data
    try:
        text = blob.decode("utf-8")
        spec = json.loads(text)
        # as AutoTokenizer loads it: the config's tokenizer class and flags may rebuild parts
        view = as_transformers_loads(spec, config, text)
        if view.changes:
            spec = view.spec
            text = json.dumps(spec, ensure_ascii=False)
        tokenizer = Tokenizer.from_str(text)
    except Exception as exc:  # tokenizers raises plain Exception on malformed files
        raise TokenizerLoadError(f"{tok_file} is not a valid tokenizer.json: {exc}") from exc
    if view.split_special_tokens:
        tokenizer.encode_special_tokens = True
    templates = _chat_templates(path, config)
    specials = _special_tokens(path, config)
    digest = hashlib.sha256(blob)
    digest.update(json.dumps([sorted(templates.items()), sorted(specials.items())]).encode())
    if view.changes:
        digest.update(json.dumps([view.changes, view.split_special_tokens]).encode())
        digest.update(text.encode("utf-8"))
    template = ChatTemplate(templates, specials) if templates else None
    context_free = segment_cache and not view.split_special_tokens
    return HFCounter(
        tokenizer,
        template,
        name=name or str(path),
        fingerprint=digest.hexdigest()[:16],
        template_defaults=template_defaults,
        splitter=segment_splitter(spec) if context_free else None,
        loaded_as=tuple(view.changes),
    )

"""``tokenizer.json`` as transformers' ``AutoTokenizer`` loads it, driven by ``tokenizer_config.json``.

Serving engines (vLLM, SGLang, TGI) tokenize through ``AutoTokenizer``, and in transformers 5 the
tokenizer class named by ``tokenizer_class`` does not always use ``tokenizer.json`` as written:

* A class with its own pipeline (:data:`CLASS_PIPELINES`: ``LlamaTokenizer``, ``GemmaTokenizer``)
  keeps only the file's vocabulary, merges and post-processor and sets the normaliser,
  pre-tokeniser and BPE options itself.  ``LlamaTokenizer`` drops the normaliser and pre-tokenises
  with Metaspace, its prepend scheme taken from ``add_prefix_space`` (default true) and ``legacy``
  (default false): ``always`` when legacy, ``first`` (only at the very start of the text, not after
  an added token) when not, ``never`` without a prefix space.  A Llama-2-style file converted by
  transformers 4 instead carries ``Prepend("▁")`` + ``Replace(" ", "▁")``, under which a text that
  starts with a space gets a second "▁" -- one token more than the class counts.  The class is
  skipped, as transformers skips it, for a Llama file that is byte-level (Llama 3, DeepSeek).
* Added tokens: ``added_tokens_decoder`` in the config replaces the file's list for such a class and
  overrides the file's flags (``lstrip``, ``rstrip``, ``normalized`` …) for any class; special
  tokens the config names (``bos_token`` …, ``additional_special_tokens``, any ``*_token``) that the
  file lacks are added.
* ``split_special_tokens`` true makes special tokens typed in a text count as plain text.

``clean_up_tokenization_spaces`` and ``from_slow`` change nothing that is counted (the first only
decodes; transformers 5 no longer reads the second), and ``add_bos_token`` / ``add_eos_token`` are
ignored when a ``tokenizer.json`` exists.  A class not in the table keeps the file as written.  With
an ``auto_map`` the declared class is still what ``AutoTokenizer`` uses unless the engine runs with
``trust_remote_code`` (remote tokenizer code is not reproduced here).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CLASS_PIPELINES", "NAMED_SPECIALS", "ClassPipeline", "TransformersView", "as_transformers_loads"]

_METASPACE = "\u2581"
NAMED_SPECIALS = (  # the special tokens tokenizer_config.json names, in transformers' order
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)


@dataclass(frozen=True)
class ClassPipeline:
    """What one transformers tokenizer class builds around the file's vocabulary and merges."""

    normalizer: Mapping[str, Any] | None
    pre_tokenizer: Mapping[str, Any] | None
    metaspace_prepend: bool = False
    """The pre-tokeniser is Metaspace with transformers' prepend scheme (``add_prefix_space``, ``legacy``)."""
    unk_in_model: bool = False
    """The class passes ``unk_token`` to its BPE model (Llama does not: byte fallback only)."""
    skip_if_byte_level: bool = False
    """AutoTokenizer loads a byte-level file declared as this class as written (transformers' check)."""
    defaults: Mapping[str, str] = field(default_factory=dict)
    """Special tokens the class's constructor defaults to when the config names none."""


CLASS_PIPELINES: dict[str, ClassPipeline] = {
    "LlamaTokenizer": ClassPipeline(
        normalizer=None,
        pre_tokenizer={"type": "Metaspace", "replacement": _METASPACE, "split": False},
        metaspace_prepend=True,
        skip_if_byte_level=True,
        defaults={"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>"},
    ),
    "GemmaTokenizer": ClassPipeline(
        normalizer={"type": "Replace", "pattern": {"String": " "}, "content": _METASPACE},
        pre_tokenizer={
            "type": "Split",
            "pattern": {"String": " "},
            "behavior": "MergedWithPrevious",
            "invert": False,
        },
        unk_in_model=True,
        defaults={
            "unk_token": "<unk>",
            "bos_token": "<bos>",
            "eos_token": "<eos>",
            "pad_token": "<pad>",
            "mask_token": "<mask>",
        },
    ),
}
"""Tokenizer classes that rebuild the pipeline, by the name ``tokenizer_config.json`` gives (a
trailing ``Fast`` is dropped, as transformers 5 aliases ``LlamaTokenizerFast`` to ``LlamaTokenizer``)."""


@dataclass
class TransformersView:
    """The parsed ``tokenizer.json`` as transformers loads it, and what was changed to get there."""

    spec: dict[str, Any]
    changes: list[str]
    split_special_tokens: bool = False


def prepend_scheme(config: Mapping[str, Any]) -> str:
    """transformers' Metaspace prepend scheme for a Llama-style class: ``add_prefix_space`` (unset:
    true) and ``legacy`` (unset or null: false)."""
    add_prefix_space = config.get("add_prefix_space")
    if add_prefix_space is None or add_prefix_space:
        return "always" if config.get("legacy") else "first"
    return "never"


def _class_name(config: Mapping[str, Any]) -> str | None:
    name = config.get("tokenizer_class")
    if not isinstance(name, str):
        return None
    return name.removesuffix("Fast")


def _added(content: str, *, special: bool, flags: Mapping[str, Any] | None = None) -> dict[str, Any]:
    flags = flags or {}
    is_special = bool(flags.get("special", special))
    return {
        "content": content,
        "single_word": bool(flags.get("single_word", False)),
        "lstrip": bool(flags.get("lstrip", False)),
        "rstrip": bool(flags.get("rstrip", False)),
        "normalized": bool(flags.get("normalized", not is_special)),
        "special": is_special,
    }


def _token(value: Any) -> tuple[str, Mapping[str, Any] | None] | None:
    """A special token as the config writes it: a string, or an ``AddedToken`` dict with flags."""
    if isinstance(value, str) and value:
        return value, None
    if isinstance(value, Mapping) and isinstance(value.get("content"), str) and value["content"]:
        return str(value["content"]), value
    return None


def _config_specials(config: Mapping[str, Any], defaults: Mapping[str, str]) -> list[tuple[str, Any]]:
    """Special tokens transformers adds when the backend lacks them, in its order: the named ones
    (class defaults where the config has no key), then model-specific ``*_token`` keys, then the
    extra / additional special tokens."""
    out: list[tuple[str, Any]] = []
    for key in NAMED_SPECIALS:
        tok = _token(config[key] if key in config else defaults.get(key))
        if tok is not None:
            out.append(tok)
    for key, value in config.items():
        if key.endswith("_token") and key not in NAMED_SPECIALS:
            tok = _token(value)
            if tok is not None:
                out.append(tok)
    # transformers 5 reads the older ``additional_special_tokens`` only without ``extra_special_tokens``
    values = config.get("extra_special_tokens") or config.get("additional_special_tokens")
    if isinstance(values, Mapping):
        values = list(values.values())
    if isinstance(values, list):
        for value in values:
            tok = _token(value)
            if tok is not None:
                out.append(tok)
    return out


def _vocab_ids(model: Mapping[str, Any]) -> dict[str, int]:
    vocab = model.get("vocab")
    if isinstance(vocab, Mapping):
        return {str(k): int(v) for k, v in vocab.items()}
    if isinstance(vocab, list):  # Unigram: [[piece, score], ...]
        return {str(entry[0]): i for i, entry in enumerate(vocab) if isinstance(entry, list) and entry}
    return {}


def _merge_added_tokens(
    spec: dict[str, Any],
    config: Mapping[str, Any],
    *,
    start_empty: bool,
    defaults: Mapping[str, str],
) -> bool:
    """Set ``spec["added_tokens"]`` to what transformers registers; whether it changed."""
    before = spec.get("added_tokens") or []
    by_content: dict[str, dict[str, Any]] = {}
    if not (start_empty and isinstance(config.get("added_tokens_decoder"), Mapping)):
        for tok in before:
            if isinstance(tok, Mapping) and isinstance(tok.get("content"), str):
                by_content[str(tok["content"])] = dict(tok)
    decoder = config.get("added_tokens_decoder")
    if isinstance(decoder, Mapping):
        numbered = [(int(k), v) for k, v in decoder.items() if str(k).isdigit()]
        for key, value in sorted(numbered, key=lambda kv: kv[0]):
            tok = _token(value)
            if tok is None:
                continue
            content, flags = tok
            entry = _added(content, special=False, flags=flags)
            entry["id"] = int(key)
            old = by_content.get(content)
            if old is not None and "id" in old:
                entry["id"] = old["id"]
            by_content[content] = entry
    for content, flags in _config_specials(config, defaults):
        if content not in by_content:
            by_content[content] = _added(content, special=True, flags=flags)
        elif not by_content[content].get("special"):
            by_content[content]["special"] = True
    new = [entry for entry in by_content.values() if "id" not in entry]
    vocab = _vocab_ids(spec.get("model") or {}) if new else {}
    used = set(vocab.values()) | {int(t["id"]) for t in by_content.values() if "id" in t}
    next_id = max(used, default=-1) + 1
    out: list[dict[str, Any]] = []
    for content, entry in by_content.items():
        if "id" not in entry:
            if content in vocab:
                entry["id"] = vocab[content]
            else:
                entry["id"] = next_id
                next_id += 1
        out.append({"id": entry["id"], **{k: v for k, v in entry.items() if k != "id"}})
    out.sort(key=lambda t: int(t["id"]))
    norm_before = sorted((_flags_key(t) for t in before), key=str)
    norm_after = sorted((_flags_key(t) for t in out), key=str)
    spec["added_tokens"] = out
    return norm_before != norm_after


def _flags_key(tok: Mapping[str, Any]) -> tuple[Any, ...]:
    """An added token's identity and flags, for comparing lists."""
    return (
        tok.get("content"),
        bool(tok.get("single_word")),
        bool(tok.get("lstrip")),
        bool(tok.get("rstrip")),
        bool(tok.get("normalized")),
        bool(tok.get("special")),
    )


def as_transformers_loads(spec: Mapping[str, Any], config: Mapping[str, Any], raw: str) -> TransformersView:
    """``spec`` (the parsed ``tokenizer.json``, ``raw`` its text) changed as ``AutoTokenizer``
    would change it for this ``tokenizer_config.json``; ``changes`` names each change."""
    # shallow copies: the vocabulary and merges are shared with ``spec``, never changed
    out: dict[str, Any] = dict(spec)
    if isinstance(out.get("model"), Mapping):
        out["model"] = dict(out["model"])
    out["added_tokens"] = [dict(t) for t in out.get("added_tokens") or [] if isinstance(t, Mapping)]
    changes: list[str] = []
    name = _class_name(config)
    pipeline = CLASS_PIPELINES.get(name) if name is not None else None
    model = out.get("model") if isinstance(out.get("model"), dict) else None
    if pipeline is not None and pipeline.skip_if_byte_level and '"ByteLevel"' in raw:
        pipeline = None
    if pipeline is not None and (model is None or model.get("type") != "BPE"):
        pipeline = None  # the class would build a BPE model from it; left as written
    if pipeline is not None and model is not None:
        pre = dict(pipeline.pre_tokenizer) if pipeline.pre_tokenizer is not None else None
        if pre is not None and pipeline.metaspace_prepend:
            pre["prepend_scheme"] = prepend_scheme(config)
        if out.get("normalizer") != pipeline.normalizer or out.get("pre_tokenizer") != pre:
            changes.append(f"{name}: normalizer and pre-tokenizer as the class builds them")
        out["normalizer"] = copy.deepcopy(pipeline.normalizer)
        out["pre_tokenizer"] = pre
        unk = _token(config.get("unk_token", pipeline.defaults.get("unk_token")))
        wanted = {
            "dropout": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "unk_token": unk[0] if unk is not None and pipeline.unk_in_model else None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "ignore_merges": False,
        }
        if any(model.get(k) != v for k, v in wanted.items()):
            changes.append(f"{name}: BPE options as the class sets them")
        model.update(wanted)
    start_empty = pipeline is not None
    defaults = pipeline.defaults if pipeline is not None else {}
    if _merge_added_tokens(out, config, start_empty=start_empty, defaults=defaults):
        changes.append("added tokens from tokenizer_config.json")
    split = bool(config.get("split_special_tokens"))
    if split:
        changes.append("split_special_tokens")
    return TransformersView(out, changes, split)

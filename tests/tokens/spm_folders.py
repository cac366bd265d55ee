"""SentencePiece-style tokenizer folders built offline, in seconds, for exactness tests.

* :func:`train_sentencepiece` trains a small BPE model with byte fallback with the ``sentencepiece``
  package; :func:`llama_folder` loads it through transformers' ``LlamaTokenizer`` (``legacy``,
  ``add_prefix_space``) and saves the folder, optionally rewriting ``tokenizer.json`` in the layout
  transformers 4 wrote for Llama 2 / Mistral (``Prepend("▁")`` + ``Replace`` normaliser, no
  pre-tokeniser), which is what Hub repos of those models ship.
* :func:`tokenizers_folder` builds one with the ``tokenizers`` library alone (Unigram, or BPE with
  byte fallback, Metaspace), no transformers needed.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LLAMA2_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<<SYS>>\\n' + message['content'] + '\\n<</SYS>>\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}{% endfor %}"
)

_EN = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "hello",
    "world",
    "tokens",
    "are",
    "counted",
    "exactly",
    "as",
    "the",
    "server",
    "bills",
    "them",
    "price",
    "order",
    "revenue",
    "report",
    "model",
    "value",
    "error",
    "count",
    "def",
    "return",
    "import",
    "class",
]
_ZH = "你好世界这是一个测试中文文本分词计数服务器账单今天天气怎么样我想了解北京明天的预报"


def corpus(lines: int = 3000, seed: int = 0) -> Iterator[str]:
    """English words, Chinese characters, code and whitespace; deterministic."""
    rng = random.Random(seed)
    for i in range(lines):
        kind = i % 4
        if kind == 0:
            yield " ".join(rng.choice(_EN) for _ in range(rng.randint(4, 16)))
        elif kind == 1:
            yield "".join(rng.choice(_ZH) for _ in range(rng.randint(5, 30)))
        elif kind == 2:
            yield f"def f_{i}(x):  return x.get('{rng.choice(_EN)}', {rng.randint(0, 999)})"
        else:
            yield "  ".join(rng.choice(_EN).capitalize() for _ in range(rng.randint(2, 6))) + " ."


def train_sentencepiece(out: Path, vocab_size: int = 700) -> Path:
    """A SentencePiece BPE model with byte fallback (Llama-2-like options) written to ``out``."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=corpus(),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        split_digits=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True,
        normalization_rule_name="identity",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
        num_threads=1,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model.getvalue())
    return out


def _edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


def llama_folder(
    sp_model: Path,
    out: Path,
    *,
    legacy: bool,
    add_prefix_space: bool | None = None,
    v4_layout: bool = False,
    config: dict[str, Any] | None = None,
) -> Path:
    """A folder saved by transformers' ``LlamaTokenizer`` from ``sp_model``, with ``legacy`` and
    ``add_prefix_space`` in ``tokenizer_config.json`` as Hub repos carry them (transformers 5 does
    not save ``legacy``), a Llama-2-style chat template, and ``config`` merged in last."""
    from transformers import LlamaTokenizer

    src = out.with_name(out.name + "-src")
    src.mkdir(parents=True, exist_ok=True)
    (src / "tokenizer.model").write_bytes(sp_model.read_bytes())
    kwargs: dict[str, Any] = {"legacy": legacy}
    if add_prefix_space is not None:
        kwargs["add_prefix_space"] = add_prefix_space
    LlamaTokenizer.from_pretrained(str(src), **kwargs).save_pretrained(str(out))
    _edit_json(
        out / "tokenizer_config.json",
        legacy=legacy,
        add_prefix_space=add_prefix_space,
        chat_template=LLAMA2_TEMPLATE,
        **(config or {}),
    )
    if v4_layout:
        normalizers: list[dict[str, Any]] = []
        if add_prefix_space is None or add_prefix_space:
            normalizers.append({"type": "Prepend", "prepend": "\u2581"})
        normalizers.append({"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"})
        _edit_json(out / "tokenizer.json", normalizer={"type": "Sequence", "normalizers": normalizers})
        spec = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
        spec["pre_tokenizer"] = None
        spec["model"]["unk_token"] = "<unk>"
        (out / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return out


def tokenizers_folder(out: Path, *, kind: str, config: dict[str, Any] | None = None) -> Path:
    """A SentencePiece-style folder built with the ``tokenizers`` library only: ``kind`` is
    ``"unigram"`` (Metaspace, Unigram) or ``"bpe"`` (Metaspace, BPE with byte fallback); ``config``
    is merged into ``tokenizer_config.json`` (e.g. ``tokenizer_class``, ``legacy``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = ["<unk>", "<s>", "</s>"]
    if kind == "unigram":
        tok = Tokenizer(models.Unigram())
        trainer: Any = trainers.UnigramTrainer(
            vocab_size=600, special_tokens=specials, unk_token="<unk>", show_progress=False
        )
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
        byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
        trainer = trainers.BpeTrainer(
            vocab_size=900, special_tokens=specials + byte_tokens, show_progress=False
        )
    else:
        raise ValueError(kind)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.train_from_iterator(corpus(), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "chat_template": LLAMA2_TEMPLATE,
                **(config or {}),
            }
        ),
        encoding="utf-8",
    )
    return out

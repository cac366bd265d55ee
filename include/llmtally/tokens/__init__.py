"""Tokenizers matched to each model, counting exactly as the serving engine bills."""

from ._base import BatchItem, ChatItem, TokenCounter
from ._engine import RecountEngine, load_engine
from ._hf import HFCounter, load_hf_folder
from ._openai import TiktokenCounter, load_tiktoken
from ._registry import Registry, Resolution, default_registry, load_tokenizer, resolve_model
from ._template import ChatTemplate

__all__ = [
    "BatchItem",
    "ChatItem",
    "ChatTemplate",
    "HFCounter",
    "RecountEngine",
    "Registry",
    "Resolution",
    "TiktokenCounter",
    "TokenCounter",
    "default_registry",
    "load_engine",
    "load_hf_folder",
    "load_tiktoken",
    "load_tokenizer",
    "resolve_model",
]

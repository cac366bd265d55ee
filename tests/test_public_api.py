"""The public surface is deliberate: pinned here, and importable without optional extras."""

from __future__ import annotations

import subprocess
import sys

import llmtally


def test_all_is_sorted_and_exported() -> None:
    assert llmtally.__all__ == sorted(llmtally.__all__)
    for name in llmtally.__all__:
        assert hasattr(llmtally, name), name


def test_public_names_are_pinned() -> None:
    """Exactly these names, in this order: adding or removing one is a deliberate API change."""
    expected = [
        "ConfigError",
        "DataQualityError",
        "DeliveryError",
        "FinalDayError",
        "InputError",
        "LessEvidenceError",
        "LlmtallyError",
        "StorageError",
        "TemplateError",
        "TokenCounter",
        "TokenizerError",
        "TokenizerLoadError",
        "UnknownModelError",
        "UsageLogger",
        "UsageMiddleware",
        "__version__",
        "load_tokenizer",
        "log_token_usage",
        "tags",
        "track",
        "wrap_openai",
    ]
    assert llmtally.__all__ == expected


def test_import_is_light() -> None:
    """``import llmtally`` (what a service does to log) pulls in no heavy or counting library."""
    code = (
        "import sys, llmtally; heavy = [m for m in ('transformers', 'torch', 'airflow', 'pandas', 'matplotlib', "
        "'openai', 'psycopg', 'tokenizers', 'tiktoken') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_exceptions_form_one_tree() -> None:
    for name in llmtally.__all__:
        obj = getattr(llmtally, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, llmtally.LlmtallyError)
    assert issubclass(llmtally.UnknownModelError, KeyError)
    assert issubclass(llmtally.InputError, ValueError)

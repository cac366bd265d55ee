"""Fetching tokenizer files by Hugging Face repo id (online, or from the local HF cache offline)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .._exceptions import TokenizerLoadError

__all__ = ["ENV_TOKENIZER_DIRS", "fetch_repo", "looks_like_repo_id"]

ENV_TOKENIZER_DIRS = "LLMTALLY_TOKENIZER_DIRS"
"""Folders (``os.pathsep``-separated) searched for ``<org>/<name>`` or ``<name>`` before the Hub."""

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
TOKENIZER_FILES = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "additional_chat_templates/*.jinja",
]


def looks_like_repo_id(source: str) -> bool:
    """``org/name`` shaped, and not an existing path."""
    return bool(_REPO_ID.match(source)) and not Path(source).exists()


def _local_candidate(repo_id: str) -> Path | None:
    for base in filter(None, os.environ.get(ENV_TOKENIZER_DIRS, "").split(os.pathsep)):
        org, name = repo_id.split("/", 1)
        for cand in (Path(base) / org / name, Path(base) / name, Path(base) / f"{org}--{name}"):
            if (cand / "tokenizer.json").is_file():
                return cand
    return None


def fetch_repo(repo_id: str, revision: str | None = None) -> Path:
    """A local folder with the repo's tokenizer files: a ``LLMTALLY_TOKENIZER_DIRS`` copy, the
    Hugging Face cache, or a download (only the tokenizer files, never weights)."""
    local = _local_candidate(repo_id)
    if local is not None:
        return local
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    except ImportError as exc:
        raise TokenizerLoadError(
            f"loading {repo_id!r} by repo id needs huggingface_hub (pip install 'llmtally[hub]'), "
            "or point at a local folder"
        ) from exc
    try:
        try:
            folder = snapshot_download(
                repo_id, revision=revision, allow_patterns=TOKENIZER_FILES, local_files_only=True
            )
        except LocalEntryNotFoundError:
            folder = snapshot_download(repo_id, revision=revision, allow_patterns=TOKENIZER_FILES)
    except LocalEntryNotFoundError as exc:
        raise TokenizerLoadError(
            f"{repo_id!r} is not in the Hugging Face cache and the Hub cannot be reached (offline, "
            f"HF_HUB_OFFLINE=1, or no network). Copy its tokenizer files to a folder and set "
            f'[models."{repo_id}"] tokenizer = "/that/folder" in llmtally.toml, or list the parent '
            f"folder in {ENV_TOKENIZER_DIRS}"
        ) from exc
    except (HFValidationError, OSError, ValueError) as exc:
        raise TokenizerLoadError(f"cannot fetch tokenizer files of {repo_id!r}: {exc}") from exc
    path = Path(folder)
    if not (path / "tokenizer.json").is_file():
        raise TokenizerLoadError(f"{repo_id!r} has no tokenizer.json (llmtally needs a fast tokenizer)")
    return path

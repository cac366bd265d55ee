"""The run's staging folder: text-free hand-offs between tasks.

Tasks of one run may land on different workers (the recount on the GPU worker), so hand-offs go
through files under ``LLMTALLY_STAGING_DIR`` -- a volume mounted on every worker -- not through XCom.
No file here holds prompt or completion text: record ids, counts, digests and aggregates only.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .._config import ENV_STAGING_DIR

__all__ = ["Staging"]


class Staging:
    """``<root>/<day>/<run id>/``: one folder per DAG run."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def for_run(cls, day: str, run_id: str, root: str | None = None) -> Staging:
        """The folder of one run (created)."""
        base = Path(
            root or os.environ.get(ENV_STAGING_DIR) or Path(tempfile.gettempdir()) / "llmtally-staging"
        )
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
        stage = cls(base / day / safe)
        stage.path.mkdir(parents=True, exist_ok=True)
        return stage

    def write(self, name: str, obj: Any) -> Path:
        """Pickle ``obj`` (gzip) atomically as ``name``."""
        target = self.path / f"{name}.pkl.gz"
        tmp = target.with_suffix(".tmp")
        with gzip.open(tmp, "wb", compresslevel=3) as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, target)
        return target

    def read(self, name: str) -> Any:
        """What :meth:`write` stored as ``name``."""
        with gzip.open(self.path / f"{name}.pkl.gz", "rb") as fh:
            return pickle.load(fh)

    def remove(self) -> None:
        """Delete the run's folder (and the day folder when empty)."""
        shutil.rmtree(self.path, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.path.parent.rmdir()

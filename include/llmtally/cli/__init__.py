"""The ``llmtally`` command line: a thin layer over the library."""

from __future__ import annotations

try:
    import click
except ImportError as exc:  # the base install (logging only) has no command line
    raise ImportError(
        "the llmtally command needs the count extra: pip install 'llmtally[count]' "
        "(or 'llmtally[pipeline]' for the database and report commands)"
    ) from exc

from ._count import count, which
from ._db import db
from ._export import export
from ._report import compare, report

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmtally")
def main() -> None:
    """Exact LLM token accounting: count, recount, reconcile and report."""


main.add_command(count)
main.add_command(which)
main.add_command(db)
main.add_command(report)
main.add_command(compare)
main.add_command(export)

"""Layers import downwards only: the library's layers never import the jobs or the CLI above them.

core (``_config``, ``_exceptions``, ``_record``, ``_time``) ← tokens / logging / store / pricing / alerts
← pipeline / report / budgets ← jobs, web (the usage page) ← dags, plugins, cli.  Every import statement
counts, lazy ones inside functions and ``TYPE_CHECKING`` blocks too: a cycle there is still a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import llmtally

PACKAGE = Path(llmtally.__file__).resolve().parent
LOWER = ("pipeline", "report", "store", "tokens", "logging", "pricing", "web", "alerts", "budgets")
ABOVE = ("llmtally.jobs", "llmtally.cli")


def module_name(path: Path) -> str:
    """``llmtally.report._data`` for ``…/llmtally/report/_data.py``; a package for its ``__init__``."""
    parts = ["llmtally", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, is_package: bool, name: str, level: int) -> str:
    """The absolute name of ``from <level dots><name>`` written in ``module``."""
    if not level:
        return name
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def imported(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """``(line, absolute module)`` for each module an import in ``source`` may load."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_package, node.module or "", node.level)
            yield node.lineno, target
            for alias in node.names:  # `from llmtally import jobs`, `from .. import cli`
                yield node.lineno, f"{target}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and _call_name(node) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            name = node.args[0].value
            level = len(name) - len(name.lstrip("."))
            # relative names resolve against the package argument: __name__ itself, else __package__
            anchor = node.args[1] if len(node.args) > 1 else None
            as_package = is_package or (isinstance(anchor, ast.Name) and anchor.id == "__name__")
            yield node.lineno, _resolve(module, as_package, name.lstrip("."), level)


def _is_above(name: str) -> bool:
    return any(name == top or name.startswith(top + ".") for top in ABOVE)


def offending_imports() -> list[str]:
    found = []
    for layer in LOWER:
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            mod = module_name(path)
            seen = set()
            for line, target in imported(path.read_text(encoding="utf-8"), mod, path.name == "__init__.py"):
                if _is_above(target) and line not in seen:
                    seen.add(line)
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {mod} imports {target}")
    return found


@pytest.mark.parametrize(
    ("source", "module", "is_package", "target"),
    [
        ("from ..jobs import day_bounds", "llmtally.report._data", False, "llmtally.jobs"),
        ("from ..jobs._day import day_bounds", "llmtally.pipeline.parse", False, "llmtally.jobs._day"),
        ("from .. import cli", "llmtally.store._postgres", False, "llmtally.cli"),
        ("from ...jobs import daily", "llmtally.tokens.engines.torch", False, "llmtally.jobs"),
        ("from ..jobs import daily", "llmtally.report", True, "llmtally.jobs"),
        ("import llmtally.jobs.daily", "llmtally.store", True, "llmtally.jobs.daily"),
        ("from llmtally import jobs", "llmtally.pricing._load", False, "llmtally.jobs"),
        ("from llmtally.cli import main", "llmtally.logging", True, "llmtally.cli"),
        ("def f():\n    from ..jobs import x\n", "llmtally.report._run", False, "llmtally.jobs"),
        (
            "import importlib\nimportlib.import_module('llmtally.jobs')",
            "llmtally.store",
            True,
            "llmtally.jobs",
        ),
        (
            "from importlib import import_module\nimport_module('..jobs', __package__)",
            "llmtally.report._x",
            False,
            "llmtally.jobs",
        ),
        (
            "from importlib import import_module\nimport_module('...cli', __name__)",
            "llmtally.report._x",
            False,
            "llmtally.cli",
        ),
    ],
)
def test_scanner_sees_relative_and_absolute_forms(
    source: str, module: str, is_package: bool, target: str
) -> None:
    targets = {t for _, t in imported(source, module, is_package)}
    assert target in targets and any(_is_above(t) for t in targets)


def test_scanner_leaves_lower_imports_alone() -> None:
    source = "from .._time import day_bounds\nfrom ..store import MemoryStore\nimport llmtally.jobsite\n"
    assert not [t for _, t in imported(source, "llmtally.report._data") if _is_above(t)]


def test_every_layer_is_scanned() -> None:
    for layer in LOWER:
        assert (PACKAGE / layer / "__init__.py").is_file(), layer


def test_lower_layers_do_not_import_jobs_or_cli() -> None:
    found = offending_imports()
    assert not found, "imports upwards (move the shared code below both layers):\n" + "\n".join(found)


def test_importing_the_layers_loads_no_jobs_or_cli() -> None:
    code = (
        "import sys\n"
        "import llmtally.pipeline, llmtally.report, llmtally.store\n"
        "import llmtally.tokens, llmtally.logging, llmtally.pricing\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.split('.')[:2] in (['llmtally', 'jobs'], "
        "['llmtally', 'cli']))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", out.stdout

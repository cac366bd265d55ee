"""``llmtally count`` and ``llmtally which``."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import IO, Any

import click

from .._exceptions import InputError, LlmtallyError
from ..tokens import BatchItem, RecountEngine, TokenCounter, load_engine, load_tokenizer, resolve_model
from ..tokens._engine import DEVICES, ENGINES

__all__ = ["count", "which"]

BATCH = 2048


def _decode(data: bytes, what: str) -> str:
    text = data.decode("utf-8", "replace")
    bad = text.count("\ufffd") - data.count("\ufffd".encode())
    if bad > 0:
        click.echo(f"llmtally: {what}: {bad} invalid UTF-8 sequence(s) counted as U+FFFD", err=True)
    return text


def _counter(model: str | None, tokenizer: str | None) -> TokenCounter:
    if bool(model) == bool(tokenizer):
        raise click.UsageError("give exactly one of --model NAME or --tokenizer DIR_OR_REPO")
    return load_tokenizer(model or tokenizer or "")


def _parse_jsonl(stream: IO[bytes], name: str) -> Iterator[tuple[Any, BatchItem]]:
    for lineno, raw in enumerate(stream, start=1):
        line = _decode(raw, f"{name}:{lineno}").strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON ({exc.msg})", line=lineno, source=name) from exc
        if not isinstance(obj, dict):
            raise InputError(
                'expected an object {"text": ...} or {"messages": [...]}', line=lineno, source=name
            )
        ident = obj.get("id", lineno)
        if "messages" in obj:
            msgs = obj["messages"]
            if not isinstance(msgs, list) or not msgs:
                raise InputError('"messages" must be a non-empty list', line=lineno, source=name)
            item: dict[str, Any] = {"messages": msgs}
            for key in ("tools", "tool_choice", "add_generation_prompt", "template_kwargs"):
                if key in obj:
                    item[key] = obj[key]
            yield ident, item
        elif isinstance(obj.get("text"), str):
            yield ident, obj["text"]
        else:
            raise InputError('expected "text" (a string) or "messages" (a list)', line=lineno, source=name)


def _read_json_file(path: str, what: str) -> Any:
    try:
        with click.open_file(path, "rb") as fh:
            return json.loads(_decode(fh.read(), path))
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}", source=path) from exc


@click.command()
@click.argument("text", required=False)
@click.option("--model", "-m", help="Model name, resolved through llmtally.toml and the built-in table.")
@click.option("--tokenizer", "-t", help="A tokenizer folder, Hugging Face repo id or tiktoken encoding.")
@click.option(
    "--messages",
    "messages_file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="A JSON file with a chat message list: count the prompt the server bills.",
)
@click.option(
    "--tools",
    "tools_file",
    type=click.Path(exists=True, dir_okay=False),
    help="A JSON file with tool definitions (with --messages).",
)
@click.option(
    "--jsonl",
    "jsonl_file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help='Batch: one {"text": ...} or {"messages": [...]} object per line ("-" for stdin).',
)
@click.option("--no-generation-prompt", is_flag=True, help="Do not add the assistant generation prompt.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"tokens": N} instead of N (with --engine, also the engine that counted; after a '
    'fallback, "requested_engine" and "fallback"); with --jsonl, the summary on stderr as JSON.',
)
@click.option(
    "--engine",
    type=click.Choice(ENGINES),
    help="Recount path (same counts): tokenizers, cached (pre-token cache), gpu (torch BPE), fast "
    "(kitoken / bpe-openai, self-checked), auto (fastest measured here).  Default: [recount] engine "
    "in llmtally.toml, else fast.",
)
@click.option("--device", type=click.Choice(DEVICES), help="For --engine gpu/auto: cpu, cuda or auto.")
def count(
    text: str | None,
    model: str | None,
    tokenizer: str | None,
    messages_file: str | None,
    tools_file: str | None,
    jsonl_file: str | None,
    no_generation_prompt: bool,
    as_json: bool,
    engine: str | None,
    device: str | None,
) -> None:
    """Count tokens exactly as the model's server bills them.

    TEXT (or standard input) is counted as plain text.  With --messages, the chat prompt is rendered
    with the model's chat template.  With --jsonl, each line gets one output line {"id", "tokens"},
    in order.
    """
    if sum(x is not None for x in (text, messages_file, jsonl_file)) > 1:
        raise click.UsageError("give only one of TEXT, --messages or --jsonl")
    try:
        counter: TokenCounter = load_engine(_counter(model, tokenizer), engine, device)
        _say_fallback(counter)
        if jsonl_file is not None:
            _count_jsonl(counter, jsonl_file, as_json=as_json)
            return
        if messages_file is not None:
            messages = _read_json_file(messages_file, "--messages")
            tools = _read_json_file(tools_file, "--tools") if tools_file else None
            n = counter.count_messages(messages, tools=tools, add_generation_prompt=not no_generation_prompt)
        else:
            if text is None:
                text = _decode(sys.stdin.buffer.read(), "stdin")
            n = counter.count(text)
    except LlmtallyError as exc:
        raise click.ClickException(str(exc)) from exc
    if not as_json:
        click.echo(str(n))
        return
    out: dict[str, Any] = {"tokens": n}
    if isinstance(counter, RecountEngine) and (engine is not None or counter.fallback is not None):
        out.update(counter.describe())
    click.echo(json.dumps(out, ensure_ascii=False))


def _say_fallback(counter: TokenCounter) -> None:
    if isinstance(counter, RecountEngine) and counter.fallback is not None:
        click.echo(
            f"llmtally: engine {counter.requested_engine} cannot count {counter.name} exactly "
            f"({counter.fallback}); counted with engine {counter.engine}",
            err=True,
        )


def _count_jsonl(counter: TokenCounter, path: str, *, as_json: bool = False) -> None:
    with click.open_file(path, "rb") as fh:
        parsed = list(_parse_jsonl(fh, "<stdin>" if path == "-" else path))
    total = 0
    show = len(parsed) > BATCH and sys.stderr.isatty()
    with click.progressbar(length=len(parsed), label="counting", file=sys.stderr, hidden=not show) as bar:
        for start in range(0, len(parsed), BATCH):
            chunk = parsed[start : start + BATCH]
            counts = counter.count_batch([item for _, item in chunk])
            lines = (
                json.dumps({"id": i, "tokens": n}, ensure_ascii=False)
                for (i, _), n in zip(chunk, counts, strict=True)
            )
            click.echo("\n".join(lines))
            total += sum(counts)
            bar.update(len(chunk))
    how = f"; {counter.summary()}" if isinstance(counter, RecountEngine) else ""
    if isinstance(counter, RecountEngine):
        counter.close()
    if as_json:
        summary: dict[str, Any] = {
            "items": len(parsed),
            "tokens": total,
            "tokenizer": counter.name,
            "fingerprint": counter.fingerprint,
        }
        if isinstance(counter, RecountEngine):
            summary.update(counter.describe())
        click.echo(json.dumps(summary, ensure_ascii=False), err=True)
        return
    click.echo(
        f"llmtally: {len(parsed)} item(s), {total} tokens ({counter.name}, {counter.fingerprint}{how})",
        err=True,
    )


@click.command()
@click.argument("model")
def which(model: str) -> None:
    """Show where MODEL's tokenizer comes from and its fingerprint."""
    try:
        res = resolve_model(model)
        counter = load_tokenizer(model)
    except LlmtallyError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"{model}: {res.kind} {res.target} (via {' -> '.join(res.chain)}) fingerprint {counter.fingerprint}"
    )

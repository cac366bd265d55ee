"""Plain data: dataclasses to JSON-able values and back, driven by their type hints.

What crosses a process boundary (the staging files between tasks) is data, never code: no pickle.
:func:`to_plain` turns a value into ``dict`` / ``list`` / ``str`` / numbers / ``None``;
:func:`from_plain` rebuilds it from the type the reader expects, checking every value on the way::

    data = to_plain(day_load)                 # json.dumps-able
    assert from_plain(DayLoad, data) == day_load

Supported types: dataclasses (frozen, slots, nested; hints resolved with :func:`typing.get_type_hints`,
so ``from __future__ import annotations`` modules work), ``list[X]`` / ``Sequence[X]`` (read back as a
list), ``tuple[X, ...]`` / ``tuple[A, B]``, ``dict[str, X]`` / ``Mapping[str, X]`` (read back as a
dict), ``X | None`` and other unions, ``Literal[...]``, enums, ``Any`` (plain JSON, passed through),
``date``, ``datetime`` (ISO 8601 with its UTC offset: exact microseconds; the tzinfo comes back as
that fixed offset), ``Decimal`` (a string: exact), ``int``, ``float``, ``str`` and ``bool``.

Data that does not fit the expected type (an unknown or missing field, a wrong type, a bad date)
raises :class:`~llmtally.InputError` naming where, e.g. ``DayLoad.hourly[3].cost: expected a decimal
string, not a number 1.5``.  A type the codec cannot handle is a programming error: :class:`TypeError`.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import enum
import functools
import threading
import types
import typing
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar, overload

from ._exceptions import InputError

__all__ = ["from_plain", "to_plain"]

T = TypeVar("T")
Decoder = Callable[[Any], Any]

_SEQUENCES = (list, cabc.Sequence, cabc.MutableSequence, cabc.Collection, cabc.Iterable)
_MAPPINGS = (dict, cabc.Mapping, cabc.MutableMapping)
_JSON_SCALARS = (str, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_JSON_SCALARS)
_KINDS = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
}


class _Bad(Exception):
    """A value that does not fit; ``path`` grows as the error unwinds out of containers."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str] = []


def _describe(data: Any) -> str:
    if data is None:
        return "null"
    name = _KINDS.get(type(data))
    text = repr(data)
    return f"{name or type(data).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else repr(tp).replace("typing.", "")


# ------------------------------------------------------------------------------------------ encode
def to_plain(obj: Any) -> Any:
    """``obj`` as JSON-able data (``json.dumps`` takes it as is); the inverse of :func:`from_plain`.

    Values under an ``Any`` hint must already be plain JSON (tuples become lists there).  Raises
    :class:`TypeError` for a value the codec cannot write (a set, a naive object, a non-``str`` key).
    """
    return _encode(obj, None)


def _encode(value: Any, tp: Any) -> Any:
    if type(value) in _SCALAR_TYPES:  # the common case first: the exact built-in types
        return value
    if tp is None and (type(value) is list or type(value) is tuple):  # untyped: by value
        return [v if type(v) in _SCALAR_TYPES else _encode(v, None) for v in value]
    if tp is Any or tp is object:
        return _json(value)
    origin, args = (typing.get_origin(tp), typing.get_args(tp)) if tp is not None else (None, ())
    if origin is typing.Union or origin is types.UnionType:
        rest = [a for a in args if a is not type(None)]
        return _encode(value, rest[0] if len(rest) == 1 else None)
    if isinstance(value, list | tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise TypeError(f"{value!r:.60} does not have the {len(args)} items of {_type_name(tp)}")
            return [_encode(v, a) for v, a in zip(value, args, strict=True)]
        item = args[0] if args else (Any if tp in (list, tuple) else None)
        return [v if type(v) in _SCALAR_TYPES else _encode(v, item) for v in value]
    if isinstance(value, cabc.Mapping):
        item = args[1] if origin in _MAPPINGS and len(args) == 2 else (Any if tp in _MAPPINGS else None)
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"cannot write a mapping key {k!r}: plain data has string keys only")
            out[k] = v if type(v) in _SCALAR_TYPES else _encode(v, item)
        return out
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: _encode(getattr(value, name), hint) for name, hint in _init_fields(type(value))}
    if isinstance(value, enum.Enum):
        return _json(value.value)
    if isinstance(value, bool | int | float | str):  # subclasses
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):  # datetime included
        return value.isoformat()
    raise TypeError(f"cannot write a {type(value).__name__} as plain data ({value!r:.60})")


def _json(value: Any) -> Any:
    """``value`` checked to be plain JSON (what an ``Any`` hint holds)."""
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, cabc.Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"cannot write a mapping key {k!r}: plain data has string keys only")
            out[k] = _json(v)
        return out
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    raise TypeError(
        f"a {type(value).__name__} ({value!r:.60}) under an Any hint is not plain JSON: "
        "declare its type in the dataclass, or convert it first"
    )


# ------------------------------------------------------------------------------------------ decode
@overload
def from_plain(tp: type[T], data: Any) -> T: ...
@overload
def from_plain(tp: object, data: Any) -> Any: ...
def from_plain(tp: Any, data: Any) -> Any:
    """Rebuild a value of type ``tp`` from ``data`` (what :func:`to_plain` wrote, via JSON).

    Raises :class:`InputError` when ``data`` does not fit ``tp``, and :class:`TypeError` when ``tp``
    is a type the codec does not handle.
    """
    decode = _decoder(tp)
    try:
        return decode(data)
    except _Bad as exc:
        root = typing.get_origin(tp) or tp
        where = getattr(root, "__name__", _type_name(tp)) + "".join(reversed(exc.path))
        raise InputError(f"{where}: {exc.message}") from None


_cache: dict[Any, Decoder] = {}
_cache_lock = threading.Lock()


def _decoder(tp: Any) -> Decoder:
    try:
        return _cache[tp]
    except KeyError:
        pass
    except TypeError:  # an unhashable annotation: build each time
        return _build(tp)
    decode = _build(tp)
    with _cache_lock:
        _cache.setdefault(tp, decode)
    return decode


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except NameError as exc:
        raise TypeError(f"cannot resolve the type hints of {cls.__qualname__}: {exc}") from exc


@functools.cache
def _init_fields(cls: type) -> tuple[tuple[str, Any], ...]:
    """``(name, resolved hint)`` of the fields ``cls.__init__`` takes (what is written and read)."""
    hints = _hints(cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls) if f.init)


def _build(tp: Any) -> Decoder:
    if tp is Any or tp is object:
        return _identity
    if tp is None or tp is type(None):
        return _none
    if tp in _SCALARS:
        return _SCALARS[tp]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_decoder(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_decoder(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union or origin is types.UnionType:
        return _union_decoder(args)
    if origin is typing.Literal:
        return _literal_decoder(args)
    if tp in _SEQUENCES or origin in _SEQUENCES:
        return _list_decoder(_decoder(args[0]) if args else _identity)
    if tp is tuple or origin is tuple:
        return _tuple_decoder(args)
    if tp in _MAPPINGS or origin in _MAPPINGS:
        if args and args[0] not in (str, Any):
            raise TypeError(f"cannot read {_type_name(tp)}: plain data has string keys only")
        return _dict_decoder(_decoder(args[1]) if args else _identity)
    raise TypeError(f"cannot read a {_type_name(tp)} from plain data (no decoder for this type)")


def _identity(data: Any) -> Any:
    return data


def _none(data: Any) -> None:
    if data is not None:
        raise _Bad(f"expected null, not {_describe(data)}")


def _str(data: Any) -> str:
    if not isinstance(data, str):
        raise _Bad(f"expected a string, not {_describe(data)}")
    return data


def _bool(data: Any) -> bool:
    if not isinstance(data, bool):
        raise _Bad(f"expected a boolean, not {_describe(data)}")
    return data


def _int(data: Any) -> int:
    if not isinstance(data, int) or isinstance(data, bool):
        raise _Bad(f"expected an integer, not {_describe(data)}")
    return data


def _float(data: Any) -> float:
    if not isinstance(data, int | float) or isinstance(data, bool):
        raise _Bad(f"expected a number, not {_describe(data)}")
    return float(data)


def _decimal(data: Any) -> Decimal:
    if not isinstance(data, str):
        raise _Bad(f"expected a decimal string, not {_describe(data)}")
    try:
        return Decimal(data)
    except InvalidOperation:
        raise _Bad(f"expected a decimal string, not {_describe(data)}") from None


def _datetime(data: Any) -> datetime:
    if isinstance(data, str):
        try:
            return datetime.fromisoformat(data)
        except ValueError:
            pass
    raise _Bad(f"expected an ISO 8601 date-time string, not {_describe(data)}")


def _date(data: Any) -> date:
    if isinstance(data, str) and len(data) == 10:
        try:
            return date.fromisoformat(data)
        except ValueError:
            pass
    raise _Bad(f"expected an ISO 8601 date string (YYYY-MM-DD), not {_describe(data)}")


_SCALARS: dict[Any, Decoder] = {
    str: _str,
    bool: _bool,
    int: _int,
    float: _float,
    Decimal: _decimal,
    datetime: _datetime,
    date: _date,
}


def _where(decode: Decoder, items: Any) -> Any:
    """The index (or key) of the first of ``items`` that ``decode`` refuses (after a failure)."""
    pairs = items.items() if isinstance(items, dict) else enumerate(items)
    return next((key for key, v in pairs if _refuses(decode, v)), "?")


def _list_decoder(item: Decoder) -> Decoder:
    def decode(data: Any) -> list[Any]:
        if not isinstance(data, list):
            raise _Bad(f"expected an array, not {_describe(data)}")
        try:
            return [item(v) for v in data]
        except _Bad as exc:
            exc.path.append(f"[{_where(item, data)}]")
            raise

    return decode


def _tuple_decoder(args: tuple[Any, ...]) -> Decoder:
    if not args or args[-1] is Ellipsis:
        as_list = _list_decoder(_decoder(args[0]) if args else _identity)
        return lambda data: tuple(as_list(data))
    items = [_decoder(a) for a in args]
    n = len(items)

    def decode(data: Any) -> tuple[Any, ...]:
        if not isinstance(data, list):
            raise _Bad(f"expected an array, not {_describe(data)}")
        if len(data) != n:
            raise _Bad(f"expected an array of {n} items, not {len(data)}")
        try:
            return tuple([item(v) for item, v in zip(items, data, strict=True)])
        except _Bad as exc:
            i = next(i for i, (item, v) in enumerate(zip(items, data, strict=True)) if _refuses(item, v))
            exc.path.append(f"[{i}]")
            raise

    return decode


def _refuses(decode: Decoder, data: Any) -> bool:
    try:
        decode(data)
    except _Bad:
        return True
    return False


def _dict_decoder(value: Decoder) -> Decoder:
    def decode(data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise _Bad(f"expected an object, not {_describe(data)}")
        try:
            out = {k: value(v) for k, v in data.items()}
        except _Bad as exc:
            exc.path.append(f"[{_where(value, data)!r}]")
            raise
        for k in out:
            if not isinstance(k, str):
                raise _Bad(f"expected string keys, not {_describe(k)}")
        return out

    return decode


def _union_decoder(args: tuple[Any, ...]) -> Decoder:
    nullable = type(None) in args
    options = [_decoder(a) for a in args if a is not type(None)]
    names = " | ".join(_type_name(a) for a in args)
    if nullable and len(options) == 1:
        only = options[0]
        return lambda data: None if data is None else only(data)

    def decode(data: Any) -> Any:
        if data is None and nullable:
            return None
        for option in options:
            try:
                return option(data)
            except _Bad:
                continue
        raise _Bad(f"expected {names}, not {_describe(data)}")

    return decode


def _literal_decoder(args: tuple[Any, ...]) -> Decoder:
    allowed = {(type(a), a): a for a in args}  # by type too: True is not 1

    def decode(data: Any) -> Any:
        try:
            return allowed[(type(data), data)]
        except (KeyError, TypeError):  # TypeError: an unhashable value (an array, an object)
            raise _Bad(f"expected one of {list(args)!r}, not {_describe(data)}") from None

    return decode


def _enum_decoder(cls: type[enum.Enum]) -> Decoder:
    def decode(data: Any) -> Any:
        try:
            return cls(data)
        except ValueError:
            raise _Bad(f"expected a {cls.__name__} value, not {_describe(data)}") from None

    return decode


def _dataclass_decoder(cls: type) -> Decoder:
    # Field decoders are built on first use, so a dataclass may refer to itself.
    built: list[tuple[dict[str, Decoder], frozenset[str]]] = []

    def prepare() -> tuple[dict[str, Decoder], frozenset[str]]:
        hints = _hints(cls)
        fields = [f for f in dataclasses.fields(cls) if f.init]
        decoders = {f.name: _decoder(hints[f.name]) for f in fields}
        required = frozenset(
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )
        built.append((decoders, required))
        return decoders, required

    def decode(data: Any) -> Any:
        decoders, required = built[0] if built else prepare()
        if not isinstance(data, dict):
            raise _Bad(f"expected an object ({cls.__name__}), not {_describe(data)}")
        unknown = data.keys() - decoders.keys()
        if unknown:
            raise _Bad(f"unknown field(s) {sorted(map(str, unknown))} for {cls.__name__}")
        missing = required - data.keys()
        if missing:
            raise _Bad(f"missing field(s) {sorted(missing)} of {cls.__name__}")
        kwargs = {}
        for name, v in data.items():
            try:
                kwargs[name] = decoders[name](v)
            except _Bad as exc:
                exc.path.append(f".{name}")
                raise
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise _Bad(f"{cls.__name__} refused the values: {exc}") from None

    return decode

"""Command-line flags made from the config dataclasses (as TRL's `HfArgumentParser` makes them from its configs).

Each flag is documented once: the help text is the dataclass field's docstring (the string literal under the
field, which editors show too). The field's type gives the parsing and the `--help` metavar, its default the
default; `metadata` may add `positional`, `nargs`, `flag` (another flag name), `group` (mutually exclusive,
required group), `doc_from` (take the docstring of the same field of another dataclass) or `choices` (a function
returning the allowed values, read when the parser is built and when a value is converted: a registry such as
codelora.benchmarks.names, which a Literal fixed at import could not follow).

argparse only collects strings: `from_args` converts them, so a bad value is one `UserError` line naming the
flag, the value and what is allowed (exit status 2), never argparse's usage dump or a traceback; the
dataclass's `__post_init__` then checks ranges and combinations, before anything heavy loads.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import math
import textwrap
import types
import typing
from typing import Any, Literal, get_args, get_origin, get_type_hints

from codelora.errors import UserError


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """{field name: docstring} of a dataclass and its bases, read from the source (attribute docstrings)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def flag_name(f: dataclasses.Field) -> str:
    """`--field-name` (or metadata `flag`) of a dataclass field."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _unwrap_optional(typ: Any) -> Any:
    if get_origin(typ) in (typing.Union, types.UnionType):
        inner = [a for a in get_args(typ) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return typ


def _metavar(typ: Any) -> str | None:
    typ = _unwrap_optional(typ)
    if get_origin(typ) is Literal:
        return "{" + ",".join(map(str, get_args(typ))) + "}"
    return {int: "INT", float: "NUMBER"}.get(typ)


def _help(cls: type, f: dataclasses.Field) -> str:
    source = f.metadata.get("doc_from", cls)
    doc = field_docs(source).get(f.name, "")
    default = f.default if f.default is not dataclasses.MISSING else None
    if source is not cls:
        from codelora.config import RunConfig

        hints = get_type_hints(RunConfig)
        section = next((name for name, t in hints.items() if t is source), source.__name__)
        doc += f" (default: the config's {section}.{f.name})"
    elif default not in (None, False, "", ()) and "default" not in doc.lower():
        doc += f" (default: {default})"
    # argparse formats help with %-interpolation
    return doc.replace("%", "%%")


def add_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one argument per field of dataclass `cls` to `parser`; values stay strings for `from_args`."""
    hints = get_type_hints(cls)
    groups: dict[str, Any] = {}
    # a command's own fields first, then those it shares with others (`--set`, sampling): --help reads top-down
    depth = {
        name: i for i, klass in enumerate(cls.__mro__) for name in reversed(vars(klass).get("__annotations__", {}))
    }
    for f in sorted(dataclasses.fields(cls), key=lambda f: depth.get(f.name, 0)):
        if not f.init or f.metadata.get("cli") is False:
            continue
        typ = hints[f.name]
        kwargs: dict[str, Any] = {"help": _help(cls, f)}
        target: Any = parser
        if f.metadata.get("group"):
            target = groups.get(f.metadata["group"])
            if target is None:
                target = groups[f.metadata["group"]] = parser.add_mutually_exclusive_group(required=True)
        if f.metadata.get("positional"):
            target.add_argument(f.name, **kwargs)
            continue
        kwargs["dest"] = f.name
        if typ is bool:
            kwargs["action"] = "store_true"
            kwargs["default"] = None
        else:
            if f.metadata.get("nargs"):
                kwargs["nargs"] = f.metadata["nargs"]
            if f.metadata.get("append"):
                kwargs["action"] = "append"
            choices = f.metadata.get("choices")
            kwargs["metavar"] = f.metadata.get("metavar") or (
                "{" + ",".join(choices()) + "}" if choices else _metavar(typ)
            )
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required and not f.metadata.get("group"):
                kwargs["required"] = True
        target.add_argument(flag_name(f), **kwargs)


def convert(value: Any, typ: Any, flag: str) -> Any:
    """One command-line string (or list of strings) as `typ`; UserError naming flag, value and what is allowed."""
    origin = get_origin(typ)
    if value is None:
        return None
    if origin in (typing.Union, types.UnionType):
        return convert(value, _unwrap_optional(typ), flag)
    if origin is Literal:
        choices = get_args(typ)
        if value not in choices:
            raise UserError(f"{flag} {value!r}: not allowed; choose from {', '.join(map(str, choices))}")
        return value
    if origin in (list, tuple):
        (inner, *_rest) = get_args(typ)
        items = value if isinstance(value, list) else [value]
        # `--models base,final` and `--models base final` both work: split commas too
        parts = [p.strip() for item in items for p in str(item).split(",") if p.strip()]
        converted = [convert(p, inner, flag) for p in parts]
        return tuple(converted) if origin is tuple else converted
    if typ is bool:
        return bool(value)
    if typ is int:
        try:
            return int(str(value).strip())
        except ValueError:
            raise UserError(f"{flag} {value!r}: not an integer") from None
    if typ is float:
        try:
            number = float(str(value).strip())
        except ValueError:
            raise UserError(f"{flag} {value!r}: not a number") from None
        if not math.isfinite(number):
            raise UserError(f"{flag} {value!r}: must be a finite number")
        return number
    if typ is str:
        return str(value)
    raise TypeError(f"unsupported flag type {typ} for {flag}")  # a bug in the dataclass, not user input


def from_args(cls: type, ns: argparse.Namespace) -> Any:
    """Build dataclass `cls` from parsed arguments; unset flags keep the field defaults; validation runs in
    the dataclass's `__post_init__` (UserError)."""
    hints = get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.metadata.get("cli") is False or not hasattr(ns, f.name):
            continue
        value = getattr(ns, f.name)
        if value is None or value == []:
            continue
        if f.metadata.get("append"):  # repeatable, taken as given: `--set lora.target_modules=[a,b]` keeps its comma
            kwargs[f.name] = list(value)
            continue
        flag = flag_name(f) if not f.metadata.get("positional") else f.name
        kwargs[f.name] = convert(value, hints[f.name], flag)
        allowed = f.metadata["choices"]() if f.metadata.get("choices") else None
        if allowed is not None and kwargs[f.name] not in allowed:
            raise UserError(f"{flag} {value!r}: not allowed; choose from {', '.join(map(str, allowed))}")
    return cls(**kwargs)


def need(ok: bool, flag: str, value: Any, allowed: str) -> None:
    """Raise UserError `FLAG VALUE: ALLOWED` unless ok (for `__post_init__` checks)."""
    if not ok:
        raise UserError(f"{flag} {value}: {allowed}")

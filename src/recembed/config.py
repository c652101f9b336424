"""Typed model configs: frozen dataclasses, built from dicts or ``--set key=value`` strings.

Every field gets its docstring from the string literal under it (read by :func:`field_docs`). Unknown
keys and values of the wrong type are :class:`~recembed.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from .errors import ConfigError, did_you_mean

C = TypeVar("C")


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} fits none of {annotation}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        inner = args[0] if args else str
        return origin(_coerce(key, v, inner) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if not f.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(f)
    if annotation is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if annotation is str:
        return str(value)
    if typing.get_origin(annotation) is typing.Literal:
        options = typing.get_args(annotation)
        if value not in options:
            raise ConfigError(f"{key}: expected one of {list(options)}, got {value!r}")
        return value
    return value


def build_config(cls: type[C], values: Mapping[str, Any] | None = None) -> C:
    """Build config ``cls`` from ``values`` (strings allowed, as from the command line)."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(values) - fields)
    if unknown:
        close = "".join(did_you_mean(k, fields) for k in unknown) if len(unknown) == 1 else ""
        if any(k.startswith("matryoshka_") for k in unknown):
            close += ("; Matryoshka training is an option of bpr, lightgcn, simgcl, xsimgcl, directau, sasrec, "
                      "gru4rec, bert4rec and unisrec only (docs/compact.md)")
        raise ConfigError(f"unknown key(s) {unknown} for {cls.__name__}{close}; valid keys: {sorted(fields)}")
    kwargs = {k: _coerce(k, v, hints[k]) for k, v in values.items()}
    return cls(**kwargs)


def saved_values(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` read from a save (model.json, a checkpoint) with the keys whose default changed after it was
    written filled in from ``cls.FORMER_DEFAULTS`` (the behaviour the save was made with); other keys it lacks
    take today's default when the config is built."""
    former = getattr(cls, "FORMER_DEFAULTS", {})
    return {**{k: v for k, v in former.items() if k not in values}, **values}


def config_to_dict(config: Any) -> dict[str, Any]:
    out = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the docstring written under it in the class body."""
    try:
        tree = ast.parse(inspect.getsource(cls).lstrip())
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for prev, node in zip(body, body[1:]):
        if (isinstance(prev, ast.AnnAssign) and isinstance(prev.target, ast.Name) and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            docs[prev.target.id] = node.value.value.strip()
    return docs


def check(condition: bool, key: str, message: str) -> None:
    """Raise ConfigError naming ``key`` unless ``condition`` holds (for ``__post_init__``)."""
    if not condition:
        raise ConfigError(f"{key}: {message}")

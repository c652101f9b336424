"""Search spaces: what ``recembed tune`` varies, declared next to each model's config, overridable from TOML.

A model config declares ``SEARCH_SPACE: ClassVar[dict[str, Param]]``, one entry per config field it searches::

    SEARCH_SPACE = {"learning_rate": Float(1e-4, 1e-2, log=True, doc="Adam step size"),
                    "embedding_dim": Choice((32, 64, 128)), "num_layers": Int(1, 4)}

A ``--space FILE.toml`` amends it (``inherit = false`` at the top starts from an empty space instead)::

    inherit = true            # keep the declared entries the file does not name
    reg_weight = 0.01         # a plain value fixes the field (it is no longer searched)
    [learning_rate]           # a table: a range (low, high, log, step) or choices; doc and grid optional
    low = 1e-4
    high = 3e-2
    log = true
    [embedding_dim]
    choices = [32, 64]

Whether a range is of integers or of numbers comes from the field's type. Every bound and choice is checked by
building the config with it, so a mistake is a :class:`~recembed.errors.ConfigError` naming the field before any
data is read. This module imports no Optuna (model configs import it).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import build_config
from ..errors import ConfigError, did_you_mean


@dataclass(frozen=True)
class Float:
    """A number in ``[low, high]``; ``log``: sampled on a log scale (low > 0); ``step``: a grid of that width."""

    low: float
    high: float
    log: bool = False
    step: float | None = None
    doc: str = ""
    grid: tuple = ()


@dataclass(frozen=True)
class Int:
    """An integer in ``[low, high]`` (inclusive); ``log``: sampled on a log scale (low >= 1)."""

    low: int
    high: int
    log: bool = False
    step: int = 1
    doc: str = ""
    grid: tuple = ()


@dataclass(frozen=True)
class Choice:
    """One of ``values`` (numbers, strings, booleans, or tuples for tuple fields such as ``hidden_units``)."""

    values: tuple
    doc: str = ""

    @property
    def grid(self) -> tuple:
        return self.values


Param = Float | Int | Choice
RANGE_KEYS = ("low", "high", "log", "step")
TABLE_KEYS = (*RANGE_KEYS, "choices", "doc", "grid")


def declared_space(config_cls: type) -> dict[str, Param]:
    """The space a model config declares (``SEARCH_SPACE``; empty when it declares none)."""
    return dict(getattr(config_cls, "SEARCH_SPACE", {}) or {})


def encode(value: Any) -> Any:
    """A choice as Optuna stores it: tuples / lists become ``"64,64"`` (what ``--set`` takes); others unchanged."""
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return value


def default_point(config_cls: type, space: dict[str, Param]) -> dict[str, Any]:
    """The model's default value of every searched field that lies in its range / choices (Optuna spellings):
    the study's first trial, so a search never ends below the defaults it started from. Fields whose default is
    outside the space (or data-dependent, e.g. ``auto``) are left to the sampler."""
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    point: dict[str, Any] = {}
    for name, p in space.items():
        value = defaults.get(name, dataclasses.MISSING)
        if value is dataclasses.MISSING:
            continue
        if isinstance(p, Choice):
            if encode(value) in [encode(v) for v in p.values]:
                point[name] = encode(value)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            continue
        elif p.low <= value <= p.high and (not isinstance(p, Int) or float(value).is_integer()):
            if p.step is None or abs(((value - p.low) / p.step) - round((value - p.low) / p.step)) < 1e-9:
                point[name] = int(value) if isinstance(p, Int) else float(value)
    return point


def suggest(trial: Any, space: dict[str, Param]) -> dict[str, Any]:
    """Draw every parameter of ``space`` from an Optuna ``trial``: ``{field: value}`` (``--set`` spellings)."""
    out: dict[str, Any] = {}
    for name, p in space.items():
        if isinstance(p, Choice):
            out[name] = trial.suggest_categorical(name, [encode(v) for v in p.values])
        elif isinstance(p, Int):
            out[name] = trial.suggest_int(name, p.low, p.high, step=p.step, log=p.log)
        else:
            out[name] = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
    return out


def grid_points(p: Param) -> list[Any]:
    """The values a grid search tries: ``grid`` when given, the choices, every integer of a range of at most 5,
    else low, middle (geometric on a log scale) and high."""
    if p.grid:
        return [encode(v) for v in p.grid]
    if isinstance(p, Int):
        values = list(range(p.low, p.high + 1, p.step))
        if len(values) <= 5:
            return values
        mid = round(math.sqrt(p.low * p.high)) if p.log else p.low + ((p.high - p.low) // (2 * p.step)) * p.step
        return sorted({p.low, mid, p.high})
    mid = math.sqrt(p.low * p.high) if p.log else (p.low + p.high) / 2
    if p.step:
        mid = p.low + round((mid - p.low) / p.step) * p.step
    return sorted({p.low, mid, p.high})


def grid(space: dict[str, Param]) -> dict[str, list[Any]]:
    return {name: grid_points(p) for name, p in space.items()}


def grid_size(space: dict[str, Param]) -> int:
    return math.prod(len(v) for v in grid(space).values()) if space else 0


def _kind(config_cls: type, name: str) -> type | None:
    """``int`` / ``float`` when the field is a plain number (a range may be given), else None (choices only)."""
    hint = typing.get_type_hints(config_cls).get(name)
    return hint if hint in (int, float) else None


def _check_name(config_cls: type, name: str, where: str) -> None:
    fields = {f.name for f in dataclasses.fields(config_cls) if f.init}
    if name not in fields:
        raise ConfigError(f"{where}: {name!r} is not a field of {config_cls.__name__}{did_you_mean(name, fields)}; "
                          f"fields: {', '.join(sorted(fields))}")


def _from_table(config_cls: type, name: str, table: dict[str, Any], where: str) -> Param:
    unknown = sorted(set(table) - set(TABLE_KEYS))
    if unknown:
        raise ConfigError(f"{where}, {name}: unknown key(s) {unknown}{did_you_mean(unknown[0], TABLE_KEYS)}; "
                          f"expected low, high (log, step) or choices (doc, grid optional)")
    doc, grid_values = str(table.get("doc", "")), table.get("grid", ())
    if not isinstance(grid_values, list | tuple):
        raise ConfigError(f"{where}, {name}: grid must be a list of values, got {grid_values!r}")
    grid_values = tuple(tuple(v) if isinstance(v, list) else v for v in grid_values)
    if "choices" in table:
        if set(table) & set(RANGE_KEYS):
            raise ConfigError(f"{where}, {name}: give either choices or low/high, not both")
        values = table["choices"]
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}, {name}: choices must be a non-empty list, got {values!r}")
        return Choice(tuple(tuple(v) if isinstance(v, list) else v for v in values), doc=doc)
    if "low" not in table or "high" not in table:
        raise ConfigError(f"{where}, {name}: a range needs both low and high (or give choices = [...])")
    kind = _kind(config_cls, name)
    if kind is None:
        raise ConfigError(f"{where}, {name}: not a numeric field, so it takes choices = [...], not low/high")
    log = table.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}, {name}: log must be true or false, got {log!r}")
    if kind is int and not all(isinstance(table[k], int) and not isinstance(table[k], bool) for k in ("low", "high")):
        raise ConfigError(f"{where}, {name}: an integer field, so low and high must be integers")
    try:
        if kind is int:
            return Int(int(table["low"]), int(table["high"]), log=log, step=int(table.get("step", 1)), doc=doc,
                       grid=grid_values)
        step = table.get("step")
        return Float(float(table["low"]), float(table["high"]), log=log, step=None if step is None else float(step),
                     doc=doc, grid=grid_values)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}, {name}: low, high and step must be numbers") from None


def read_space_file(path: str | Path, config_cls: type) -> tuple[dict[str, Param], dict[str, Any], bool]:
    """``(entries, fixed values, inherit)`` of a ``--space`` TOML file (see the module docstring)."""
    import tomllib

    where = f"--space {path}"
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    inherit = raw.pop("inherit", True)
    if not isinstance(inherit, bool):
        raise ConfigError(f"{where}: inherit must be true or false, got {inherit!r}")
    entries: dict[str, Param] = {}
    fixed: dict[str, Any] = {}
    for name, value in raw.items():
        _check_name(config_cls, name, where)
        if isinstance(value, dict):
            entries[name] = _from_table(config_cls, name, value, where)
        else:
            fixed[name] = tuple(value) if isinstance(value, list) else value
    return entries, fixed, inherit


def check_space(config_cls: type, space: dict[str, Param], fixed: dict[str, Any], where: str) -> None:
    """Every bound and choice builds a valid config (with the fixed values): else a ConfigError naming the field."""
    try:
        build_config(config_cls, fixed)
    except ConfigError as exc:
        raise ConfigError(f"{where}: the fixed values: {exc}") from None
    for name, p in space.items():
        _check_name(config_cls, name, where)
        if isinstance(p, Float | Int):
            if not p.low < p.high:
                raise ConfigError(f"{where}, {name}: low must be below high, got low={p.low}, high={p.high}")
            if p.log and p.low <= 0:
                raise ConfigError(f"{where}, {name}: a log scale needs low > 0, got low={p.low}")
            if p.step is not None and p.step <= 0:
                raise ConfigError(f"{where}, {name}: step must be > 0, got {p.step}")
            if p.log and (p.step not in (None, 1)):
                raise ConfigError(f"{where}, {name}: step cannot be combined with log")
        values = list(p.values) if isinstance(p, Choice) else [p.low, p.high]
        for value in [*values, *p.grid]:
            try:
                build_config(config_cls, {**fixed, name: encode(value)})
            except ConfigError as exc:
                raise ConfigError(f"{where}, {name}: the value {value!r} is not valid ({exc})") from None


def resolve(config_cls: type, model: str, sets: dict[str, Any], space_file: str | None = None
            ) -> tuple[dict[str, Param], dict[str, Any]]:
    """``(space, fixed)`` for ``model``: the declared space amended by ``space_file``; the fixed values are the
    file's plain values and ``sets`` (``--set``), which win over a searched entry of the same name."""
    space = declared_space(config_cls)
    fixed: dict[str, Any] = {}
    where = f"{config_cls.__name__}.SEARCH_SPACE"
    try:
        build_config(config_cls, sets)
    except ConfigError as exc:
        raise ConfigError(f"--set: {exc}") from None
    if space_file:
        entries, fixed, inherit = read_space_file(space_file, config_cls)
        space = {**(space if inherit else {}), **entries}
        where = f"--space {space_file}"
    fixed = {**fixed, **sets}
    space = {k: v for k, v in space.items() if k not in fixed}
    if not space:
        why = "every searched field is fixed by --set / the --space file" if (declared_space(config_cls) or
                                                                              space_file) else \
            f"{model} declares no search space"
        raise ConfigError(f"--space: nothing to search for {model} ({why}); pass --space FILE.toml with "
                          f"[field] tables (low/high or choices); see docs/tuning.md")
    check_space(config_cls, space, fixed, where)
    return space, fixed


def to_dict(space: dict[str, Param]) -> dict[str, dict[str, Any]]:
    """JSON-able form (study attributes, best_config.json)."""
    out: dict[str, dict[str, Any]] = {}
    for name, p in space.items():
        if isinstance(p, Choice):
            out[name] = {"choices": [encode(v) for v in p.values]}
        else:
            out[name] = {"low": p.low, "high": p.high, "log": p.log, **({"step": p.step} if p.step not in
                                                                         (None, 1) else {})}
    return out


def describe(config_cls: type, space: dict[str, Param]) -> list[tuple[str, str, str, str]]:
    """Rows ``(field, searched over, default, doc)`` for ``--show-space`` and the docs."""
    from ..config import field_docs

    docs = field_docs(config_cls)
    for base in config_cls.__mro__[1:]:  # inherited fields (TrainConfig's learning_rate, ...) keep their docs
        docs = {**field_docs(base), **docs} if dataclasses.is_dataclass(base) else docs
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    rows = []
    for name, p in space.items():
        if isinstance(p, Choice):
            what = "one of " + ", ".join(str(encode(v)) for v in p.values)
        else:
            what = f"{p.low:g} .. {p.high:g}" + (" (log)" if p.log else "") + \
                   (f" step {p.step:g}" if p.step not in (None, 1) else "")
        rows.append((name, what, str(encode(defaults.get(name, ""))), p.doc or docs.get(name, "").split("\n")[0]))
    return rows

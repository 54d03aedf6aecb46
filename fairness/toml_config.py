"""TOML config plumbing shared by every typed config in ecorank: read, merge, override, explain errors.

The models themselves (pydantic, one per config kind) only declare types, bounds and meaning; these
helpers turn files and `section.key=value` overrides into a dict, and a pydantic `ValidationError`
into a message that names the key, the value received, what was expected and how to fix it.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError


class ConfigError(ValueError):
    """A config file or override is invalid; the message says what and how to fix it."""


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path} is not valid TOML: {err}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror}") from None


def deep_merge(base: dict[str, Any], overlay: Mapping[str, Any], *, replace: Sequence[str] = ()) -> dict[str, Any]:
    """Merge nested tables, overlay wins; keys in `replace` are replaced whole instead of merged."""
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict) and key not in replace:
            out[key] = deep_merge(out[key], value, replace=replace)
        else:
            out[key] = value
    return out


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse `section.key=value` strings; values are TOML literals (`3`, `0.5`, `true`, `[1, 2]`)."""
    parsed: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form section.key=value; e.g. --set users.n_users=300")
        key, raw = item.split("=", 1)
        key, raw = key.strip(), raw.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key; e.g. --set users.n_users=300")
        try:
            parsed[key] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            parsed[key] = raw  # a bare word is a string, e.g. outputs.impressions=all
    return parsed


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """data[a][b][c] = value for `a.b.c`; unknown sections or keys raise with the options and a suggestion."""
    parts = dotted.split(".")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
            where = ".".join(parts[: depth + 1])
            options = sorted(k for k, v in node.items() if isinstance(v, dict)) if isinstance(node, dict) else []
            raise ConfigError(f"override {dotted!r}: no section {where!r}; expected one of {options}"
                              + did_you_mean(part, options))
        node = node[part]
    leaf = parts[-1]
    if leaf not in node:
        options = sorted(node)
        raise ConfigError(f"override {dotted!r}: unknown key {leaf!r}; expected one of {options}"
                          + did_you_mean(leaf, options))
    node[leaf] = value


def format_validation_error(err: ValidationError, *, root: type[BaseModel], header: str, fix_in: str) -> str:
    """One line per problem: key, value received, what was expected, and where to fix it."""
    lines = [header]
    for problem in err.errors():
        loc = ".".join(str(p) for p in problem["loc"])
        received = problem.get("input")
        if problem["type"] == "extra_forbidden":
            section_model = model_at(root, problem["loc"][:-1])
            options = sorted(section_model.model_fields) if section_model else []
            hint = did_you_mean(str(problem["loc"][-1]), options)
            lines.append(f"  - {loc}: unknown key (received {received!r}); expected one of {options}{hint}")
        elif problem["type"] == "missing":
            lines.append(f"  - {loc}: missing; add it to {fix_in} or pass --set {loc}=VALUE")
        elif isinstance(received, dict):  # a whole-section check: the message names the keys in conflict
            message = str(problem["msg"]).removeprefix("Value error, ")
            lines.append(f"  - {loc or '(top level)'}: {message}")
        else:
            shown = received
            message = str(problem["msg"]).removeprefix("Value error, ")
            lines.append(f"  - {loc or '(top level)'}: received {shown!r}; expected: {message}. "
                         f"Fix it in {fix_in} or with --set {loc or 'KEY'}=VALUE")
    return "\n".join(lines)


def model_at(root: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    model = root
    for part in loc:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def did_you_mean(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""

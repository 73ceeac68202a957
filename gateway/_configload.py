"""Loading YAML into typed, frozen config structures, with errors that name the path.

Rule 1: `${VAR}` and `${VAR:-default}` are replaced inside string values only, after YAML parsing, so an
environment value can never change the document's structure; a variable that is unset and has no default is an
error naming the path.
Rule 2: every error reads `path: problem`, for example `smscs[1].window: expected an integer >= 1, got "ten"`.
Rule 3: a `Secret` is a str whose repr is '***'; `*_file` keys are read at load time and their file named on error.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi
import yaml

__all__ = ["ConfigError", "Secret", "convert", "expand_env", "load_yaml"]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file is invalid; the message is `path: problem` (or `FILE: problem` for YAML syntax)."""

    def __init__(self, msg: str, *, path: str = "") -> None:
        super().__init__(f"{path}: {msg}" if path else msg)
        self.path = path
        self.problem = msg


class Secret(str):
    """A secret string (password, API key, HMAC key): its repr never shows it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def expand_env(node: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string of a parsed YAML tree."""
    if isinstance(node, str):
        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is not set and has no default (${{{name}:-...}})",
                              path=path or "$")
        return _VAR.sub(repl, node)
    if isinstance(node, dict):
        return {k: expand_env(v, env, _join(path, k)) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_env(v, env, f"{path}[{i}]") for i, v in enumerate(node)]
    return node


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file into plain Python data.

    Raises:
        ConfigError: unreadable file or bad YAML (with the line and column).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(p)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML{where}: {problem}", path=str(p)) from None
    return {} if data is None else data


_TYPE_WORDS = {
    "int": "an integer", "float": "a number", "str": "a string", "bool": "true or false", "array": "a list",
    "object": "a mapping", "null": "nothing", "number": "a number",
}
_EXPECTED = re.compile(r"^Expected `(?P<type>[^`]+)`(?P<rest>.*?)(?:, got `(?P<got>[^`]+)`)?$")
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def _lookup(data: Any, path: str) -> tuple[bool, Any]:
    """The raw value at a msgspec path like `.smscs[1].window`."""
    node = data
    for m in re.finditer(r"\.([^.\[]+)|\[(\d+)\]", path):
        key, index = m.group(1), m.group(2)
        try:
            node = node[int(index)] if index is not None else node[key]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, node


def _show(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


_SECRET_KEYS = frozenset({"sha256"})  # besides Secret fields: a pasted key where its hash belongs


def _type_at(type_: type, raw_path: str) -> mi.Type | None:
    """The declared type at a msgspec path like `.smscs[1].window` (None when the path leaves the types)."""
    node: mi.Type = mi.type_info(type_)
    for m in re.finditer(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]", raw_path):
        while isinstance(node, mi.UnionType):
            inner = [t for t in node.types if not isinstance(t, mi.NoneType)]
            if len(inner) != 1:
                return None
            node = inner[0]
        if m.group(1) is not None and isinstance(node, mi.StructType):
            field = next((f for f in node.fields if f.encode_name == m.group(1)), None)
            if field is None:
                return None
            node = field.type
        elif m.group(2) is not None and isinstance(node, (mi.ListType, mi.TupleType, mi.VarTupleType)):
            node = node.item_type if not isinstance(node, mi.TupleType) else node.item_types[0]
        elif m.group(2) == "..." and isinstance(node, mi.DictType):
            node = node.value_type
        else:
            return None
    return node


def _is_secret(node: mi.Type | None, path: str) -> bool:
    if path.rsplit(".", 1)[-1] in _SECRET_KEYS:
        return True
    types = node.types if isinstance(node, mi.UnionType) else (node,)
    return any(isinstance(t, mi.CustomType) and issubclass(t.cls, Secret) for t in types)


def _lower_bound(node: mi.Type | None, word: str) -> str:
    """` >= 1` for a number type with a lower bound (msgspec names a bound only when a value breaks it)."""
    types = node.types if isinstance(node, mi.UnionType) else (node,)
    for t in types:
        if isinstance(t, (mi.IntType, mi.FloatType)) and (word == "an integer") == isinstance(t, mi.IntType):
            show = float if isinstance(t, mi.FloatType) else int
            if t.ge is not None:
                return f" >= {show(t.ge)}"
            if t.gt is not None:
                return f" > {show(t.gt)}"
    return ""


def _kind(value: Any) -> str:
    for t, word in ((bool, "true or false"), (int, "an integer"), (float, "a number"), (str, "a string"),
                    (list, "a list"), (dict, "a mapping")):
        if isinstance(value, t):
            return word
    return "nothing"


def _translate(exc: msgspec.ValidationError, data: Any, type_: type) -> ConfigError:
    m = _AT.match(str(exc))
    assert m is not None
    msg, raw_path = m.group("msg"), m.group("path") or ""
    path = raw_path[1:] if raw_path.startswith(".") else raw_path
    unknown = re.match(r"Object contains unknown field `([^`]+)`", msg)
    if unknown:
        return ConfigError("unknown key", path=_join(path, unknown.group(1)))
    missing = re.match(r"Object missing required field `([^`]+)`", msg)
    if missing:
        return ConfigError("required key is missing", path=_join(path, missing.group(1)))
    node = _type_at(type_, raw_path)
    found, value = _lookup(data, raw_path)
    if not found:
        got = ""
    elif _is_secret(node, path):
        got = f", got {_kind(value)} (not shown: it may be a secret)"
    else:
        got = f", got {_show(value)}"
    expected = _EXPECTED.match(msg)
    if expected:
        rest = expected.group("rest")
        words = []
        for t in (t.strip() for t in expected.group("type").split("|")):
            word = "a string" if t == "Secret" else _TYPE_WORDS.get(t, t)
            if not rest and word in ("an integer", "a number"):
                word += _lower_bound(node, word)
            words.append(word)
        return ConfigError(f"expected {' or '.join(words)}{rest}{got}", path=path or "$")
    enum = re.match(r"Invalid enum value (.*)", msg)
    if enum:
        choices = [str(e.value) for e in node.cls] if isinstance(node, mi.EnumType) else []
        if choices:
            listed = ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
            return ConfigError(f"expected {listed}{got}", path=path or "$")
        return ConfigError(f"invalid value {enum.group(1)}", path=path or "$")
    return ConfigError(f"{msg[:1].lower()}{msg[1:]}{got}", path=path or "$")


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Secret:
        if isinstance(obj, str):
            return Secret(obj)
        raise TypeError("expected a string")  # msgspec reports it as a ValidationError at the path
    raise NotImplementedError


def convert(data: Any, type_: type[T]) -> T:
    """Validate plain data into `type_` (a msgspec Struct tree).

    Raises:
        ConfigError: the first problem, as `path: problem`.
    """
    try:
        # strict=False: a string becomes a number or a boolean where the type asks for one, so that
        # `port: ${SMSC_PORT:-2775}` works (Rule 1 substitutes inside strings only).
        return msgspec.convert(data, type_, dec_hook=_dec_hook, strict=False)
    except msgspec.ValidationError as exc:
        raise _translate(exc, data, type_) from None


def read_secret_file(path: str, key_path: str) -> Secret:
    """The first line of a secret file (systemd credentials, Kubernetes secrets), stripped.

    Raises:
        ConfigError: the file cannot be read.
    """
    try:
        return Secret(Path(path).read_text(encoding="utf-8").strip())
    except OSError as exc:
        raise ConfigError(f"file {path!r} cannot be read: {exc.strerror}", path=key_path) from None


def environ() -> Mapping[str, str]:
    """The process environment (a seam for tests)."""
    return os.environ

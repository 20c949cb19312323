"""Changing the config file from a front end: a set's or image job's keys are edited in
place with tomlkit, so comments, order and spacing stay as the user wrote them; the new
text is checked exactly as a command would read it before it replaces the file."""

from __future__ import annotations

import os
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Table

from twofold.core.errors import ConfigError
from twofold.jobs.config import KEEP_KEYS, Config, parse


def read_text(path: Path) -> str:
    """The config's text; empty when there is no file yet."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror}") from err


def _table(doc: tomlkit.TOMLDocument, kind: str, name: str) -> Table:
    group = doc.get(kind)
    if group is None:
        group = tomlkit.table(is_super_table=True)
        doc[kind] = group
    if not isinstance(group, Table):
        raise ConfigError(f"'{kind}' must be a table of [{kind}.NAME] sections")
    body = group.get(name)
    if body is None:
        body = tomlkit.table()
        group[name] = body
    if not isinstance(body, Table):
        raise ConfigError(f"[{kind}.{name}] must be a table")
    return body


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def edit_job(text: str, kind: str, name: str, values: dict[str, str]) -> str:
    """The config text with job [kind.name]'s keys set from form fields: `sources` and
    `exclude` one per line; `target`, `schedule`, `source`, `compression` as text (an
    empty schedule or target removes the key); booleans as "true"/"false"; the keep_*
    counts of retention as whole numbers (0 or empty removes the key)."""
    if kind not in ("sets", "images"):
        raise ConfigError(f"unknown kind of job {kind!r}")
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as err:
        raise ConfigError(f"the config cannot be read: {err}",
                          "fix it in the editor below first") from err
    body = _table(doc, kind, name)
    for key, value in values.items():
        if key in ("sources", "exclude"):
            array = tomlkit.array()
            array.extend(_lines(value))
            if len(array) > 1:
                array.multiline(True)
            body[key] = array
        elif key in ("default_excludes", "allow_mass_delete", "on_change"):
            body[key] = value == "true"
        elif key in KEEP_KEYS:
            if value.strip() in ("", "0"):
                body.pop(key, None)
            elif value.strip().isdigit():
                body[key] = int(value)
            else:
                raise ConfigError(f"[{kind}.{name}]: '{key}' must be a whole number, 0 or "
                                  f"more, not {value!r}")
        elif value.strip():
            body[key] = value.strip()
        elif key in body:
            del body[key]
    return tomlkit.dumps(doc)


def edit_exclude(text: str, patterns: str) -> str:
    """The config text with the top-level `exclude` (every set's) set from one pattern a
    line."""
    try:
        doc = tomlkit.parse(text)
    except TOMLKitError as err:
        raise ConfigError(f"the config cannot be read: {err}",
                          "fix it in the editor below first") from err
    array = tomlkit.array()
    array.extend(_lines(patterns))
    if "exclude" in doc:
        doc["exclude"] = array
    else:  # before the first table, where a top-level key must be
        body = doc.body
        at = next((n for n, (_, item) in enumerate(body) if isinstance(item, Table)),
                  len(body))
        doc.body.insert(at, (tomlkit.key("exclude"), array))
    return tomlkit.dumps(doc)


def remove_job(text: str, kind: str, name: str) -> str:
    """The config text without job [kind.name]."""
    doc = tomlkit.parse(text)
    group = doc.get(kind)
    if isinstance(group, Table) and name in group:
        del group[name]
    return tomlkit.dumps(doc)


def check(text: str, path: Path) -> Config:
    """The config the text makes, or the ConfigError (with its line) a command would
    raise."""
    return parse(text, path)


def save(path: Path, text: str) -> Config:
    """Check `text`, then put it in place of the config file atomically."""
    cfg = check(text, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return cfg

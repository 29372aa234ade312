"""Write tuned values into models.toml, keeping every comment and the layout (tomlkit edits the document in place).

Only the fields a candidate sets are touched, and only where the value differs. Above the first of them in the
entry goes one `# make tune:` line pointing to the report under reports/ that holds the figures the values were
chosen on; a later run replaces it, so it always points to the evidence of the values below it. The result is
parsed with core.spec.load_spec before it replaces the file: a write that the export would refuse never lands.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dataclasses import dataclass

import tomlkit
from tomlkit.items import AoT, Comment, Table

from core.spec import load_declared_spec

MARK = "make tune:"


@dataclass(frozen=True)
class EntryUpdate:
    """What one run writes into one [[model]] table."""

    values: dict  # field -> new value, for the fields that change
    pointer: str  # one line: when, and which report holds the figures
    fields: tuple[str, ...] = ()  # every field the run tuned: the pointer goes above the first of them


def _is_ours(item) -> bool:
    return isinstance(item, Comment) and item.as_string().strip().lstrip("#").strip().startswith(MARK)


def _tables(doc) -> AoT:
    models = doc.get("model")
    if not isinstance(models, AoT):
        raise ValueError("models.toml has no [[model]] tables")
    return models


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def _anchor(body: list, fields) -> int:
    """Where our lines go: before the first tuned field, else before the entry's sub-tables ([[model.input]]) and
    the blank line in front of them, else at the end."""
    for index, (key, _) in enumerate(body):
        if key is not None and key.key in fields:
            return index
    index = next((i for i, (_, item) in enumerate(body) if isinstance(item, (AoT, Table))), len(body))
    while index > 0 and body[index - 1][0] is None and not body[index - 1][1].as_string().strip():
        index -= 1
    return index


def update_entry(table: Table, update: EntryUpdate) -> Table:
    """A copy of one [[model]] table with the update's values set and its pointer line in front of the first tuned
    field (an earlier run's `# make tune:` lines removed)."""
    values = update.values
    for key, value in values.items():
        if key in table and table[key] != _plain(value):
            table[key] = _plain(value)
    body = [(key, item) for key, item in table.value.body if not _is_ours(item)]
    anchor = _anchor(body, set(update.fields) | set(values))
    rebuilt = tomlkit.table()
    for index, (key, item) in enumerate([*body, (None, None)]):
        if index == anchor:
            rebuilt.add(tomlkit.comment(f"{MARK} {' '.join(update.pointer.split())}"))
            for name in (k for k in values if k not in table):
                rebuilt.add(name, _plain(values[name]))
        if item is not None:
            rebuilt.raw_append(key, item)
    return rebuilt


def generated_tokenizers(spec_path: Path) -> dict[str, str]:
    """{generated tokenizer name: the [[model]] whose [model.text] table generates it (and holds its fields)}."""
    return {m.source.onnx.text.tokenizer: m.name for m in load_declared_spec(spec_path).models
            if m.source.onnx is not None and m.source.onnx.text is not None}


def write(spec_path: Path, updates: dict[str, EntryUpdate]) -> str:
    """Apply {entry name: update} to models.toml; returns the new text (also written). An entry may be a [[model]]
    or a tokenizer generated from a [model.text] table: its fields go into that table."""
    text = spec_path.read_text(encoding="utf-8")
    doc = tomlkit.parse(text)
    tables = _tables(doc)
    names = [t.get("name") for t in tables]
    tokenizers = generated_tokenizers(spec_path) if any(entry not in names for entry in updates) else {}
    for entry, update in updates.items():
        if entry in names:
            index = names.index(entry)
            tables[index] = update_entry(tables[index], update)
        elif entry in tokenizers:
            owner = tables[names.index(tokenizers[entry])]
            owner["text"] = update_entry(owner["text"], update)
        else:
            raise ValueError(f"{spec_path} has no [[model]] named {entry!r}, and no [model.text] table generates it")
    new_text = tomlkit.dumps(doc)
    # check before replacing: in a temporary file beside it, so relative paths in the spec still resolve
    fd, tmp = tempfile.mkstemp(prefix=".models-tune-", suffix=".toml", dir=spec_path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(new_text)
        load_declared_spec(Path(tmp))
        os.replace(tmp, spec_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return new_text

"""Writing tuned values into a copy of the project's models.toml: comments and layout kept, one pointer line on top."""

from __future__ import annotations

import difflib
import tomllib

import pytest

from core.spec import load_declared_spec
from tests.conftest import ROOT
from tests.tune.helpers import entry_figures
from tune import models_toml
from tune.models_toml import EntryUpdate

SOURCE = (ROOT / "models.toml").read_text(encoding="utf-8")


def changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_only_the_tuned_values_change_and_the_figures_go_above_them(spec_copy):
    entry = tomllib.loads(SOURCE)["model"][0]
    new_instances = entry["instance_count"] + 1

    text = models_toml.write(spec_copy, {entry["name"]: EntryUpdate({"instance_count": new_instances},
                                                                  "720 req/s at 8 conns")})

    comment = f"# {models_toml.MARK} 720 req/s at 8 conns"
    replaced = [f"-{line}" for line in entry_figures(SOURCE, entry["name"])]  # an earlier run's, if any
    assert sorted(changed_lines(SOURCE, text)) == sorted(
        [f"+{comment}", f"-instance_count = {entry['instance_count']}", f"+instance_count = {new_instances}"]
        + replaced)
    lines = text.splitlines()
    assert lines[lines.index(comment) + 1] == f"instance_count = {new_instances}"
    assert tomllib.loads(text)["model"][0]["instance_count"] == new_instances
    assert spec_copy.read_text() == text


def test_a_second_run_replaces_the_pointer_instead_of_piling_lines_up(spec_copy):
    name = tomllib.loads(SOURCE)["model"][0]["name"]
    models_toml.write(spec_copy, {name: EntryUpdate({"instance_count": 3}, "first run\nin reports/a/report.md")})

    text = models_toml.write(spec_copy, {name: EntryUpdate({}, "second run", ("instance_count",))})

    assert entry_figures(text, name) == [f"# {models_toml.MARK} second run"] and "first run" not in text
    assert text.count(models_toml.MARK) == SOURCE.count(models_toml.MARK) - len(entry_figures(SOURCE, name)) + 1


def test_the_committed_models_toml_holds_one_pointer_line_per_tuned_table_at_most():
    for entry in tomllib.loads(SOURCE)["model"]:  # a [model.text] table has its own, for its tokenizer
        assert len(entry_figures(SOURCE, entry["name"])) <= 1 + ("text" in entry), entry["name"]


def test_a_field_the_entry_lacks_is_added_before_its_tensor_tables(spec_copy):
    python_entry = next(m for m in tomllib.loads(SOURCE)["model"] if m["kind"] == "python")
    assert "max_queue_delay_microseconds" not in python_entry

    text = models_toml.write(spec_copy, {python_entry["name"]: EntryUpdate({"max_queue_delay_microseconds": 100},
                                                                          "figures")})

    written = next(m for m in tomllib.loads(text)["model"] if m["name"] == python_entry["name"])
    assert written["max_queue_delay_microseconds"] == 100 and written["input"] == python_entry["input"]
    replaced = {f"-{line}" for line in entry_figures(SOURCE, python_entry["name"])}
    assert all(line.startswith("+") or line in replaced for line in changed_lines(SOURCE, text))


def test_a_value_the_spec_refuses_is_not_written(spec_copy):
    name = tomllib.loads(SOURCE)["model"][0]["name"]

    with pytest.raises(Exception, match="instance_count"):
        models_toml.write(spec_copy, {name: EntryUpdate({"instance_count": 0}, "figures")})
    assert spec_copy.read_text() == SOURCE
    assert not list(spec_copy.parent.glob(".models-tune-*"))


def test_a_generated_tokenizers_instances_go_into_the_text_table_that_generates_it(spec_copy):
    owner = next(m for m in tomllib.loads(SOURCE)["model"] if "text" in m)
    tokenizer = f"{owner['text']['name']}_tokenizer"

    text = models_toml.write(spec_copy, {tokenizer: EntryUpdate({"instance_count": 2}, "1605 req/s at 32 conns")})

    written = next(m for m in tomllib.loads(text)["model"] if m["name"] == owner["name"])
    assert written["text"]["instance_count"] == 2 and "instance_count" not in owner["text"]
    assert written["instance_count"] == owner["instance_count"]  # the classifier's own instances are untouched
    assert f"# {models_toml.MARK} 1605 req/s at 32 conns" in text
    generated = next(m for m in load_declared_spec(spec_copy).models if m.name == tokenizer)
    assert generated.runtime.instance_count == 2


def test_an_entry_neither_listed_nor_generated_is_refused_naming_it(spec_copy):
    with pytest.raises(ValueError, match="no \\[\\[model\\]\\] named 'nope', and no \\[model.text\\] table"):
        models_toml.write(spec_copy, {"nope": EntryUpdate({"instance_count": 2}, "figures")})
    assert spec_copy.read_text() == SOURCE

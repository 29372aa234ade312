"""Which models a run tunes, against what the repository holds (no server)."""

from __future__ import annotations

import pytest

from core.spec import load_spec
from tests.conftest import ROOT
from tune.run import select
from tune.space import tunable

SPEC = load_spec(ROOT / "models.toml")


def repository_with(tmp_path, *models: str):
    for name in models:
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / "config.pbtxt").write_text("")
    return tmp_path


def test_a_run_over_every_model_skips_the_ones_not_exported_and_says_so(tmp_path):
    repository = repository_with(tmp_path, "digits")

    names, notes = select(SPEC, (), repository)

    assert names == ["digits"]
    assert len(notes) == len(tunable(SPEC)) - 1 and all("run `make export`" in n for n in notes)


def test_a_named_model_that_is_not_exported_is_an_error_naming_what_is_missing(tmp_path):
    repository = repository_with(tmp_path, "digits", "sentiment")  # the ensemble without its steps

    with pytest.raises(FileNotFoundError, match="lacks sentiment_tokenizer, sentiment_classifier"):
        select(SPEC, ("sentiment",), repository)


def test_nothing_exported_is_an_error_not_an_empty_report(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing to tune"):
        select(SPEC, (), tmp_path)

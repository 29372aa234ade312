"""The client page's example (docs/client.md) runs as written (only the server address differs) and prints what it promises."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "client.md"


def examples() -> list[str]:
    section = PAGE.read_text().split("<!-- client -->", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 2, "docs/client.md lacks its two python examples (helpers, then predict)"
    return blocks


def client_example() -> str:
    return examples()[0]


def run_against(triton, code: str, cwd) -> str:
    assert '"127.0.0.1:8000"' in code
    code = code.replace('"127.0.0.1:8000"', repr(triton.http_url))
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_readme_example_is_three_lines():
    assert len(client_example().strip().splitlines()) == 3


def test_the_package_readme_shows_the_same_example():
    assert f"```python\n{client_example()}```" in (ROOT / "client" / "README.md").read_text()


@pytest.mark.integration
def test_the_readme_example_classifies_an_image_file_and_a_sentence(triton, tmp_path):
    from PIL import Image

    from export.data.digits import load_digits_images

    images, labels = load_digits_images()
    seven = images[list(labels).index(7)].reshape(8, 8)
    # As a user would have it: dark ink on light paper, larger than 8x8.
    Image.fromarray((255 - seven).astype(np.uint8), mode="L").resize((64, 64), Image.BILINEAR).save(
        tmp_path / "seven.png")
    output = run_against(triton, client_example(), tmp_path)
    assert output.split() == ["7", "positive"], output


@pytest.mark.integration
def test_the_readme_predict_example_prints_a_label_and_the_two_best_scores_per_text(triton, tmp_path):
    import ast

    lines = run_against(triton, examples()[1], tmp_path).splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["positive", "negative"], lines
    for line in lines:
        label, scores = line.split(" ", 1)
        scores = ast.literal_eval(scores)
        assert list(scores)[0] == label and set(scores) == {"positive", "negative"}, line

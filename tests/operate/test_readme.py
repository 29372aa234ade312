"""The Deploy page (docs/deploy.md) names files, targets and tests that exist: it fails when they drift."""
from __future__ import annotations

import re

from tests.conftest import ROOT

SECTION = (ROOT / "docs" / "deploy.md").read_text()  # Deploy, Monitoring and Kubernetes
MAKEFILE = (ROOT / "Makefile").read_text()


def test_every_deploy_file_the_section_names_exists():
    paths = set(re.findall(r"deploy/[\w./-]+\.(?:ya?ml|json|Dockerfile)", SECTION))
    siblings = {f"deploy/k8s/{name}" for name in re.findall(r"`(triton-pvc\.yaml|loadtest\.Dockerfile)`", SECTION)}
    assert len(paths) >= 10
    assert [p for p in sorted(paths | siblings) if not (ROOT / p).is_file()] == []


def test_every_make_target_and_test_file_the_section_names_exists():
    targets = set(re.findall(r"make ([a-z-]+)", SECTION))
    assert {"deploy", "monitor", "start", "serve", "loadtest"} <= targets
    assert [t for t in targets if not re.search(rf"^{t}:", MAKEFILE, re.M)] == []
    tests = set(re.findall(r"`((?:tests/operate/)?(?:test_\w+\.py|rules_test\.yml))`", SECTION))
    assert tests and [t for t in tests if not (ROOT / "tests" / "operate" / t.removeprefix("tests/operate/")).is_file()] == []

"""triton.Dockerfile, checked statically (Docker is not available where the tests run)."""
from __future__ import annotations

import json
import re

from core.triton import ADMIN_KEY_ENV, ServeOptions, serving_flags
from operate import k8s
from tests.conftest import ROOT

DOCKERFILE = (ROOT / "triton.Dockerfile").read_text()
# The first NGC release with the fixes of NVIDIA's August 2025 Triton bulletin (CVE-2025-23310/23311 and others):
# https://github.com/NVIDIA/product-security/blob/main/2025/5687/5687.md
FIRST_FIXED_RELEASE = (25, 7)
INSTRUCTIONS = [line for line in re.sub(r"\\\n\s*", " ", DOCKERFILE).splitlines() if line and not line.startswith("#")]


def instruction(name: str) -> list[str]:
    return [line[len(name) + 1:] for line in INSTRUCTIONS if line.startswith(name + " ")]


def test_base_image_is_a_pinned_ngc_release_with_the_2025_security_fixes():
    (image,) = instruction("FROM")
    match = re.fullmatch(r"nvcr\.io/nvidia/tritonserver:(\d\d)\.(\d\d)-py3", image)
    assert match, f"{image}: pin a plain NGC Triton release tag (YY.MM-py3), not latest or a variant"
    assert (int(match[1]), int(match[2])) >= FIRST_FIXED_RELEASE, f"{image} predates 25.07 and its HTTP fixes"


def test_python_model_dependencies_are_the_locked_versions_and_nothing_else_is_installed():
    """The container's Python is 3.12 (NGC 24.12 and later): the python models get what requirements-py312.lock
    pins, the versions the local tests ran them with."""
    installs = [run.split("pip install", 1)[1] for run in instruction("RUN") if "pip install" in run]
    requirements = [arg for install in installs for arg in install.split() if not arg.startswith("-")]
    assert all(re.fullmatch(r"[a-z-]+==[\d.]+", requirement) for requirement in requirements), requirements
    assert sorted(requirement.split("==")[0] for requirement in requirements) == ["numpy", "pillow", "tokenizers"]
    locked = set((ROOT / "requirements-py312.lock").read_text().split())
    assert set(requirements) <= locked, f"not the locked versions: {set(requirements) - locked}"


def test_repository_is_copied_and_the_server_runs_as_a_non_root_user():
    assert any(line.endswith("model_repository /models") for line in instruction("COPY"))
    users = instruction("USER")
    assert users and users[-1] == str(k8s.UID)  # the manifests' runAsUser
    assert any(line.endswith("model_repository /models") and f"--chown={k8s.UID}:" in line for line in instruction("COPY"))


def test_ports_and_readiness_healthcheck():
    assert instruction("EXPOSE") == ["8000 8001 8002"]
    (healthcheck,) = instruction("HEALTHCHECK")
    assert "/v2/health/ready" in healthcheck and "CMD" in healthcheck


def test_server_command_is_the_one_core_triton_builds_for_every_deployment():
    """The container's command line drifts from the local launcher's and the manifests' only by failing here."""
    (cmd,) = instruction("CMD")
    key = f"${{{ADMIN_KEY_ENV}:?set {ADMIN_KEY_ENV} to the admin key}}"  # the shell refuses to start without it
    flags = serving_flags("/models", key, ServeOptions.exit_timeout_s)
    assert json.loads(cmd) == ["/bin/sh", "-c", " ".join(["exec", "tritonserver", *flags])]

"""triton.Dockerfile, checked statically (Docker is not available where the tests run)."""
from __future__ import annotations

import re

from serve.command import METRICS_FLAGS
from serve.options import ADMIN_HEADER, RESTRICTED_APIS
from tests.conftest import ROOT

DOCKERFILE = (ROOT / "triton.Dockerfile").read_text()
INSTRUCTIONS = [line for line in re.sub(r"\\\n\s*", " ", DOCKERFILE).splitlines() if line and not line.startswith("#")]


def instruction(name: str) -> list[str]:
    return [line[len(name) + 1:] for line in INSTRUCTIONS if line.startswith(name + " ")]


def test_base_image_is_the_pinned_ngc_release_of_triton_2_51():
    assert instruction("FROM") == ["nvcr.io/nvidia/tritonserver:24.10-py3"]


def test_python_model_dependencies_are_pinned_and_nothing_else_is_installed():
    installs = [run.split("pip install", 1)[1] for run in instruction("RUN") if "pip install" in run]
    requirements = [arg for install in installs for arg in install.split() if not arg.startswith("-")]
    assert all(re.fullmatch(r"[a-z-]+==[\d.]+", requirement) for requirement in requirements), requirements
    assert sorted(requirement.split("==")[0] for requirement in requirements) == ["numpy", "pillow", "tokenizers"]


def test_repository_is_copied_and_the_server_runs_as_a_non_root_user():
    assert any(line.endswith("model_repository /models") for line in instruction("COPY"))
    users = instruction("USER")
    assert users and users[-1] not in ("root", "0")


def test_ports_and_readiness_healthcheck():
    assert instruction("EXPOSE") == ["8000 8001 8002"]
    (healthcheck,) = instruction("HEALTHCHECK")
    assert "/v2/health/ready" in healthcheck and "CMD" in healthcheck


def test_server_uses_the_same_model_control_and_restricted_api_flags_as_the_local_launcher():
    (cmd,) = instruction("CMD")
    assert "--model-control-mode=explicit" in cmd and "--load-model=*" in cmd
    restricted = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}=${{MODELPORT_ADMIN_KEY"
    assert f"--http-restricted-api={restricted}" in cmd and f"--grpc-restricted-protocol={restricted}" in cmd
    assert "--model-repository=/models" in cmd
    assert all(flag in cmd for flag in METRICS_FLAGS), "the dashboard's latency summaries need the same metrics flags"

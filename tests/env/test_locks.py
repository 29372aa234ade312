"""Every lock installs from wheels on its own Python, checked without that Python; the Makefile picks a Python that
has a lock, or says in one line why none fits."""

import re
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from env import locks
from env.locks import LockError, Target

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("target", [Target(p, extra) for p in locks.SUPPORTED for extra in ("", *locks.EXTRAS)],
                         ids=lambda target: target.lock_name)
def test_the_lock_of_each_supported_python_installs_from_wheels_on_it(target):
    locks.check(ROOT / target.lock_name, target)


def test_there_is_a_lock_for_each_supported_python_and_none_for_another():
    assert sorted(path.name for path in ROOT.glob("requirements-py*.lock")) == sorted(
        Target(python).lock_name for python in locks.SUPPORTED)
    assert sorted(path.name for path in ROOT.glob("requirements-*-py*.lock")) == sorted(
        Target(python, extra).lock_name for python in locks.SUPPORTED for extra in locks.EXTRAS)


def test_an_extras_lock_pins_only_what_it_adds_to_the_base_lock():
    for python in locks.SUPPORTED:
        base, _ = locks.read_pins(ROOT / Target(python).lock_name)
        for extra in locks.EXTRAS:
            added, problems = locks.read_pins(ROOT / Target(python, extra).lock_name)
            assert not problems and added and not added.keys() & base.keys(), Target(python, extra).lock_name


TORCH_METADATA = {
    "torch": {"requires_dist": ["filelock", 'nvidia-cudnn-cu13==9.20.0.48; platform_system == "Linux"',
                                'triton==3.7.1; platform_system == "Linux"', 'cuda-toolkit[cublas]==13.0.3']},
    "filelock": {},
}


def test_an_extras_lock_is_the_cpu_builds_closure_without_pytorchs_cuda_runtime():
    wanted = [(Requirement("torch==2.13.0"), "requirements-torch.txt")]
    pins = {"torch": "torch==2.13.0", "filelock": "filelock==4.2.12"}
    assert locks.closure_problems(wanted, pins, TORCH_METADATA, Target("3.12", "torch")) == []
    assert [p.split(" is not")[0] for p in locks.closure_problems(wanted, pins, TORCH_METADATA, Target("3.12"))] == [
        "nvidia-cudnn-cu13", "triton", "cuda-toolkit"]  # in the base environment they would have to be pinned


def test_the_makefile_tries_the_supported_pythons_in_the_same_order():
    pythons = re.search(r"^PYTHONS := (.*)$", (ROOT / "Makefile").read_text(), flags=re.M)
    assert pythons is not None, "the Makefile has no `PYTHONS := ...` line"
    assert pythons[1].split() == list(locks.SUPPORTED)


def test_a_pin_without_a_wheel_for_the_python_fails_the_check_and_names_the_package(tmp_path):
    lock = tmp_path / "requirements-py313.lock"
    lock.write_text("numpy==1.26.4\n")
    wanted = [(Requirement("numpy==1.26.4"), "requirements.txt")]
    locks.check(lock, Target("3.12"), wanted)  # the same line passes where the wheel exists
    with pytest.raises(LockError) as failure:
        locks.check(lock, Target("3.13"), wanted)
    assert len(failure.value.problems) == 1
    assert failure.value.problems[0].startswith("numpy==1.26.4: no wheel for CPython 3.13")
    assert "numpy==1.26.4" in str(failure.value) and "make lock" in str(failure.value)


def test_every_pin_without_a_wheel_is_listed_in_one_error(tmp_path):
    lock = tmp_path / "requirements-py313.lock"
    lock.write_text("numpy==1.26.4\nscipy==1.11.4\nsix==1.17.0\n")
    wanted = [(Requirement(pin), "requirements.txt") for pin in ("numpy==1.26.4", "scipy==1.11.4", "six==1.17.0")]
    with pytest.raises(LockError) as failure:
        locks.check(lock, Target("3.13"), wanted)
    assert [problem.split(":")[0] for problem in failure.value.problems] == ["numpy==1.26.4", "scipy==1.11.4"]


def test_a_lock_line_that_is_not_an_exact_pin_is_a_problem(tmp_path):
    lock = tmp_path / "requirements-py312.lock"
    lock.write_text("# comment\nsix==1.17.0\nnumpy>=1.26\nidna==3.4; python_version < '3.11'\n")
    pins, problems = locks.read_pins(lock)
    assert pins == {"six": "six==1.17.0"}
    assert [problem.split(":")[0] for problem in problems] == ["line 3", "line 4"]


PYTEST_METADATA = {
    "pytest": {"requires_dist": ['tomli>=1; python_version < "3.11"', "iniconfig", 'hypothesis; extra == "dev"']},
    "iniconfig": {},
    "tomli": {},
}


def test_a_dependency_that_a_marker_adds_on_the_target_python_must_be_pinned():
    wanted = [(Requirement("pytest==8.3.3"), "requirements.txt")]
    pins = {"pytest": "pytest==8.3.3", "iniconfig": "iniconfig==2.0.0"}
    assert locks.closure_problems(wanted, pins, PYTEST_METADATA, Target("3.11")) == []
    assert locks.closure_problems(wanted, pins, PYTEST_METADATA, Target("3.10")) == [
        'tomli is not pinned, but pytest==8.3.3 needs it (tomli>=1; python_version < "3.11")']


def test_a_pin_that_nothing_needs_on_the_target_python_is_a_problem():
    wanted = [(Requirement("pytest==8.3.3"), "requirements.txt")]
    pins = {"pytest": "pytest==8.3.3", "iniconfig": "iniconfig==2.0.0", "tomli": "tomli==2.0.1"}
    assert locks.closure_problems(wanted, pins, PYTEST_METADATA, Target("3.10")) == []
    assert locks.closure_problems(wanted, pins, PYTEST_METADATA, Target("3.12")) == [
        "tomli==2.0.1 is pinned, but nothing needs it on CPython 3.12"]


def test_an_extra_brings_its_dependencies_and_a_pin_must_satisfy_its_requirement():
    wanted = [(Requirement("pytest[dev]==8.3.3"), "requirements.txt")]
    pins = {"pytest": "pytest==8.3.3", "iniconfig": "iniconfig==2.0.0"}
    assert locks.closure_problems(wanted, pins, PYTEST_METADATA, Target("3.12")) == [
        "hypothesis is not pinned, but pytest==8.3.3 needs it (hypothesis; extra == \"dev\")"]
    wanted = [(Requirement("pytest==8.4.0"), "requirements.txt")]
    assert locks.closure_problems(wanted, pins, PYTEST_METADATA, Target("3.12")) == [
        "pytest==8.3.3 does not satisfy requirements.txt, which needs pytest==8.4.0"]


def fake_python(folder: Path, name: str, version: str | None) -> None:
    """An interpreter that reports `version`, or (None) one that fails as a pyenv shim of a missing version does."""
    script = folder / name
    script.write_text(f"#!/bin/sh\necho {version}\n" if version else f"#!/bin/sh\necho '{name}: not found' >&2\nexit 127\n")
    script.chmod(0o755)


def make(tmp_path: Path, *args: str, dry_run: bool = False) -> subprocess.CompletedProcess:
    # Only the fake interpreters and the system tools on PATH; a venv that does not exist yet.
    return subprocess.run(["make", "--no-print-directory", *(["-n"] if dry_run else []), "venv",
                           f"VENV={tmp_path / 'venv'}", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": str(tmp_path)})


def test_make_uses_the_first_supported_python_that_runs(tmp_path):
    fake_python(tmp_path, "python3.11", None)
    fake_python(tmp_path, "python3.12", "3.12")
    done = make(tmp_path, dry_run=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "python3.12 -m venv" in done.stdout
    assert f"pip install --quiet -r {Target('3.12').lock_name}" in done.stdout


def test_make_says_in_one_line_which_python_it_found_and_why_it_does_not_fit(tmp_path):
    fake_python(tmp_path, "python3.11", None)
    fake_python(tmp_path, "python3.12", None)
    fake_python(tmp_path, "python3", "3.13")
    done = make(tmp_path)
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        "modelport: python3 is Python 3.13: numpy 1.x, which the python backend stub of the bundled Triton 2.51 "
        "needs, has no wheel for it; it runs on Python 3.11-3.12: install one, or set PYTHON=/path/to/python3.11"]
    assert not (tmp_path / "venv").exists()


def test_make_venv_with_an_extra_installs_its_lock_on_top_of_the_base_lock_as_constraints(tmp_path):
    fake_python(tmp_path, "python3.11", None)
    fake_python(tmp_path, "python3.12", "3.12")
    done = make(tmp_path, "EXTRAS=torch", dry_run=True)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    base = lines.index(next(line for line in lines if f"-r {Target('3.12').lock_name}" in line))
    extra = lines.index(next(line for line in lines if "requirements-torch" in line))
    assert base < extra and lines[extra].endswith(
        f"pip install --quiet -r {Target('3.12', 'torch').lock_name} -c {Target('3.12').lock_name}")


def test_make_says_in_one_line_which_extras_there_are_when_asked_for_another(tmp_path):
    fake_python(tmp_path, "python3.11", None)
    fake_python(tmp_path, "python3.12", "3.12")
    done = make(tmp_path, "EXTRAS=tensorflow-gpu")
    assert done.returncode == 2
    assert done.stdout.splitlines() == [
        "modelport: no extra tensorflow-gpu for Python 3.12 (no requirements-tensorflow-gpu-py312.lock); extras: torch"]
    assert not (tmp_path / "venv").exists()


def test_make_turns_down_a_python_given_by_hand_that_has_no_lock(tmp_path):
    fake_python(tmp_path, "python3.9", "3.9")
    done = make(tmp_path, f"PYTHON={tmp_path / 'python3.9'}")
    assert done.returncode == 2
    assert done.stdout.startswith(f"modelport: {tmp_path / 'python3.9'} is Python 3.9: there is no lock for it;")
    done = make(tmp_path, "PYTHON=no-such-python")
    assert done.returncode == 2
    assert done.stdout.startswith("modelport: no-such-python does not run;")

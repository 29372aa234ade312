"""`make test` installs the Debian packages the suite needs before any test runs (env/system.py)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from env import system
from tests.conftest import ROOT

ABSENT = system.Package("modelport-absent-tool", ("modelport-absent-tool",), "a test")


def test_the_packages_the_suite_needs_are_found_where_installed_and_missing_otherwise():
    here = system.Package("sh", ("sh", "/bin/sh"), "a test")
    assert system.missing((here, ABSENT)) == [ABSENT]


def test_without_root_or_sudo_it_prints_the_one_command_and_exits_2(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(system.shutil, "which", lambda name: None if name in ("sudo", ABSENT.name) else f"/usr/bin/{name}")

    assert system.ensure((ABSENT,)) == system.EXIT_MISSING
    err = capsys.readouterr().err
    assert "sudo cannot run" in err and "    sudo apt-get install -y modelport-absent-tool" in err


def test_the_install_script_runs_apt_get_with_services_kept_stopped_and_cleans_up(tmp_path):
    bin_dir, policy, calls = tmp_path / "bin", tmp_path / "policy-rc.d", tmp_path / "calls"
    bin_dir.mkdir()
    # a stand-in apt-get that records its arguments and whether the policy forbids starting services meanwhile
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\n"{policy}"; echo "policy=$? $*" >> "{calls}"\n')
    (bin_dir / "apt-get").chmod(0o755)
    lean = system.Package("lean-pkg", ("x",), "t", recommends=False)
    full = system.Package("full-pkg", ("y",), "t")
    script = system.install_script([lean, full], policy=str(policy))

    result = subprocess.run(["sh", "-c", script], env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
                            capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == ["policy=101 update -qq",
                                              "policy=101 install -y -qq --no-install-recommends lean-pkg",
                                              "policy=101 install -y -qq full-pkg"]
    assert not policy.exists()  # the script's own policy file is gone afterwards


def test_a_failing_apt_get_fails_the_script_and_keeps_an_existing_policy(tmp_path):
    bin_dir, policy = tmp_path / "bin", tmp_path / "policy-rc.d"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text("#!/bin/sh\nexit 100\n")
    (bin_dir / "apt-get").chmod(0o755)
    policy.write_text("#!/bin/sh\nexit 0\n")

    result = subprocess.run(["sh", "-c", system.install_script([ABSENT], policy=str(policy))],
                            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})

    assert result.returncode == 100
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"  # the machine's own policy is not ours to remove


def test_on_this_machine_the_suite_has_what_it_needs():
    # `make test` ran env.system before this suite: a missing package here means the Makefile lost that step
    result = subprocess.run([sys.executable, "-m", "env.system", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_the_readmes_test_command_and_nothing_else():
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert "make test" in commands
    assert not [c for c in commands if re.search(r"apt-get|EXTRAS|\bpip\b|make venv", c)]

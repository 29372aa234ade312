import os
import subprocess
import sys

import pytest

from core.cli import TRACEBACK_ENV, program
from core.errors import ModelError, NotRunningError, SpecError, UserError
from tests.conftest import ROOT


def failing(error: BaseException, **kwargs):
    @program("step", **kwargs)
    def main(argv=None):
        raise error

    return main


@pytest.mark.parametrize("error, code", [
    (SpecError("digits", "max_batch_size", -1, "an integer >= 1"), 2),
    (ModelError("the model converts but cannot be served"), 1),
    (NotRunningError("no server that `start` started"), 3),
])
def test_a_modelport_error_is_one_line_on_stderr_and_its_class_exit_code(capsys, error, code):
    assert failing(error)([]) == code
    assert capsys.readouterr().err == f"step: error: {error}\n"


def test_a_usage_error_the_step_names_is_a_user_error_and_others_are_bugs(capsys):
    assert failing(ValueError("--budget must be > 0"), usage_errors=(ValueError,))([]) == UserError.exit_code
    assert capsys.readouterr().err == "step: error: --budget must be > 0\n"
    assert failing(ValueError("bad"))([]) == 70
    err = capsys.readouterr().err
    assert err.startswith("step: error: ValueError: bad (a bug in modelport") and TRACEBACK_ENV in err


def test_ctrl_c_exits_130_and_a_successful_main_returns_its_own_code():
    assert failing(KeyboardInterrupt())([]) == 130

    @program("step")
    def main(argv=None):
        return 4 if argv == ["x"] else 0

    assert main(["x"]) == 4 and main([]) == 0


def test_a_bug_ends_the_process_with_one_line_and_the_traceback_only_when_asked():
    script = ("import sys; from core.cli import program\n"
              "@program('step')\ndef main(argv=None):\n    return {}['missing']\n"
              "sys.exit(main())")
    quiet, loud = (subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                                  env={**os.environ, TRACEBACK_ENV: shown})
                   for shown in ("", "1"))
    assert quiet.returncode == loud.returncode == 70, quiet.stderr
    assert quiet.stderr.startswith("step: error: KeyError: 'missing' (a bug in modelport")
    assert "Traceback" not in quiet.stderr and quiet.stderr.count("\n") == 1, quiet.stderr
    assert "Traceback" in loud.stderr

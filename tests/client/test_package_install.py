"""`pip install ./client` into a fresh virtual environment (no system site-packages) gives a working package."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"


def run(*argv, timeout=540):
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, argv))} exited {done.returncode}:\n{done.stdout[-3000:]}\n" \
                                 f"{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.integration  # downloads tritonclient, grpcio, numpy... from PyPI
def test_pip_install_of_the_client_directory_imports_and_runs_its_cli(tmp_path):
    venv = tmp_path / "venv"
    started = time.monotonic()
    run(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", CLIENT_DIR)
    seconds = time.monotonic() - started
    print(f"fresh venv + pip install ./client: {seconds:.1f}s")

    # The asyncio clients' dependencies (aiohttp, grpc.aio) come with the plain install too.
    imported = run(python, "-c", "import sys, modelport, tritonclient.http.aio, tritonclient.grpc.aio; "
                                 "print(modelport.Client.__name__, modelport.__file__, 'PIL' in sys.modules)")
    assert imported.startswith("Client ") and str(venv) in imported and imported.rstrip().endswith("False")
    assert "predict" in run(venv / "bin" / "modelport", "--help")
    assert "health" in run(python, "-m", "modelport", "--help")
    # Pillow is an optional extra: the plain install must not pull it in.
    missing = subprocess.run([str(python), "-c", "import PIL"], capture_output=True)
    assert missing.returncode != 0

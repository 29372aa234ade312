"""Find the Triton runtime shipped in the nvidia-pytriton wheel and build the backend directory it serves from.

The wheel holds the `tritonserver` binary (Triton 2.51), its bundled shared libraries, the python backend and one
python backend stub per Python version. Our backend directory puts the stub next to libtriton_python.so and adds our
Python-based `onnxruntime` backend, so `backend: "onnxruntime"` configs load on a CPU host.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from core.errors import RuntimeMissingError

REINSTALL = "reinstall the pinned environment with `make venv` (nvidia-pytriton in requirements-py3XX.lock)"
TRITONMODELS = Path(__file__).resolve().parents[1] / "tritonmodels"
# Our Python-based backends, by backend name: deployed as <build>/backends/<name>/model.py beside the session module.
OUR_BACKENDS = {"onnxruntime": TRITONMODELS / "onnxruntime_backend.py"}
# Deployed beside each of our backends' model.py: the stub puts the backend folder on sys.path, nothing else of ours.
SESSION_MODULE = TRITONMODELS / "onnxruntime_session.py"


@dataclasses.dataclass(frozen=True)
class Runtime:
    tritonserver: Path
    lib_dir: Path
    backend_dir: Path
    python_bin_dir: Path
    # The wheel's response cache implementations (caches/local); tritonserver looks in /opt/tritonserver/caches.
    cache_dir: Path | None = None

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The stub embeds Python and finds packages through the first `python3` on PATH (it ignores PYTHONPATH)."""
        env = dict(os.environ if base is None else base)
        env["PATH"] = os.pathsep.join([str(self.python_bin_dir), env.get("PATH", "/usr/bin:/bin")])
        # The stub links libpython3.X.so: a pyenv or uv interpreter keeps it in its own LIBDIR, not on the loader path.
        libpython_dir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in [str(self.lib_dir), libpython_dir, env.get("LD_LIBRARY_PATH", "")] if p)
        return env


def package_root() -> Path:
    try:
        import pytriton
    except ImportError:
        raise RuntimeMissingError(f"the nvidia-pytriton package is not installed in {sys.prefix}: {REINSTALL}") from None
    return Path(pytriton.__file__).parent


def glibc_version() -> tuple[int, int] | None:
    found = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    match = re.fullmatch(r"glibc (\d+)\.(\d+)", found or "")
    return (int(match[1]), int(match[2])) if match else None


def required_glibc(site_packages: Path) -> tuple[int, int] | None:
    """The wheel's manylinux tag names the oldest glibc its binaries run on."""
    for wheel in site_packages.glob("nvidia_pytriton-*.dist-info/WHEEL"):
        match = re.search(r"manylinux_(\d+)_(\d+)", wheel.read_text())
        if match:
            return int(match[1]), int(match[2])
    return None


def check_glibc(actual: tuple[int, int] | None, required: tuple[int, int] | None) -> None:
    if actual is None or required is None or actual >= required:
        return
    raise RuntimeMissingError(
        f"glibc {actual[0]}.{actual[1]} is too old for the bundled tritonserver (needs >= {required[0]}.{required[1]}): "
        "serve on Ubuntu 22.04+ / Debian 12+, or use the container (`make docker-build docker-run`)"
    )


def locate(build_dir: Path) -> Runtime:
    root = package_root()
    site_packages = root.parent
    check_glibc(glibc_version(), required_glibc(site_packages))
    tritonserver = root / "tritonserver" / "bin" / "tritonserver"
    lib_dir = site_packages / "nvidia_pytriton.libs"
    python_backend = root / "tritonserver" / "backends" / "python"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "tritonserver" / "python_backend_stubs" / version / "triton_python_backend_stub"
    for path, what in [
        (tritonserver, "the tritonserver binary"),
        (lib_dir, "Triton's bundled shared libraries"),
        (python_backend / "libtriton_python.so", "the python backend"),
        (stub, f"the python backend stub for Python {version}"),
    ]:
        if not path.exists():
            raise RuntimeMissingError(f"{what} is missing (expected {path}): {REINSTALL}")
    missing = missing_libraries(tritonserver, lib_dir)
    if missing:
        raise RuntimeMissingError(
            f"tritonserver needs shared libraries that are not installed: {', '.join(missing)}; "
            f"install them with your package manager (e.g. `apt-get install {apt_hint(missing)}`) or {REINSTALL}"
        )
    backend_dir = build_backend_dir(build_dir, python_backend, stub)
    return Runtime(tritonserver, lib_dir, backend_dir, Path(sys.executable).parent, root / "tritonserver" / "caches")


def missing_libraries(binary: Path, lib_dir: Path) -> list[str]:
    ldd = shutil.which("ldd")
    if ldd is None:
        return []
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib_dir))
    result = subprocess.run([ldd, str(binary)], capture_output=True, text=True, env=env, check=False)
    return parse_missing_libraries(result.stdout)


def parse_missing_libraries(ldd_output: str) -> list[str]:
    return [line.split("=>")[0].strip() for line in ldd_output.splitlines() if "not found" in line]


def apt_hint(libraries: list[str]) -> str:
    return " ".join(sorted({re.sub(r"\.so.*$", "", lib).removeprefix("lib") for lib in libraries}))


def build_backend_dir(build_dir: Path, python_backend: Path, stub: Path) -> Path:
    """Copy (only when changed) the python backend + stub and our Python-based backends into build_dir."""
    python_dir = build_dir / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    copies = [
        (python_backend / "libtriton_python.so", python_dir / "libtriton_python.so"),
        (python_backend / "triton_python_backend_utils.py", python_dir / "triton_python_backend_utils.py"),
        (stub, python_dir / "triton_python_backend_stub"),
    ]
    for name, module in sorted(OUR_BACKENDS.items()):
        (build_dir / name).mkdir(exist_ok=True)
        copies.append((module, build_dir / name / "model.py"))
        copies.append((SESSION_MODULE, build_dir / name / SESSION_MODULE.name))
    for source, target in copies:
        if not target.exists() or source.read_bytes() != target.read_bytes():
            tmp = target.with_suffix(target.suffix + ".tmp")
            shutil.copy2(source, tmp)
            tmp.replace(target)
    return build_dir.resolve()

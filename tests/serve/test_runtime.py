import subprocess

import pytest

from core.errors import RuntimeMissingError
from core.triton_install import apt_hint, check_glibc, locate, parse_missing_libraries

LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibnuma.so.1 => not found
\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f72)
\tlibb64.so.0d => not found
"""


def test_missing_shared_libraries_are_read_from_ldd():
    assert parse_missing_libraries(LDD_OUTPUT) == ["libnuma.so.1", "libb64.so.0d"]
    assert apt_hint(["libnuma.so.1", "libb64.so.0d"]) == "b64 numa"


def test_old_glibc_fails_with_the_versions_and_the_way_out():
    with pytest.raises(RuntimeMissingError) as error:
        check_glibc((2, 31), (2, 35))
    assert "glibc 2.31 is too old" in str(error.value) and ">= 2.35" in str(error.value)
    assert "container" in str(error.value)


def test_recent_or_unknown_glibc_passes():
    check_glibc((2, 36), (2, 35))
    check_glibc(None, (2, 35))


def test_locate_builds_a_backend_dir_with_the_stub_and_our_onnxruntime_backend(tmp_path):
    runtime = locate(tmp_path / "backends")
    assert runtime.tritonserver.exists()
    python = runtime.backend_dir / "python"
    assert (python / "libtriton_python.so").exists() and (python / "triton_python_backend_stub").exists()
    assert (runtime.backend_dir / "onnxruntime" / "model.py").exists()
    assert (runtime.cache_dir / "local" / "libtritoncache_local.so").exists()  # the wheel ships the local cache
    env = runtime.environment({"PATH": "/usr/bin"})
    assert env["PATH"].split(":")[0] == str(runtime.python_bin_dir)
    assert env["LD_LIBRARY_PATH"].split(":")[0] == str(runtime.lib_dir)


def test_the_stub_finds_the_interpreters_libpython_wherever_it_was_installed(tmp_path):
    """pyenv and uv interpreters keep libpython3.X.so in their own LIBDIR, which no loader path names."""
    import sysconfig

    runtime = locate(tmp_path / "backends")
    libdir = sysconfig.get_config_var("LIBDIR")
    env = runtime.environment({"PATH": "/usr/bin"})
    assert libdir in env["LD_LIBRARY_PATH"].split(":")
    stub = runtime.backend_dir / "python" / "triton_python_backend_stub"
    linked = subprocess.run(["ldd", str(stub)], env=env, capture_output=True, text=True).stdout
    assert "libpython" in linked and "not found" not in linked, linked

"""The Debian packages the test suite needs beside the Python environment, installed when missing (`make test` runs
this before any test): Prometheus and promtool for the monitoring tests, Chromium and its driver for the page's
browser test.

As root it runs apt-get itself; otherwise through sudo; where neither can work it prints the one command to run and
exits 2, so no test starts without them. Already installed: it says nothing and exits 0 at once.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from core import cli


@dataclass(frozen=True)
class Package:
    name: str
    provides: tuple[str, ...]  # commands on PATH, or absolute paths, that tell it is installed
    why: str
    recommends: bool = True  # apt-get's --no-install-recommends when False


PACKAGES = (
    Package("prometheus", ("prometheus", "promtool"), "the monitoring tests (tests/operate/)", recommends=False),
    Package("chromium", ("/usr/bin/chromium",), "the gateway page's browser test (tests/gateway/test_page.py)"),
    Package("chromium-driver", ("/usr/bin/chromedriver",), "the same browser test, through Selenium"),
)
EXIT_MISSING = 2
# Debian's prometheus postinst starts a Prometheus service on :9090, which `make monitor` and a user's own would
# collide with: a policy-rc.d that says no (exit 101, invoke-rc.d's "action forbidden") keeps it stopped.
POLICY_RC_D = "/usr/sbin/policy-rc.d"
LOG = Path(__file__).resolve().parents[1] / ".cache" / "apt-install.log"


def present(path_or_command: str) -> bool:
    if os.path.isabs(path_or_command):
        return os.access(path_or_command, os.X_OK)
    return shutil.which(path_or_command) is not None


def missing(packages: tuple[Package, ...] = PACKAGES) -> list[Package]:
    return [p for p in packages if not all(present(x) for x in p.provides)]


def install_script(packages: list[Package], policy: str = POLICY_RC_D) -> str:
    """One POSIX shell script that installs `packages` with apt-get without starting their services."""
    quiet = "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq"
    lean = " ".join(p.name for p in packages if not p.recommends)
    full = " ".join(p.name for p in packages if p.recommends)
    steps = [
        "set -e",
        f"added=; if [ ! -e {policy} ]; then printf '#!/bin/sh\\nexit 101\\n' > {policy}; "
        f"chmod +x {policy}; added=1; fi",
        f"trap 'if [ -n \"$added\" ]; then rm -f {policy}; fi' EXIT",
        "apt-get update -qq",
        *([f"{quiet} --no-install-recommends {lean}"] if lean else []),
        *([f"{quiet} {full}"] if full else []),
    ]
    return "\n".join(steps)


def manual_command(packages: list[Package]) -> str:
    return "sudo apt-get install -y " + " ".join(p.name for p in packages)


def elevation() -> list[str] | None:
    """The prefix that runs a command as root here: none needed, sudo, or None when neither can work."""
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo is None:
        return None
    if sys.stdin.isatty():
        return [sudo]  # sudo may ask for the password at the terminal
    allowed = subprocess.run([sudo, "-n", "true"], capture_output=True)
    return [sudo, "-n"] if allowed.returncode == 0 else None


def ensure(packages: tuple[Package, ...] = PACKAGES) -> int:
    needed = missing(packages)
    if not needed:
        return 0
    names = ", ".join(p.name for p in needed)
    for p in needed:
        print(f"modelport: {p.name} is missing: {p.why} need it", flush=True)
    prefix = elevation()
    if prefix is None or shutil.which("apt-get") is None:
        why = "apt-get is not here" if shutil.which("apt-get") is None else "this user is not root and sudo cannot run"
        print(f"modelport: cannot install {names} ({why}); install them, then run `make test` again:\n"
              f"    {manual_command(needed)}", file=sys.stderr)
        return EXIT_MISSING
    LOG.parent.mkdir(parents=True, exist_ok=True)
    print(f"modelport: installing {names} with apt-get{' through sudo' if prefix else ''} (measured on Debian 12: "
          f"27 s and 0.9 GB with all three; apt's output goes to {LOG})", flush=True)
    with LOG.open("w") as log:
        result = subprocess.run([*prefix, "sh", "-c", install_script(needed)], stdout=log, stderr=subprocess.STDOUT)
    still = missing(packages)
    if result.returncode != 0 or still:
        tail = "".join(LOG.read_text(errors="replace").splitlines(keepends=True)[-15:])
        print(f"{tail}modelport: apt-get could not install {', '.join(p.name for p in still) or names} "
              f"(exit {result.returncode}; the log: {LOG}); install them by hand, then run `make test` again:\n"
              f"    {manual_command(needed)}", file=sys.stderr)
        return EXIT_MISSING
    print(f"modelport: installed {names}", flush=True)
    return 0


@cli.program("env.system")
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser(
        "env.system",
        "Install the Debian packages the test suite needs (prometheus, chromium, chromium-driver) "
        "when they are missing: as root with apt-get, else through sudo, else print the command.")
    parser.add_argument("--check", action="store_true",
                        help="only list what is missing; exit 2 if anything is, install nothing")
    args = parser.parse_args(argv)
    if args.check:
        needed = missing()
        for p in needed:
            print(f"missing: {p.name} ({p.why})")
        return EXIT_MISSING if needed else 0
    return ensure()


if __name__ == "__main__":
    sys.exit(main())

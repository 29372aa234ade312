"""One lock per supported Python, resolved and checked without that Python installed.

`lock` resolves requirements.txt (and the client's dependencies) for each version in SUPPORTED with uv and writes
requirements-py3XX.lock. uv, not
pip: pip's `--python-version` picks wheels for the target but still evaluates environment markers for the running
interpreter (https://github.com/pypa/pip/issues/11010), so a 3.12 resolution run on 3.11 would be wrong.

`check` proves that a lock installs on its Python: pip finds a wheel of every pin for that CPython on x86_64 Linux
(`--python-version`, `--platform`, `--only-binary`, `--no-deps`: no markers are involved), and the pins are exactly
what requirements.txt and the client need there, every dependency's markers evaluated for that Python.

An optional extra (EXTRAS, `make venv EXTRAS=torch`) has requirements-NAME.txt and, per supported Python, a lock
requirements-NAME-py3XX.lock of only the packages it adds, resolved with the base lock's pins as constraints: installing
it never moves a pin of the base environment. It is checked as above, over the base and the extra together.

    python -m env.locks lock [--upgrade]     # what `make lock` runs
    python -m env.locks check [3.12 ...]     # what tests/env/test_locks.py runs
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from core import cli
from core.errors import ServerError, UserError

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "requirements.txt"
CLIENT = ROOT / "client" / "pyproject.toml"  # `make venv` installs the client with --no-deps: the lock must cover it
# The Makefile's PYTHONS, in its order of preference: 3.11 is the version `make test` runs on here.
SUPPORTED = ("3.11", "3.12")
# No lock, for the reasons docs/dependencies.md gives; `make lock` tries them again and says if that changed.
LEFT_OUT = ("3.10", "3.13")
GLIBC = (2, 35)  # the bundled Triton 2.51 needs it (serve checks it), so no supported system has an older one
UV = "uv==0.13.8"
MAX_MISSING = 10  # stop asking pip after this many pins without a wheel: by then the lock is plainly stale
# Optional extras: requirements-NAME.txt, locked per supported Python on top of the base lock.
EXTRAS = ("torch",)
# PyPI's Linux torch wheel declares its CUDA runtime (cuda-toolkit, nvidia-*, triton: several GB) as dependencies; the
# CPU build of the same version (2.13.0+cpu, which pip takes from find-links or an extra index when there is one)
# declares none. An extra's lock is the CPU build's closure: these are left out of its resolution and its check.
CUDA_RUNTIME = re.compile(r"(cuda|nvidia)-.*|triton")
# This machine's pip configuration adds local wheel folders and indexes; a fresh box has PyPI only.
LOCAL_PIP_SETTINGS = ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "PIP_CONSTRAINT")


@dataclass(frozen=True)
class Target:
    """CPython `python` ("3.12") on x86_64 Linux with glibc >= GLIBC; with `extra`, that extra's lock for it."""

    python: str
    extra: str = ""

    def __post_init__(self):
        if not re.fullmatch(r"3\.\d{1,2}", self.python):
            raise ValueError(f"python must be a CPython minor version such as '3.12', got {self.python!r}")
        if self.extra and self.extra not in EXTRAS:
            raise ValueError(f"extra must be one of {', '.join(EXTRAS)}, got {self.extra!r}")

    @property
    def lock_name(self) -> str:
        return f"requirements-{self.extra + '-' if self.extra else ''}py{self.python.replace('.', '')}.lock"

    @property
    def base(self) -> "Target":
        return Target(self.python)

    @property
    def requirements(self) -> Path | None:
        return ROOT / f"requirements-{self.extra}.txt" if self.extra else None

    @property
    def platform(self) -> str:
        return f"x86_64 manylinux_{GLIBC[0]}_{GLIBC[1]}"

    def pip_args(self) -> list[str]:
        # pip takes a manylinux_2_35 platform literally, so every older glibc tag is named as well.
        tags = [f"manylinux_{GLIBC[0]}_{minor}_x86_64" for minor in range(GLIBC[1], 4, -1)]
        tags += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
        return ["--implementation", "cp", "--python-version", self.python, *(f"--platform={tag}" for tag in tags)]

    def uv_args(self) -> list[str]:
        return ["--python-version", self.python, "--python-platform", f"x86_64-manylinux_{GLIBC[0]}_{GLIBC[1]}"]

    def markers(self) -> dict[str, str]:
        """The PEP 508 environment of this target; the patch level is .0, as uv assumes for `--python-version`."""
        full = f"{self.python}.0"
        return {
            "implementation_name": "cpython", "implementation_version": full, "os_name": "posix",
            "platform_machine": "x86_64", "platform_python_implementation": "CPython", "platform_release": "",
            "platform_system": "Linux", "platform_version": "", "python_full_version": full,
            "python_version": self.python, "sys_platform": "linux", "extra": "",
        }


class LockError(UserError):
    """A lock that would not install on its Python, with every problem found."""

    def __init__(self, lock: Path, target: Target, problems: list[str]):
        self.lock, self.target, self.problems = lock, target, problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"{lock.name} does not install on CPython {target.python} ({target.platform}):\n{lines}\n"
                         f"fix: `make lock` re-resolves; for a pin with no wheel on this Python, pin in requirements.txt "
                         f"the nearest release that has one, behind a python_version marker")


def read_pins(lock: Path) -> tuple[dict[str, str], list[str]]:
    """The lock's pins as {canonical name: "name==version"}, and a problem for each line that is not such a pin."""
    pins, problems = {}, []
    for number, line in enumerate(lock.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", line)
        if match is None:
            problems.append(f"line {number}: {line!r} is not a name==version pin (a lock has no ranges or markers)")
        else:
            pins[canonicalize_name(match[1])] = line
    return pins, problems


def read_requirements(extra: str = "") -> list[tuple[Requirement, str]]:
    """What the environment (with `extra`, the base environment plus that extra) must satisfy, each with where it
    comes from."""
    wanted = []
    for path in (REQUIREMENTS, *([Target("3.11", extra).requirements] if extra else [])):
        for line in path.read_text().splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                wanted.append((Requirement(line), path.name))
    client = tomllib.loads(CLIENT.read_text())["project"]["dependencies"]
    return wanted + [(Requirement(spec), "client/pyproject.toml") for spec in client]


def _pypi_only_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in LOCAL_PIP_SETTINGS}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def _missing_pin(stderr: str) -> tuple[str, str] | None:
    """(canonical name, why) of the pin pip found no wheel for, from its error output."""
    if match := re.search(r"Package '([^']+)' requires a different Python: (.*)", stderr):
        return canonicalize_name(match[1]), f"it requires a different Python: {match[2].strip()}"
    if match := re.search(r"No matching distribution found for ([A-Za-z0-9._-]+)", stderr):
        versions = re.search(r"\(from versions: ([^)]*)\)", stderr)
        found = versions[1].split(", ") if versions else []
        why = ("no release has one" if found in ([], ["none"])
               else f"releases that have one: {', '.join(found[-3:])}{' (newest shown)' if len(found) > 3 else ''}")
        return canonicalize_name(match[1]), why
    return None


def find_wheels(pins: dict[str, str], target: Target) -> tuple[dict[str, dict], list[str]]:
    """pip's metadata of the wheel each pin installs on `target`, and a problem for each pin that has no wheel."""
    remaining, problems = dict(pins), []
    while remaining and len(problems) < MAX_MISSING:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp, "report.json")
            done = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
                 "--only-binary=:all:", "--quiet", "--retries", "2", "--report", str(report), *target.pip_args(),
                 *remaining.values()],
                capture_output=True, text=True, env=_pypi_only_env(), timeout=600)
            if done.returncode == 0:
                installed = json.loads(report.read_text())["install"]
                return {canonicalize_name(item["metadata"]["name"]): item["metadata"] for item in installed}, problems
        if re.search(r"Retrying|NewConnectionError|Failed to establish|name resolution|Name or service", done.stderr):
            raise ServerError(f"pip could not reach the package index (PyPI):\n{done.stderr[-3000:]}")
        missing = _missing_pin(done.stderr)
        if missing is None or missing[0] not in remaining:
            raise ServerError(f"pip failed for a reason other than a missing wheel:\n{done.stderr[-3000:]}")
        problems.append(f"{remaining.pop(missing[0])}: no wheel for CPython {target.python} on {target.platform}; "
                        f"{missing[1]}")
    if remaining:
        problems.append(f"stopped after {MAX_MISSING} pins without a wheel; {len(remaining)} pins not checked")
    return {}, problems


def closure_problems(wanted: list[tuple[Requirement, str]], pins: dict[str, str], metadata: dict[str, dict],
                     target: Target) -> list[str]:
    """What keeps `pins` from being exactly the set `wanted` needs on `target`: an unpinned or unsatisfied
    requirement, or (when every pin's metadata is known) a pin that nothing needs there."""
    environment = target.markers()
    versions = {name: pin.split("==", 1)[1] for name, pin in pins.items()}
    queue = [(req, by) for req, by in wanted if req.marker is None or req.marker.evaluate(environment)]
    problems, needed, expanded = [], set(), set()
    while queue:
        req, by = queue.pop(0)
        name = canonicalize_name(req.name)
        if target.extra and name not in versions and CUDA_RUNTIME.fullmatch(name):
            continue  # the CPU build's closure (CUDA_RUNTIME)
        if name not in versions:
            problems.append(f"{req.name} is not pinned, but {by} needs it ({req})")
            continue
        needed.add(name)
        if not req.specifier.contains(versions[name], prereleases=True):
            problems.append(f"{pins[name]} does not satisfy {by}, which needs {req}")
        for extra in {""} | {canonicalize_name(extra) for extra in req.extras}:
            if (name, extra) in expanded or name not in metadata:
                continue
            expanded.add((name, extra))
            for spec in metadata[name].get("requires_dist", []):
                dep = Requirement(spec)
                if dep.marker is None or dep.marker.evaluate({**environment, "extra": extra}):
                    queue.append((dep, pins[name]))
    if metadata.keys() >= pins.keys():
        problems += [f"{pins[name]} is pinned, but nothing needs it on CPython {target.python}"
                     for name in sorted(pins.keys() - needed)]
    return problems


def check(lock: Path, target: Target, wanted: list[tuple[Requirement, str]] | None = None) -> None:
    """Raise LockError, listing every problem, unless `lock` installs from wheels on `target` and is exactly what
    `wanted` (default: requirements.txt and the client) needs there."""
    if not lock.exists():
        raise LockError(lock, target, [f"{lock} does not exist"])
    pins, problems = read_pins(lock)
    if target.extra:  # judged together with the base lock it is installed on top of
        base, _ = read_pins(lock.parent / target.base.lock_name)
        problems += [f"{pins[name]} is in {target.base.lock_name} too: an extra's lock pins only what it adds"
                     for name in sorted(pins.keys() & base.keys())]
        pins = {**base, **pins}
    metadata, missing = find_wheels(pins, target)
    problems += missing
    problems += closure_problems(read_requirements(target.extra) if wanted is None else wanted, pins, metadata,
                                 target)
    if problems:
        raise LockError(lock, target, problems)


def header(target: Target) -> str:
    if target.extra:
        return (f"# Generated by `make lock` (env/locks.py) from {target.requirements.name} for CPython "
                f"{target.python} on {target.platform}\n# (glibc >= {GLIBC[0]}.{GLIBC[1]}): what `make venv EXTRAS={target.extra}` "
                f"adds to {target.base.lock_name}, whose pins it keeps;\n# the CPU build's closure (no CUDA runtime: "
                f"env/locks.py CUDA_RUNTIME). Do not edit by hand.\n")
    return (f"# Generated by `make lock` (env/locks.py) from requirements.txt for CPython {target.python} on "
            f"{target.platform}\n# (glibc >= {GLIBC[0]}.{GLIBC[1]}): the exact set `make venv` installs there. "
            f"Do not edit by hand.\n")


def resolve(target: Target, uv: Path, seed: Path | None, upgrade: bool) -> tuple[str | None, str]:
    """(lock text, "") for `target`, or (None, the resolver's reason). The seed's pins are kept where they still
    fit, as uv does for an existing output file, so re-locking moves nothing unless `upgrade`. An extra is resolved
    with its base lock as constraints and the CUDA runtime excluded (found by resolving once with it), and its lock
    keeps only the pins the base lock lacks."""
    base = ROOT / target.base.lock_name
    kept, _ = read_pins(base) if target.extra else ({}, [])
    excluded: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        out, excludes = Path(tmp, target.lock_name), Path(tmp, "excludes.txt")
        if seed is not None and seed.exists():
            shutil.copyfile(seed, out)
        while True:
            excludes.write_text("".join(f"{name}\n" for name in sorted(excluded)))
            extra = (["--constraint", str(base), "--excludes", str(excludes), str(target.requirements)]
                     if target.extra else [])
            done = subprocess.run(
                [str(uv), "--no-config", "pip", "compile", str(REQUIREMENTS), str(CLIENT), *extra, "--output-file",
                 str(out), "--python", sys.executable, "--no-python-downloads", *target.uv_args(), "--only-binary",
                 ":all:", "--no-header", "--no-annotate", "--quiet", *(["--upgrade"] if upgrade else [])],
                capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                reason = next((line.strip() for line in done.stderr.splitlines() if "cause:" in line or "Because" in line),
                              done.stderr.strip()[-500:])
                return None, reason.removeprefix("cause:").strip()
            pins, _ = read_pins(out)
            cuda = {name for name in pins if target.extra and CUDA_RUNTIME.fullmatch(name) and name not in kept}
            if cuda <= excluded:
                break
            excluded |= cuda
        if target.extra:
            return header(target) + "".join(f"{pin}\n" for name, pin in sorted(pins.items()) if name not in kept), ""
        return header(target) + out.read_text(), ""


def install_uv(into: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(into), UV], check=True,
                   env=_pypi_only_env())
    return into / "bin" / "uv"


def lock(upgrade: bool) -> int:
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        uv = install_uv(Path(tmp))
        for target in [Target(python, extra) for extra in ("", *EXTRAS) for python in SUPPORTED]:
            python, path = target.python, ROOT / target.lock_name
            # A new version starts from the pins of the version that is run here.
            reference = ROOT / Target(SUPPORTED[0], target.extra).lock_name
            text, reason = resolve(target, uv, path if path.exists() else reference, upgrade)
            if text is None:
                print(f"lock: {path.name}: no resolution: {reason}\n  fix: pin in "
                      f"{target.requirements.name if target.extra else 'requirements.txt'} the nearest "
                      f"release that has a wheel for {python}, behind a python_version marker, or leave {python} out "
                      f"(LEFT_OUT here, PYTHONS in the Makefile) and say why in docs/dependencies.md")
                failed = True
            elif path.exists() and path.read_text() == text:
                print(f"lock: {path.name}: unchanged")
            else:
                # Replaced in one step: a concurrent `make venv` never reads half a lock.
                with tempfile.NamedTemporaryFile("w", dir=ROOT, prefix=f".{path.name}.", delete=False) as new:
                    new.write(text)
                os.chmod(new.name, 0o644)  # NamedTemporaryFile makes it private
                os.replace(new.name, path)
                print(f"lock: {path.name}: written ({len(read_pins(path)[0])} pins)")
        for python in LEFT_OUT:
            text, reason = resolve(Target(python), uv, ROOT / Target(SUPPORTED[0]).lock_name, upgrade)
            print(f"lock: CPython {python}: left out; still no resolution: {reason}" if text is None else
                  f"lock: CPython {python}: left out, but it now resolves: add it to SUPPORTED in env/locks.py and "
                  f"to PYTHONS in the Makefile if docs/dependencies.md's reason for leaving it out no longer holds")
    return 1 if failed else check_all(SUPPORTED)


def check_all(pythons) -> int:
    failed = False
    for target in [Target(python, extra) for python in pythons for extra in ("", *EXTRAS)]:
        python = target.python
        try:
            check(ROOT / target.lock_name, target)
            print(f"check: {target.lock_name}: every pin has a wheel for CPython {python} on {target.platform}, "
                  f"and the pins are exactly what {target.requirements.name if target.extra else 'requirements.txt'} "
                  f"needs there")
        except LockError as error:
            print(f"check: {error}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


@cli.program("env.locks", usage_errors=(ValueError,))
def main(argv: list[str] | None = None) -> int:
    root = cli.parser("env.locks", __doc__.split("\n\n")[0])
    commands = root.add_subparsers(dest="command", required=True)
    lock_command = commands.add_parser("lock", help="resolve requirements.txt into a lock per supported Python")
    lock_command.add_argument("--upgrade", action="store_true", help="move every pin to its newest fitting release")
    check_command = commands.add_parser("check", help="prove each lock installs from wheels on its Python")
    check_command.add_argument("pythons", nargs="*", default=SUPPORTED, metavar="3.X")
    args = root.parse_args(argv)
    if args.command == "lock":
        return lock(args.upgrade)
    return check_all(args.pythons)


if __name__ == "__main__":
    sys.exit(main())

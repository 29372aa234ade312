"""The admin key that unlocks the restricted APIs: from MODELPORT_ADMIN_KEY, else generated once and kept 0600.

Triton 2.51 takes the key only on its command line (`--http-restricted-api`; it reads no config file and no
environment variable for it), and /proc/PID/cmdline is readable by every local user unless /proc is mounted with
hidepid. Whoever has the key can load a python model, which runs code as the server's user. So the launcher checks
how /proc is mounted and says so when the key is exposed (docs/serving-security.md has what a deployment must do).
"""
from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path

from core.triton import ADMIN_KEY_ENV

# hidepid values (numeric and, since Linux 5.8, named) that keep other users out of /proc/PID/cmdline.
HIDING_HIDEPID = frozenset({"1", "2", "4", "noaccess", "invisible", "ptraceable"})
MOUNTINFO = Path("/proc/self/mountinfo")


@dataclasses.dataclass(frozen=True)
class AdminKey:
    value: str = dataclasses.field(repr=False)
    source: str  # "env MODELPORT_ADMIN_KEY" or the key file's path


def resolve_admin_key(state_dir: Path, environ: dict[str, str] | None = None) -> AdminKey:
    environ = os.environ if environ is None else environ
    if environ.get(ADMIN_KEY_ENV):
        return AdminKey(environ[ADMIN_KEY_ENV], f"env {ADMIN_KEY_ENV}")
    path = state_dir / "admin.key"
    if path.exists():
        return AdminKey(path.read_text().strip(), str(path))
    state_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(24)
    # O_EXCL + 0600: the key is never readable by other users, not even for an instant.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return AdminKey(key, str(path))


def proc_hides_other_users(mountinfo: str) -> bool:
    """Whether /proc, as this process sees it, hides other users' processes. The mount in effect is the top of the
    stack on /proc: the one no other /proc mount sits on (mount ids), the last listed where that does not decide."""
    mounts: list[tuple[str, str, list[str]]] = []  # (id, parent id, super options) of each mount on /proc
    for line in mountinfo.splitlines():
        fields = line.split()
        # ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER-OPTIONS
        if len(fields) > 4 and fields[4] == "/proc" and "-" in fields:
            rest = fields[fields.index("-") + 1:]
            mounts.append((fields[0], fields[1], rest[2].split(",") if len(rest) > 2 else []))
    covered = {parent for _, parent, _ in mounts}
    on_top = [options for mount_id, _, options in mounts if mount_id not in covered]
    options = on_top[-1] if on_top else []
    return any(option.split("=", 1) == ["hidepid", value] for option in options for value in HIDING_HIDEPID)


def admin_key_exposure(mountinfo_path: Path = MOUNTINFO) -> str | None:
    """A warning when other local users can read the admin key from tritonserver's command line, else None."""
    try:
        hidden = proc_hides_other_users(mountinfo_path.read_text())
    except OSError:
        hidden = False
    if hidden:
        return None
    return ("tritonserver takes the admin key only on its command line, and /proc is not mounted with hidepid: every "
            "local user can read the key in /proc/PID/cmdline and load code with it. On a host shared with others, "
            "mount /proc with hidepid=2 or run in a container (docs/serving-security.md)")

"""The admin key that unlocks the restricted APIs: from MODELPORT_ADMIN_KEY, else generated once and kept 0600."""
from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path

from serve.options import ADMIN_KEY_ENV


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

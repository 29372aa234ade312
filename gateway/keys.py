"""API keys: only their SHA-256 digests are stored; a request's key is hashed and looked up.

The keys file (JSON, mode 0600) lists `{id, sha256, models, rate_per_s, burst, note, scopes}` per key: `models` is
the Triton models the key may call ("*" for all), `rate_per_s`/`burst` its token bucket (the gateway's defaults when
null), `scopes` what else it may do: "feedback" (POST /v1/feedback on its models' predictions), "admin" (GET
/v1/rollouts/{model}: the rollout figures). A plain digest is enough because the keys are 256-bit random tokens, not
passwords a person chose: there is nothing to guess from the digest, so a slow password hash would only cost every
request.

Keys come from the keys file and from $MODELPORT_API_KEY. With neither, `resolve` generates one, like the admin key of
`serve`: its digest goes into the keys file and the key itself into `api.key` beside it (0600), the client's copy,
which the gateway never reads back. The generated key and the $MODELPORT_API_KEY one are the operator's: they have
the `admin` scope.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Mapping, Optional

from gateway.options import API_KEY_ENV, GatewayOptions, OptionsError

KEY_PREFIX = "mpk_"
SCOPES = ("feedback", "admin")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclasses.dataclass(frozen=True)
class ApiKey:
    id: str  # safe to log: a prefix of the digest
    sha256: str = dataclasses.field(repr=False)
    models: tuple[str, ...] = ("*",)
    rate_per_s: Optional[float] = None
    burst: Optional[int] = None
    note: str = ""
    scopes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        where = f"API key {self.id!r}"
        if not all(scope in SCOPES for scope in self.scopes):
            raise OptionsError(f"{where}: scopes {list(self.scopes)}; allowed: {', '.join(SCOPES)}")
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise OptionsError(f"{where}: sha256 must be 64 lowercase hex digits (hashlib.sha256(key).hexdigest())")
        if not self.models or not all(isinstance(m, str) and m for m in self.models):
            raise OptionsError(f"{where}: models must be a non-empty list of model names, or [\"*\"] for all")
        if self.rate_per_s is not None and not (isinstance(self.rate_per_s, (int, float)) and self.rate_per_s > 0):
            raise OptionsError(f"{where}: rate_per_s must be a number > 0, or null for the gateway's default")
        if self.burst is not None and not (isinstance(self.burst, int) and self.burst >= 1):
            raise OptionsError(f"{where}: burst must be an integer >= 1, or null for the gateway's default")

    @classmethod
    def for_key(cls, key: str, **fields) -> "ApiKey":
        hashed = digest(key)
        return cls(id=fields.pop("id", hashed[:12]), sha256=hashed, **fields)

    def allows(self, model: str) -> bool:
        return "*" in self.models or model in self.models


class KeyStore:
    def __init__(self, keys: tuple[ApiKey, ...]):
        self.keys = keys
        self._by_digest = {k.sha256: k for k in keys}

    def __len__(self) -> int:
        return len(self.keys)

    def authenticate(self, key: str) -> Optional[ApiKey]:
        # A dict lookup on the digest: comparing digests of random keys leaks nothing worth timing.
        return self._by_digest.get(digest(key))


def load(path: Path) -> tuple[ApiKey, ...]:
    if not path.exists():
        return ()
    try:
        document = json.loads(path.read_text())
        entries = document["keys"]
        return tuple(ApiKey(id=e["id"], sha256=e["sha256"], models=tuple(e.get("models", ["*"])),
                            rate_per_s=e.get("rate_per_s"), burst=e.get("burst"), note=e.get("note", ""),
                            scopes=tuple(e.get("scopes", ())))
                     for e in entries)
    except (ValueError, KeyError, TypeError) as error:
        raise OptionsError(f"keys file {path}: {error!r}; expected {{\"keys\": [{{\"id\", \"sha256\", \"models\", "
                           f"\"rate_per_s\", \"burst\", \"note\", \"scopes\"}}]}} (write it with "
                           f"`python -m gateway keys add`)"
                           ) from None


def save(path: Path, keys: tuple[ApiKey, ...]) -> None:
    """Atomically, readable only by its owner."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"keys": [dataclasses.asdict(k) | {"models": list(k.models), "scopes": list(k.scopes)}
                            for k in keys]}, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def add(path: Path, key: str, **fields) -> ApiKey:
    keys = load(path)
    entry = ApiKey.for_key(key, **fields)
    if any(k.sha256 == entry.sha256 for k in keys):
        raise OptionsError(f"keys file {path}: this key is already in it (id {entry.id})")
    save(path, keys + (entry,))
    return entry


def _write_secret(path: Path, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not for an instant
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")


def resolve(options: GatewayOptions, environ: Optional[Mapping[str, str]] = None) -> tuple[KeyStore, str]:
    """The keys the gateway accepts, and a line saying where they come from (printed at start)."""
    environ = os.environ if environ is None else environ
    keys = load(options.keys_file)
    sources = [f"{len(keys)} in {options.keys_file}"] if keys else []
    if environ.get(API_KEY_ENV):
        # the operator's own keys (this one, and the generated one) may read the rollouts
        from_env = ApiKey.for_key(environ[API_KEY_ENV], id="env", note=f"${API_KEY_ENV}", scopes=("admin",))
        if all(k.sha256 != from_env.sha256 for k in keys):
            keys += (from_env,)
        sources.append(f"${API_KEY_ENV}")
    if not keys:
        secret_path = options.keys_file.with_name("api.key")
        if secret_path.exists():  # the keys file was removed, its client's copy was not: keep that key working
            key = secret_path.read_text().strip()
        else:
            key = new_key()
            _write_secret(secret_path, key)
        keys = (add(options.keys_file, key, note=f"generated at first start; the key is in {secret_path}",
                    scopes=("admin",)),)
        sources.append(f"generated: the key is in {secret_path} (0600; its digest in {options.keys_file}); "
                       f"or set ${API_KEY_ENV}")
    return KeyStore(keys), "API keys: " + ", ".join(sources)

"""OAuth2 / OIDC bearer tokens (JWT) beside API keys: the signature is checked against a configured JWKS (a file, or
fetched from the issuer's discovery document), then the issuer, audience, expiry and not-before.

The token's `scope` claim (or another claim, `--jwt-models-claim`: a space-separated string or a list) maps to what it
may call: an entry naming a served model allows that model, `*` every model, `metrics` the /metrics endpoint,
`feedback` POST /v1/feedback on the predictions of the models it may call, `admin` GET /v1/rollouts/{model}. A token
that cannot be accepted is a 401 whose detail says why; nothing about a token is a 500.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from joserfc import errors, jwt
from joserfc.jwk import KeySet

from gateway.options import TokenOptions
from gateway.problems import Unauthorized

_log = logging.getLogger("modelport.gateway")
REFETCH_AFTER_S = 60.0  # an unknown key id refetches the issuer's keys at most this often (key rotation)
FETCH_TIMEOUT_S = 5.0
MAX_TOKEN_BYTES = 8192  # a token is parsed only below this size


SCOPES = ("metrics", "feedback", "admin")  # entries of the claim that name no model


@dataclass(frozen=True)
class TokenGrant:
    subject: str
    models: tuple[str, ...]
    scopes: frozenset[str]

    def allows(self, model: str) -> bool:
        return "*" in self.models or model in self.models


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


def _fetch_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
        return json.loads(response.read(1 << 20))


class TokenVerifier:
    def __init__(self, options: TokenOptions):
        self.options = options
        self._keys: Optional[KeySet] = None
        self._fetched = 0.0
        self._claims = jwt.JWTClaimsRegistry(
            leeway=options.leeway_s, iss={"essential": True, "value": options.issuer},
            aud={"essential": True, "value": options.audience}, exp={"essential": True})
        self.keys()  # a wrong JWKS is an error at start, not at the first request

    def _jwks_url(self) -> Optional[str]:
        if self.options.jwks.startswith(("http://", "https://")):
            return self.options.jwks
        if self.options.jwks:
            return None
        discovery = self.options.issuer.rstrip("/") + "/.well-known/openid-configuration"
        return _fetch_json(discovery)["jwks_uri"]

    def keys(self, refetch: bool = False) -> KeySet:
        if self._keys is not None and not refetch:
            return self._keys
        now = time.monotonic()
        if self._keys is not None and now - self._fetched < REFETCH_AFTER_S:
            return self._keys
        url = self._jwks_url()
        document = _fetch_json(url) if url else json.loads(Path(self.options.jwks).read_text())
        self._keys, self._fetched = KeySet.import_key_set(document), now
        return self._keys

    def verify(self, token: str) -> TokenGrant:
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthorized(f"the bearer token is longer than {MAX_TOKEN_BYTES} bytes")
        try:
            try:
                decoded = jwt.decode(token, self.keys(), algorithms=list(self.options.algorithms))
            except (errors.InvalidKeyIdError, errors.MissingKeyError, errors.BadSignatureError):
                if not self.options.jwks.startswith(("http://", "https://")) and self.options.jwks:
                    raise
                decoded = jwt.decode(token, self.keys(refetch=True), algorithms=list(self.options.algorithms))
            self._claims.validate(decoded.claims)
        except errors.ExpiredTokenError:
            raise Unauthorized("the bearer token has expired (exp)", fix="get a new token from the issuer") from None
        except errors.MissingClaimError as error:
            raise Unauthorized(f"the bearer token lacks a required claim: {error.description}") from None
        except errors.InvalidClaimError as error:  # joserfc's InvalidTokenError (nbf, iat) is the same class
            if "not yet valid" in str(error.description) or "in the future" in str(error.description):
                raise Unauthorized(f"the bearer token is not valid yet (nbf/iat: {error.description})",
                                   fix="check the clocks; get a new token from the issuer") from None
            raise Unauthorized(f"the bearer token's claim is not accepted: {error.description} (this gateway "
                               f"takes iss={self.options.issuer!r}, aud={self.options.audience!r})") from None
        except errors.BadSignatureError:
            raise Unauthorized("the bearer token's signature does not verify against the issuer's keys") from None
        except (errors.InvalidKeyIdError, errors.MissingKeyError):
            raise Unauthorized("the bearer token is signed with a key the issuer's JWKS does not have (kid)") from None
        except errors.UnsupportedAlgorithmError:
            raise Unauthorized(f"the bearer token's algorithm is not one of {', '.join(self.options.algorithms)}"
                               ) from None
        except errors.JoseError as error:
            raise Unauthorized(f"the bearer token cannot be read: {error.error}"
                               f"{': ' + error.description if error.description else ''}") from None
        except (ValueError, TypeError, KeyError):  # malformed base64 or JSON inside the token
            raise Unauthorized("the bearer token is not a well-formed JWT") from None
        except OSError as error:
            _log.warning("could not fetch the issuer's keys: %s", error)
            raise Unauthorized("the issuer's keys cannot be fetched now; the token cannot be checked",
                               error="temporarily_unavailable") from None
        return self.grant(decoded.claims)

    def grant(self, claims: dict) -> TokenGrant:
        raw = claims.get(self.options.models_claim, ())
        entries = raw.split() if isinstance(raw, str) else [e for e in raw if isinstance(e, str)] \
            if isinstance(raw, list) else []
        subject = str(claims.get("sub") or claims.get("client_id") or "unknown")[:128]
        return TokenGrant(subject, tuple(e for e in entries if e not in SCOPES), frozenset(entries))

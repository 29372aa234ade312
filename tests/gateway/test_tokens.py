"""Bearer-token verification without a gateway: keys from the issuer's discovery document over HTTP (and a rotated key
picked up), the options refusing what cannot be safe, and every bad token a 401 problem, never an exception."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from gateway import tokens
from gateway.options import OptionsError, TokenOptions
from gateway.problems import Unauthorized
from gateway.tokens import TokenVerifier


class Issuer:
    """An OIDC issuer on a free loopback port: /.well-known/openid-configuration and its JWKS."""

    def __init__(self):
        self.keys = [RSAKey.generate_key(2048, parameters={"kid": "one"}, private=True)]
        self.jwks_fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks"}
                elif self.path == "/jwks":
                    issuer.jwks_fetches += 1
                    body = KeySet([RSAKey.import_key(k.as_dict(private=False)) for k in issuer.keys]).as_dict()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, key: RSAKey, **claims) -> str:
        now = int(time.time())
        payload = {"iss": self.url, "aud": "gw", "sub": "svc", "exp": now + 60, "scope": "digits", **claims}
        return jwt.encode({"alg": "RS256", "kid": key.kid}, payload, key)


@pytest.fixture
def issuer():
    running = Issuer()
    yield running
    running.server.shutdown()


def test_keys_come_from_the_issuer_s_discovery_document(issuer):
    verifier = TokenVerifier(TokenOptions(issuer.url, "gw"))
    grant = verifier.verify(issuer.token(issuer.keys[0], scope=["digits", "sentiment", "metrics", "feedback"]))
    assert (grant.subject, grant.models, "metrics" in grant.scopes) == ("svc", ("digits", "sentiment"), True)
    assert "feedback" in grant.scopes
    assert grant.allows("digits") and not grant.allows("digits_mobilenet")


def test_a_rotated_key_is_fetched_once_and_not_on_every_unknown_kid(issuer, monkeypatch):
    verifier = TokenVerifier(TokenOptions(issuer.url, "gw"))
    issuer.keys.append(RSAKey.generate_key(2048, parameters={"kid": "two"}, private=True))
    monkeypatch.setattr(tokens, "REFETCH_AFTER_S", 0.0)
    assert verifier.verify(issuer.token(issuer.keys[1])).subject == "svc"  # refetched: the new key is known
    fetches = issuer.jwks_fetches
    monkeypatch.setattr(tokens, "REFETCH_AFTER_S", 3600.0)
    stranger = RSAKey.generate_key(2048, parameters={"kid": "three"}, private=True)
    for _ in range(5):
        with pytest.raises(Unauthorized, match="JWKS does not have|signature"):
            verifier.verify(issuer.token(stranger))
    assert issuer.jwks_fetches == fetches  # unknown kids do not hammer the issuer


@pytest.mark.parametrize("token", ["", "eyJ.eyJ.", "eyJhbGciOiJSUzI1NiJ9..", "a.b.c", "eyJ" + "x" * 9000 + ".a.b",
                                   "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "\udcff.\udcff.\udcff"])
def test_a_malformed_token_is_a_401_not_an_exception(issuer, token):
    verifier = TokenVerifier(TokenOptions(issuer.url, "gw"))
    with pytest.raises(Unauthorized):
        verifier.verify(token)


@pytest.mark.parametrize(("fields", "flag"), [
    ({"algorithms": ("HS256",)}, "--jwt-algorithm"), ({"algorithms": ("none",)}, "--jwt-algorithm"),
    ({"audience": ""}, "--jwt-audience"), ({"jwks": "/no/such/jwks.json"}, "--jwt-jwks"),
])
def test_token_options_refuse_what_cannot_be_checked_safely(fields, flag):
    with pytest.raises(OptionsError, match=flag):
        TokenOptions(**{"issuer": "https://issuer.test", "audience": "gw", **fields})

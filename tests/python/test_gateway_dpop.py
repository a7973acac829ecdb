"""DPoP (RFC 9449) and short-lived OAuth tokens with the official `openai` SDK, through the real
Gatehouse binary.

A real DPoP client: an EC P-256 key pair from `cryptography`, an ES256 proof made per request in
an httpx2 request hook (the HTTP client of the openai SDK) (`Authorization: DPoP <token>` + `DPoP: <proof>` with `htm`, `htu`, `iat`,
a fresh `jti` and `ath`), a replayed proof refused with 401 `invalid_dpop_proof`.

Credentials: an API key bound to the key pair through the admin API (`dpop_jkt`), and a
DPoP-bound access token from the client-credentials grant at `/oauth/token` (client registered
through `/admin/v1/oauth-clients`), plus the plain SDK with a short-lived Bearer token that stops working
after RFC 7009 revocation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid

import httpx2 as httpx  # the HTTP client the openai SDK is built on
import openai
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from conftest import AdminError, Gateway


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class DpopKey:
    """An EC P-256 key pair that signs DPoP proofs (ES256, RFC 9449 §4.2)."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }

    @property
    def jkt(self) -> str:
        """RFC 7638 SHA-256 thumbprint: required members, sorted, no whitespace."""
        canonical = json.dumps({k: self.jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
        return b64url(hashlib.sha256(canonical.encode()).digest())

    def proof(self, method: str, url: str, access_token: str | None = None, nonce: str | None = None) -> str:
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}
        claims = {"jti": str(uuid.uuid4()), "htm": method, "htu": url, "iat": int(time.time())}
        if access_token is not None:
            claims["ath"] = b64url(hashlib.sha256(access_token.encode()).digest())
        if nonce is not None:
            claims["nonce"] = nonce
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return signing_input + "." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


class DpopAuth:
    """httpx request hook: a fresh proof for every request the SDK sends (retries included)."""

    def __init__(self, key: DpopKey, token: str) -> None:
        self.key = key
        self.token = token
        self.proofs: list[str] = []

    def __call__(self, request: httpx.Request) -> None:
        htu = str(request.url.copy_with(query=None, fragment=None))
        proof = self.key.proof(request.method, htu, self.token)
        self.proofs.append(proof)
        request.headers["Authorization"] = f"DPoP {self.token}"
        request.headers["DPoP"] = proof


def dpop_client(gateway: Gateway, key: DpopKey, token: str) -> tuple[openai.OpenAI, DpopAuth]:
    auth = DpopAuth(key, token)
    http = httpx.Client(event_hooks={"request": [auth]}, timeout=30)
    # The SDK's own `Authorization: Bearer` is replaced by the hook.
    return openai.OpenAI(api_key=token, base_url=gateway.base_url, max_retries=0, http_client=http), auth


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def chat_url(gateway: Gateway) -> str:
    return gateway.base_url + "/chat/completions"


def assert_dpop_refused(resp: httpx.Response, error: str) -> None:
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == f'DPoP realm="gatehouse", algs="ES256 EdDSA", error="{error}"'


def test_dpop_bound_api_key_with_a_fresh_proof_per_request_and_a_replay_refused(gateway: Gateway) -> None:
    key = DpopKey()
    created = gateway.create_key("python-dpop", dpop_jkt=key.jkt)
    token = created["key"]
    oai, auth = dpop_client(gateway, key, token)
    for text in ("first", "second"):
        r = oai.chat.completions.create(model="demo", messages=user(text))
        assert r.choices[0].message.content == f"echo: {text}"
    assert len(auth.proofs) == 2 and auth.proofs[0] != auth.proofs[1]
    # Streaming goes through the same hook.
    chunks = list(oai.chat.completions.create(model="demo", messages=user("streamed"), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: streamed"

    body = {"model": "demo", "messages": user("replayed")}
    replay = httpx.post(chat_url(gateway), json=body, headers={"Authorization": f"DPoP {token}", "DPoP": auth.proofs[0]})
    assert_dpop_refused(replay, "invalid_dpop_proof")
    assert replay.json()["error"]["code"] == "invalid_dpop_proof"
    assert token not in replay.text and auth.proofs[0] not in replay.text

    # The bound key as a plain Bearer token (the SDK without the hook): 401 invalid_token (§7.2).
    plain = openai.OpenAI(api_key=token, base_url=gateway.base_url, max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError) as e:
        plain.chat.completions.create(model="demo", messages=user("bearer"))
    assert e.value.status_code == 401
    assert e.value.response.headers["www-authenticate"] == 'Bearer realm="gatehouse", error="invalid_token"'

    # A proof made by another key pair: 401 DPoP invalid_token (§7.1, T28).
    thief, _ = dpop_client(gateway, DpopKey(), token)
    with pytest.raises(openai.AuthenticationError) as e:
        thief.chat.completions.create(model="demo", messages=user("stolen"))
    assert e.value.response.headers["www-authenticate"].endswith('error="invalid_token"')


def test_admin_api_refuses_a_malformed_dpop_jkt(gateway: Gateway) -> None:
    with pytest.raises(AdminError) as e:
        gateway.create_key("python-dpop-bad", dpop_jkt="not-a-thumbprint")
    assert e.value.status == 400
    assert "dpop_jkt" in e.value.body


# ---------------------------------------------------------------------------------------------
# OAuth client credentials


def oauth_client(gateway: Gateway) -> tuple[str, str]:
    """Registers a client-secret OAuth client (`POST /admin/v1/oauth-clients`, secret shown once)."""
    created = gateway.admin("POST", "/admin/v1/oauth-clients", {"name": f"py-{uuid.uuid4().hex[:8]}"})
    assert created["client_secret"].startswith("gthc_")
    return created["id"], created["client_secret"]


def oauth_url(gateway: Gateway, path: str) -> str:
    return gateway.base_url.removesuffix("/v1") + path


def token_request(gateway: Gateway, client: tuple[str, str], proof: str | None = None) -> httpx.Response:
    headers = {"DPoP": proof} if proof else {}
    return httpx.post(
        oauth_url(gateway, "/oauth/token"),
        data={"grant_type": "client_credentials"},
        auth=client,
        headers=headers,
    )


def test_dpop_client_credentials_flow_with_the_openai_sdk(gateway: Gateway) -> None:
    client = oauth_client(gateway)
    key = DpopKey()
    resp = token_request(gateway, client, key.proof("POST", oauth_url(gateway, "/oauth/token")))
    assert resp.status_code == 200, resp.text
    assert resp.headers["cache-control"] == "no-store"
    issued = resp.json()
    assert issued["token_type"] == "DPoP"
    token = issued["access_token"]
    oai, auth = dpop_client(gateway, key, token)
    for text in ("one", "two", "three"):
        assert oai.chat.completions.create(model="demo", messages=user(text)).choices[0].message.content == f"echo: {text}"
    assert len(set(auth.proofs)) == 3
    replay = httpx.post(
        chat_url(gateway),
        json={"model": "demo", "messages": user("again")},
        headers={"Authorization": f"DPoP {token}", "DPoP": auth.proofs[-1]},
    )
    assert_dpop_refused(replay, "invalid_dpop_proof")
    # The bound token as Bearer: refused.
    plain = openai.OpenAI(api_key=token, base_url=gateway.base_url, max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        plain.chat.completions.create(model="demo", messages=user("bearer"))


def test_openai_sdk_with_a_short_lived_client_credentials_token_fails_after_revocation(gateway: Gateway) -> None:
    client = oauth_client(gateway)
    resp = token_request(gateway, client)
    assert resp.status_code == 200, resp.text
    issued = resp.json()
    assert issued["token_type"] == "Bearer"
    assert 0 < issued["expires_in"] <= 3600
    token = issued["access_token"]
    oai = openai.OpenAI(api_key=token, base_url=gateway.base_url, max_retries=0, timeout=30)
    assert oai.chat.completions.create(model="demo", messages=user("short-lived")).choices[0].message.content == "echo: short-lived"
    assert [m.id for m in oai.models.list()]
    revoked = httpx.post(oauth_url(gateway, "/oauth/revoke"), data={"token": token}, auth=client)
    assert revoked.status_code == 200
    with pytest.raises(openai.AuthenticationError) as e:
        oai.chat.completions.create(model="demo", messages=user("after revocation"))
    assert e.value.status_code == 401
    assert token not in e.value.response.text

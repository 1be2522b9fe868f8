"""The ingest-api as an attacker sees it, in process, against moto and a real migrated database.

Two merchants hold transactions and alerts (loaded the real way, with the rules); the API
runs as the api role. The requests are the OWASP API Security Top 10 (2023) classes a
payment-security review tries: another tenant's objects by every id and through every list
parameter (API1), forged and misused tokens (API2), fields a caller must not set (API3),
bodies and parameters past every bound (API4), each route with each kind of token (API5),
and card numbers wherever a caller can write text (PCI DSS 3.3-3.5). Whatever is refused is
a 4xx ``application/problem+json`` answer that repeats no card number; nothing is a 5xx.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import csv
import gzip
import hashlib
import hmac
import io
import json
import socket
import threading
import time
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import boto3
import httpx
import psycopg
import pytest
from card_number_forms import ascii_digits, luhn_completed, written_card_numbers
from card_testing_bursts import load_burst
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ingest_aws import provision_ingest
from merchant_entries import OPERATORS_CLIENT, register

from cardstream_shared import resource_names as names
from cardstream_shared.contract import KAGGLE_FIELDS, StreamEnvelope, kaggle_example
from cardstream_shared.jwt_auth import SigningKey, generate_signing_key, issue_token
from ingest_api.app import create_app
from ingest_api.settings import IngestSettings

pytestmark = pytest.mark.functional

ISSUER = "cardstream-local"
AUDIENCE = "cardstream"
STREAM = names.STREAM_NAME
ALICE = "merchant-alice"
BOB = "merchant-bob"
PAN = "4111111111111111"
PROBLEM = "application/problem+json"
OPERATOR_SCOPES = (names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW, names.SCOPE_ALL_TENANTS)
# An alert no one has: a body that is refused is refused before the alert is looked up,
# so the answer shows what the body did; a review of it changes nothing.
NO_ALERT = 2**40
# A path's way up, kept out of the literal paths (they name no file of the repository).
UP = ".."


# --- the world: two tenants, an issuer, the API --------------------------------------------


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return generate_signing_key("hostile-key")


@pytest.fixture(scope="module")
def jwks_url(tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey) -> str:
    path = tmp_path_factory.mktemp("hostile-jwks") / "jwks.json"
    path.write_text(json.dumps(signing_key.jwks))
    return f"file://{path}"


@pytest.fixture(scope="module")
def token(signing_key: SigningKey) -> Callable[..., str]:
    def make(
        *scopes: str,
        subject: str = ALICE,
        person: str | None = None,
        **overrides: Any,
    ) -> str:
        extra: dict[str, Any] = {"username": person} if person else {}
        if names.SCOPE_ALL_TENANTS in scopes:
            # Operators sign in through the operators' client; merchants are their own.
            extra["client_id"] = OPERATORS_CLIENT
        return issue_token(
            signing_key,
            issuer=overrides.pop("issuer", ISSUER),
            audience=overrides.pop("audience", AUDIENCE),
            subject=subject,
            scopes=scopes,
            ttl_s=overrides.pop("ttl_s", 3600),
            extra_claims=extra | overrides,
        )

    return make


@pytest.fixture(scope="module")
def tenants(module_database: str) -> dict[str, list[str]]:
    """Each merchant's alerted transactions (two card-testing bursts each)."""

    async def load() -> dict[str, list[str]]:
        return {
            ALICE: await load_burst(module_database, 61, ALICE),
            BOB: await load_burst(module_database, 62, BOB)
            + await load_burst(module_database, 63, BOB),
        }

    return asyncio.run(load())


@pytest.fixture
def aws(moto_reset: str) -> str:
    provision_ingest(moto_reset, ALICE, BOB)
    return moto_reset


@asynccontextmanager
async def running_api(
    aws: str, jwks_url: str, database_url: str, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    values: dict[str, Any] = {
        "environment": "test",
        "aws_endpoint_url": aws,
        "stream_name": STREAM,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "jwks_url": jwks_url,
        "database_secret_id": None,
        # Superuser login switched to the api role at connect: exactly the api's grants.
        "database_url": f"{database_url}?role={names.DB_API_ROLE}",
        "operator_client_ids": OPERATORS_CLIENT,
        "coalesce_window_ms": 2,
        # The tests share a loaded machine: a slow query or stream is not what they look at.
        "db_statement_timeout_s": 30.0,
        "put_deadline_s": 30.0,
    }
    app = create_app(IngestSettings(**(values | overrides)))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("198.51.100.4", 4444))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http


@pytest.fixture
async def api(aws: str, jwks_url: str, module_database: str) -> AsyncIterator[httpx.AsyncClient]:
    async with running_api(aws, jwks_url, module_database) as http:
        yield http


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def stream_data(endpoint: str) -> list[bytes]:
    """Every record's data in the stream."""
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1")
    found: list[bytes] = []
    for shard in kinesis.list_shards(StreamName=STREAM)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        found += [r["Data"] for r in page["Records"]]
    return found


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """``response`` is the problem document of ``status``; its body."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"] == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:cardstream:problem:")
    return body


async def alert_ids(api: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, int]:
    """trans_num -> alert id of every alert ``headers``' caller can list."""
    found: dict[str, int] = {}
    cursor: int | None = None
    while True:
        params: dict[str, Any] = {"limit": 500} | ({"cursor": cursor} if cursor else {})
        page = await api.get("/v1/alerts", params=params, headers=headers)
        assert page.status_code == 200, page.text
        found |= {i["trans_num"]: i["alert_id"] for i in page.json()["items"]}
        cursor = page.json().get("next_cursor")
        if cursor is None:
            return found


# --- API1: object-level authorization --------------------------------------------------------


def _same_answer(one: httpx.Response, other: httpx.Response) -> None:
    assert (one.status_code, one.content) == (other.status_code, other.content)
    strip = {"date", "content-length"}
    assert {k: v for k, v in one.headers.items() if k not in strip} == {
        k: v for k, v in other.headers.items() if k not in strip
    }


# Every route that reads or changes one object: how the id of an object is written into it.
OBJECT_ROUTES = {
    "read transaction": ("GET", "/v1/transactions/{trans}", None),
    "read alert": ("GET", "/v1/alerts/{alert}", None),
    "review alert": ("PATCH", "/v1/alerts/{alert}", {"status": "dismissed"}),
    "note on alert": ("PATCH", "/v1/alerts/{alert}", {"status": "reviewed", "note": "mine now"}),
}


@pytest.mark.parametrize("route", list(OBJECT_ROUTES))
@pytest.mark.parametrize(
    "caller", ["reader", "reviewer (person)", "reviewer holding tenants:all (merchant's client)"]
)
async def test_another_tenants_object_answers_exactly_like_an_unknown_one(
    api: httpx.AsyncClient,
    tenants: dict[str, list[str]],
    token: Callable[..., str],
    route: str,
    caller: str,
) -> None:
    scopes = (names.SCOPE_READ,) + ((names.SCOPE_ALERTS_REVIEW,) if "reviewer" in caller else ())
    # The operators' scope lifts tenant scoping for the operators' client only.
    scopes += (names.SCOPE_ALL_TENANTS,) if "tenants:all" in caller else ()
    person = "Alice A" if "reviewer" in caller else None
    alice = bearer(token(*scopes, person=person, client_id=ALICE))
    operator = bearer(token(*OPERATOR_SCOPES, subject="operator-1", person="Olga"))
    ids = await alert_ids(api, operator)
    method, template, body = OBJECT_ROUTES[route]
    bobs = {"trans": tenants[BOB][0], "alert": str(ids[tenants[BOB][0]])}
    unknown = {"trans": uuid.uuid4().hex, "alert": str(max(ids.values()) + 1000)}
    kwargs = {"json": body} if body else {}
    missing = await api.request(method, template.format(**unknown), headers=alice, **kwargs)
    assert missing.status_code in (403, 404), missing.text
    for spelled in (
        bobs,
        {"trans": bobs["trans"].upper(), "alert": f"0{bobs['alert']}"},
        {"trans": f"{bobs['trans']}%20", "alert": f"+{bobs['alert']}"},
    ):
        answer = await api.request(method, template.format(**spelled), headers=alice, **kwargs)
        if answer.status_code == 422:
            assert_problem(answer, 422)
        else:
            _same_answer(answer, missing)
    after = (await api.get(f"/v1/alerts/{bobs['alert']}", headers=operator)).json()
    assert (after["status"], after["history"]) == ("open", [])


async def test_path_tricks_reach_no_other_route_or_tenant(
    api: httpx.AsyncClient, tenants: dict[str, list[str]], token: Callable[..., str]
) -> None:
    alice = bearer(token(names.SCOPE_READ))
    operator = bearer(token(*OPERATOR_SCOPES, subject="operator-1", person="Olga"))
    bobs_trans = tenants[BOB][0]
    bobs_alert = (await alert_ids(api, operator))[bobs_trans]
    for path in (
        f"/v1/transactions/{UP}/alerts/{bobs_alert}",
        f"/v1/transactions/%2e%2e/alerts/{bobs_alert}",
        f"/v1/alerts/{bobs_alert}/",
        f"/v1//alerts/{bobs_alert}",
        f"/v1/transactions/{bobs_trans}/",
        f"/v1/transactions/{bobs_trans}%00",
    ):
        answer = await api.get(path, headers=alice)
        assert answer.status_code in (404, 405, 422, 307), (path, answer.status_code)
        assert bobs_trans not in answer.text


async def test_no_list_parameter_reaches_another_tenants_alerts(
    api: httpx.AsyncClient, tenants: dict[str, list[str]], token: Callable[..., str]
) -> None:
    alice = bearer(token(names.SCOPE_READ))
    operator = bearer(token(*OPERATOR_SCOPES, subject="operator-1", person="Olga"))
    ids = await alert_ids(api, operator)
    bobs = {ids[t] for t in tenants[BOB]}
    own = set(tenants[ALICE])
    # Parameters a caller might hope name a tenant, a sort or every tenant; cursors just past
    # another tenant's alerts; every filter.
    tries: list[dict[str, Any]] = [
        {"client_id": BOB},
        {"tenant": BOB, "all_tenants": "true", "tenants": "all", "scope": "tenants:all"},
        {"sort": "alert_id", "order": "asc", "direction": "desc"},
        {"limit": 500, "rule": "card_testing", "severity": "high", "status": "open"},
        {"since": "1970-01-01T00:00:00Z"},
        *({"cursor": alert + 1, "limit": 1} for alert in sorted(bobs)),
    ]
    headers_tries = [
        {"X-Tenant-Id": BOB},
        {"X-Client-Id": BOB, "X-Forwarded-User": BOB, "X-Amzn-Oidc-Identity": BOB},
    ]
    seen: set[str] = set()
    for params in tries:
        for extra in ({}, *headers_tries):
            page = await api.get("/v1/alerts", params=params, headers=alice | extra)
            assert page.status_code == 200, (params, page.text)
            items = page.json()["items"]
            seen |= {i["trans_num"] for i in items}
            assert {i["alert_id"] for i in items}.isdisjoint(bobs), params
    assert seen <= own
    assert seen >= own


# --- API2: broken authentication ---------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": ALICE,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "scope": " ".join((*OPERATOR_SCOPES, names.SCOPE_WRITE)),
        "username": "Mallory",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(header: dict[str, Any], claims: dict[str, Any], key: SigningKey) -> str:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    private = serialization.load_pem_private_key(key.private_pem.encode(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


class _KeyServer:
    """A loopback HTTP server publishing the attacker's key set; counts what it is asked."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        body = json.dumps(jwks).encode()
        self.requests: list[str] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def attacker_keys() -> Iterator[tuple[SigningKey, _KeyServer]]:
    key = generate_signing_key("attacker")
    server = _KeyServer(key.jwks)
    yield key, server
    server.close()


def _forged_tokens(
    key: SigningKey, attacker: SigningKey, key_url: str, public_pem: bytes
) -> dict[str, str]:
    ours = {"alg": "RS256", "typ": "JWT", "kid": key.kid}
    theirs = {"alg": "RS256", "typ": "JWT", "kid": attacker.kid}
    public_jwk = attacker.jwks["keys"][0]
    good = _claims()
    unsigned = (
        f"{_b64(json.dumps(ours | {'alg': 'none'}).encode())}.{_b64(json.dumps(good).encode())}."
    )

    def hs(alg: str, digest: Any) -> str:
        header = _b64(json.dumps(ours | {"alg": alg}).encode())
        signing_input = f"{header}.{_b64(json.dumps(good).encode())}"
        mac = hmac.new(public_pem, signing_input.encode(), digest).digest()
        return f"{signing_input}.{_b64(mac)}"

    valid = _signed(ours, good, key)
    head, body, signature = valid.split(".")
    return {
        "alg none": unsigned,
        "alg None": unsigned.replace(
            _b64(json.dumps(ours | {"alg": "none"}).encode()),
            _b64(json.dumps(ours | {"alg": "None"}).encode()),
        ),
        "HS256 with the public key": hs("HS256", hashlib.sha256),
        "HS512 with the public key": hs("HS512", hashlib.sha512),
        "our kid, another key": _signed(ours, good, attacker),
        "jku to the attacker's keys": _signed(theirs | {"jku": key_url}, good, attacker),
        "x5u to the attacker's keys": _signed(theirs | {"x5u": key_url}, good, attacker),
        "embedded jwk": _signed(theirs | {"jwk": public_jwk}, good, attacker),
        "jku with our kid": _signed(ours | {"jku": key_url}, good, attacker),
        "no kid": _signed({"alg": "RS256", "typ": "JWT"}, good, key),
        "unknown kid": _signed(ours | {"kid": "nobody"}, good, key),
        "kid path": _signed(ours | {"kid": "/".join([UP] * 4) + "/dev/null"}, good, key),
        "kid object": _signed(ours | {"kid": {"$ne": ""}}, good, key),
        "signature stripped": f"{head}.{body}.",
        "signature of another token": f"{head}.{_b64(b'{}')}.{signature}",
        "no exp": _signed(ours, _claims(exp=None), key),
        "no iat": _signed(ours, _claims(iat=None), key),
        "no iss": _signed(ours, _claims(iss=None), key),
        "no sub": _signed(ours, _claims(sub=None), key),
        "no aud": _signed(ours, _claims(aud=None), key),
        "empty sub": _signed(ours, _claims(sub=""), key),
        "sub not a string": _signed(ours, _claims(sub=12345), key),
        "expired": _signed(ours, _claims(exp=int(time.time()) - 3600), key),
        "exp not a number": _signed(ours, _claims(exp="never"), key),
        "not yet valid": _signed(ours, _claims(nbf=int(time.time()) + 3600), key),
        "issued in the future": _signed(ours, _claims(iat=int(time.time()) + 3600), key),
        "wrong issuer": _signed(ours, _claims(iss="https://evil.example"), key),
        "issuer prefix": _signed(ours, _claims(iss=ISSUER + "x"), key),
        "wrong audience": _signed(ours, _claims(aud="someone-else"), key),
        "audience list without ours": _signed(ours, _claims(aud=["a", "b"]), key),
        "audience substring": _signed(ours, _claims(aud=AUDIENCE[:-1]), key),
    }


# Every route that needs a token, with a body it would take.
TOKEN_ROUTES = {
    "post record": ("POST", "/v1/transactions", {"json": kaggle_example()}),
    "post batch": ("POST", "/v1/transactions/batch", {"json": [kaggle_example()]}),
    "read transaction": ("GET", f"/v1/transactions/{kaggle_example()['trans_num']}", {}),
    "list alerts": ("GET", "/v1/alerts", {}),
    "read alert": ("GET", f"/v1/alerts/{NO_ALERT}", {}),
    # An alert no one has: the route is reached (and charged) and changes nothing.
    "review alert": ("PATCH", f"/v1/alerts/{NO_ALERT}", {"json": {"status": "reviewed"}}),
}
FORGED = [
    "alg none",
    "alg None",
    "HS256 with the public key",
    "HS512 with the public key",
    "our kid, another key",
    "jku to the attacker's keys",
    "x5u to the attacker's keys",
    "embedded jwk",
    "jku with our kid",
    "no kid",
    "unknown kid",
    "kid path",
    "kid object",
    "signature stripped",
    "signature of another token",
    "no exp",
    "no iat",
    "no iss",
    "no sub",
    "no aud",
    "empty sub",
    "sub not a string",
    "expired",
    "exp not a number",
    "not yet valid",
    "issued in the future",
    "wrong issuer",
    "issuer prefix",
    "wrong audience",
    "audience list without ours",
    "audience substring",
]


@pytest.mark.parametrize("case", FORGED)
async def test_a_forged_or_misused_token_is_a_401_that_tells_nothing_and_fetches_nothing(
    api: httpx.AsyncClient,
    signing_key: SigningKey,
    attacker_keys: tuple[SigningKey, _KeyServer],
    aws: str,
    case: str,
) -> None:
    from cryptography.hazmat.primitives import serialization

    attacker, server = attacker_keys
    private = serialization.load_pem_private_key(signing_key.private_pem.encode(), None)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = _forged_tokens(signing_key, attacker, server.url, public_pem)
    assert set(forged) == set(FORGED)
    value = forged[case]
    for route, (method, path, kwargs) in TOKEN_ROUTES.items():
        answer = await api.request(method, path, headers=bearer(value), **kwargs)
        body = assert_problem(answer, 401)
        # The same answer whatever is wrong with the token: no reason, no claim, no key.
        assert body == {
            "type": "urn:cardstream:problem:unauthorized",
            "title": "Unauthorized",
            "status": 401,
            "detail": "a valid bearer token is required",
        }, route
        assert (
            answer.headers["www-authenticate"] == 'Bearer realm="cardstream", error="invalid_token"'
        )
        assert value not in answer.text
    assert server.requests == []
    assert stream_data(aws) == []


TOKEN_ELSEWHERE: dict[str, Callable[[str], dict[str, Any]]] = {
    "query access_token": lambda t: {"params": {"access_token": t}},
    "query token": lambda t: {"params": {"token": t}},
    "query id_token": lambda t: {"params": {"id_token": t}},
    "query authorization": lambda t: {"params": {"authorization": f"Bearer {t}"}},
    "dashboard cookie": lambda t: {"headers": {"Cookie": f"cardstream_dashboard={t}"}},
    "access_token cookie": lambda t: {"headers": {"Cookie": f"access_token={t}; token={t}"}},
    "other headers": lambda t: {"headers": {"X-Access-Token": t, "X-Amzn-Oidc-Accesstoken": t}},
    "no scheme": lambda t: {"headers": {"Authorization": t}},
    "no space": lambda t: {"headers": {"Authorization": f"Bearer{t}"}},
    "Token scheme": lambda t: {"headers": {"Authorization": f"Token {t}"}},
    "Basic scheme": lambda t: {"headers": {"Authorization": f"Basic {t}"}},
    "two tokens": lambda t: {"headers": {"Authorization": f"Bearer {t} {t}"}},
}


@pytest.mark.parametrize("where", list(TOKEN_ELSEWHERE))
async def test_a_token_anywhere_but_the_authorization_header_is_refused(
    api: httpx.AsyncClient, token: Callable[..., str], where: str
) -> None:
    value = token(*OPERATOR_SCOPES, names.SCOPE_WRITE, person="Olga")
    # A parameter named as a token's is refused as such (400); anything else is no token.
    in_url = where in {"query access_token", "query token", "query id_token"}
    for route, (method, path, kwargs) in TOKEN_ROUTES.items():
        answer = await api.request(method, path, **kwargs, **TOKEN_ELSEWHERE[where](value))
        assert_problem(answer, 400 if in_url else 401)
        assert value not in answer.text, route
    # The scheme is case-insensitive (RFC 7235 2.1): the same token in the header is good.
    assert (await api.get("/v1/alerts", headers={"Authorization": f"bearer {value}"})).is_success


@pytest.mark.parametrize("parameter", ["access_token", "token", "id_token", "Access_Token"])
async def test_a_token_in_the_url_is_refused_even_beside_a_good_header(
    api: httpx.AsyncClient, token: Callable[..., str], aws: str, parameter: str
) -> None:
    value = token(*OPERATOR_SCOPES, names.SCOPE_WRITE, person="Olga")
    for route, (method, path, kwargs) in TOKEN_ROUTES.items():
        answer = await api.request(
            method, path, headers=bearer(value), params={parameter: value}, **kwargs
        )
        body = assert_problem(answer, 400)
        assert body["type"] == "urn:cardstream:problem:token-in-url", route
        assert value not in answer.text, route
    # Nothing was written: the request was refused before it was read.
    assert stream_data(aws) == []


async def test_scopes_are_whole_words_of_the_token(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    for scope in (
        "transactions:read:x",
        "transactions:reader",
        "TRANSACTIONS:READ",
        "transactions:*",
        "*",
        "transactions:read,alerts:review",
    ):
        answer = await api.get("/v1/alerts", headers=bearer(token(scope)))
        assert_problem(answer, 403)
    listed = await api.get(
        "/v1/alerts", headers=bearer(token(subject=ALICE, scope=["x", names.SCOPE_READ]))
    )
    assert listed.status_code == 200


# --- API3: properties a caller must not set ----------------------------------------------------


MASS_ASSIGNED = {
    "client_id": BOB,
    "card_token": "0" * 64,
    "card_last4": "1111",
    "card_key_version": "v9",
    "received_at": "2020-01-01T00:00:00Z",
    "ingest_id": str(uuid.uuid4()),
    "schema_version": 9,
    "lineage": {"client_id": BOB},
    "s3_key": "raw/x",
}


async def test_a_record_cannot_set_what_the_api_decides(
    api: httpx.AsyncClient, token: Callable[..., str], aws: str
) -> None:
    writer = bearer(token(names.SCOPE_WRITE))
    for name, value in MASS_ASSIGNED.items():
        record = kaggle_example() | {"trans_num": f"mass-{name}", name: value}
        single = await api.post("/v1/transactions", json=record, headers=writer)
        body = assert_problem(single, 422)
        assert [e["field"] for e in body["errors"]] == [name]
        batch = await api.post("/v1/transactions/batch", json=[record], headers=writer)
        assert batch.json()["results"][0]["status"] == "rejected", batch.text
        ndjson = await api.post(
            "/v1/transactions/batch",
            content=json.dumps(record).encode(),
            headers=writer | {"Content-Type": "application/x-ndjson"},
        )
        assert ndjson.json()["results"][0]["status"] == "rejected"
    assert stream_data(aws) == []
    # A record that sets nothing it may not is stored with the token's client, always.
    accepted = await api.post("/v1/transactions", json=kaggle_example(), headers=writer)
    assert accepted.status_code == 202
    [stored] = [StreamEnvelope.model_validate_json(d) for d in stream_data(aws)]
    assert stored.client_id == ALICE


async def test_a_repeated_key_cannot_smuggle_a_value_past_the_checks(
    api: httpx.AsyncClient, tenants: dict[str, list[str]], token: Callable[..., str], aws: str
) -> None:
    writer = bearer(token(names.SCOPE_WRITE))
    base = json.dumps(kaggle_example())[1:-1]
    # Which value of a repeated key counts depends on the reader: the record is refused,
    # naming the key, whichever value would pass the checks.
    bodies = {
        "merchant": f'{{{base}, "merchant": "{PAN}"}}',
        "job": f'{{{base}, "job": "4111 1111 1111 1111"}}',
        "amt": f'{{"amt": "0.01", {base}}}',
        "client_id": f'{{{base}, "client_id": "{BOB}", "client_id": "{ALICE}"}}',
        "is_fraud": f'{{{base}, "is_fr\\u0061ud" : 1}}',
    }
    json_type = writer | JSON_TYPE
    for name, body in bodies.items():
        one = await api.post("/v1/transactions", content=body, headers=json_type)
        single = assert_problem(one, 422)
        batch = await api.post("/v1/transactions/batch", content=f"[{body}]", headers=json_type)
        ndjson = await api.post(
            "/v1/transactions/batch",
            content=body,
            headers=writer | {"Content-Type": "application/x-ndjson"},
        )
        for errors in (
            single["errors"],
            batch.json()["results"][0]["errors"],
            ndjson.json()["results"][0]["errors"],
        ):
            assert {"field": name, "message": "duplicate key", "type": "duplicate_key"} in errors
        for answer in (batch, ndjson):
            assert answer.json()["results"][0]["status"] == "rejected", name
        assert PAN not in ascii_digits(one.text + batch.text + ndjson.text)
    # A key written as a card number is named masked.
    repeated_card = f'{{{base}, "{PAN}": 1, "{PAN}": 2}}'
    answer = await api.post("/v1/transactions", content=repeated_card, headers=json_type)
    assert PAN not in ascii_digits(answer.text)
    assert "duplicate_key" in answer.text
    # A review naming its status twice changes nothing.
    reviewer = bearer(token(*OPERATOR_SCOPES, subject="operator-6", person="Rae Repeat"))
    alert = (await alert_ids(api, reviewer))[tenants[ALICE][1]]
    twice = '{"status": "dismissed", "note": "x", "status": "reviewed"}'
    review = await api.patch(f"/v1/alerts/{alert}", content=twice, headers=reviewer | JSON_TYPE)
    problem = assert_problem(review, 422)
    assert problem["errors"] == [
        {"field": "body.status", "message": "duplicate key", "type": "duplicate_key"}
    ]
    after = (await api.get(f"/v1/alerts/{alert}", headers=reviewer)).json()
    assert (after["status"], after["history"]) == ("open", [])
    assert stream_data(aws) == []


async def test_a_review_cannot_set_who_when_or_whose(
    api: httpx.AsyncClient, tenants: dict[str, list[str]], token: Callable[..., str]
) -> None:
    reviewer = bearer(token(*OPERATOR_SCOPES, subject="operator-2", person="Rita Reviewer"))
    alert = (await alert_ids(api, reviewer))[tenants[ALICE][1]]
    for name, value in {
        "status_changed_by": "someone-else",
        "status_changed_by_name": "Someone Else",
        "changed_by": "someone-else",
        "status_changed_at": "2000-01-01T00:00:00Z",
        "client_id": BOB,
        "alert_id": 1,
        "history": [],
        "severity": "low",
        "evidence": {},
    }.items():
        answer = await api.patch(
            f"/v1/alerts/{alert}", json={"status": "reviewed", name: value}, headers=reviewer
        )
        body = assert_problem(answer, 422)
        assert [e["field"] for e in body["errors"]] == [f"body.{name}"]
    after = (await api.get(f"/v1/alerts/{alert}", headers=reviewer)).json()
    assert (after["status"], after["history"]) == ("open", [])


async def test_answers_hold_no_card_token_or_key_version(
    api: httpx.AsyncClient, tenants: dict[str, list[str]], token: Callable[..., str]
) -> None:
    alice = bearer(token(names.SCOPE_READ))
    listed = await api.get("/v1/alerts", headers=alice)
    one = await api.get(f"/v1/alerts/{listed.json()['items'][0]['alert_id']}", headers=alice)
    for text in (listed.text, one.text):
        assert "card_token" not in text
        assert "key_version" not in text


# --- API4: malformed bodies on every route that takes one -------------------------------------

BODY_ROUTES = {
    "record": ("POST", "/v1/transactions", "application/json"),
    "json batch": ("POST", "/v1/transactions/batch", "application/json"),
    "ndjson batch": ("POST", "/v1/transactions/batch", "application/x-ndjson"),
    "csv batch": ("POST", "/v1/transactions/batch", "text/csv"),
    "review": ("PATCH", f"/v1/alerts/{NO_ALERT}", "application/json"),
}
# The field each route's malformed-field cases put their value in.
FIELD = {"review": "note"}
LIMIT = {"record": 64 * 1024, "review": 16 * 1024}
REVIEW = '{"status": "reviewed", "note": "checked with the merchant"}'


def _record_text(route: str, **raw: str) -> str:
    """A valid body of ``route`` as JSON text, with ``raw`` JSON text as some values."""
    if route == "review":
        fields = {"status": '"reviewed"', "note": '"checked"'}
    else:
        fields = {k: json.dumps(v) for k, v in kaggle_example().items()}
    fields |= raw
    return "{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in fields.items()) + "}"


def _csv(**cells: str) -> str:
    row = {k: str(v) for k, v in kaggle_example().items()} | cells
    return ",".join(row) + "\n" + ",".join(f'"{v}"' for v in row.values()) + "\n"


def _framed(route: str, obj: str) -> str:
    """``obj`` (one JSON object's text) as the body ``route`` takes."""
    return {"json batch": f"[{obj}]", "ndjson batch": f"{obj}\n"}.get(route, obj)


def _body_with(route: str, field_text: str, csv_cell: str | None = None) -> bytes:
    """A valid body of ``route`` whose field (``merchant``, a review's ``note``) holds
    ``field_text`` (JSON text); in a CSV, ``csv_cell`` (plain text)."""
    if route == "csv batch":
        return _csv(merchant=field_text if csv_cell is None else csv_cell).encode()
    return _framed(
        route, _record_text(route, **{FIELD.get(route, "merchant"): field_text})
    ).encode()


def _valid(route: str) -> bytes:
    if route == "csv batch":
        return _csv().encode()
    return _framed(route, _record_text(route)).encode()


# A whole-body problem: the body as a whole is refused with one of these statuses.
WHOLE = "whole"
# A field-level problem: 422 naming the field (a batch: 200, the record rejected naming it).
FIELD_LEVEL = "field"


def _malformed(route: str, case: str) -> tuple[bytes, dict[str, str]] | None:
    """The body and headers of ``case`` for ``route``; None where the case has no meaning
    (:data:`NOT_MEANINGFUL`)."""
    kind = BODY_ROUTES[route][2]
    is_csv = route == "csv batch"
    nested = "[" * 5_000 + "]" * 5_000
    # Made only when asked: a gzip bomb and an oversize body are megabytes.
    bodies: dict[str, Callable[[], tuple[bytes, dict[str, str]] | None]] = {
        "deep nesting": lambda: None if is_csv else (_framed(route, nested).encode(), {}),
        "deep nesting in a field": lambda: None if is_csv else (_body_with(route, nested), {}),
        "deep object nesting": lambda: (
            None if is_csv else (('{"a":' * 5_000 + "1" + "}" * 5_000).encode(), {})
        ),
        "invalid UTF-8": lambda: (_valid(route).replace(b"e", b"\xff\xfe", 1), {}),
        "overlong UTF-8": lambda: (_valid(route).replace(b"e", b"\xc0\xaf", 1), {}),
        "lone surrogate escape": lambda: None if is_csv else (_body_with(route, '"\\ud800x"'), {}),
        "UTF-16 with BOM": lambda: (
            codecs.BOM_UTF16_LE + _valid(route).decode().encode("utf-16-le"),
            {},
        ),
        "UTF-32": lambda: (_valid(route).decode().encode("utf-32"), {}),
        "charset UTF-16 declared": lambda: (
            _valid(route).decode().encode("utf-16"),
            {"Content-Type": f"{kind}; charset=utf-16"},
        ),
        "raw NUL byte": lambda: (_valid(route).replace(b"e", b"\x00", 1), {}),
        "escaped NUL in a field": lambda: (_body_with(route, '"a\\u0000b"', "a\0b"), {}),
        "truncated": lambda: (_valid(route)[: len(_valid(route)) // 2], {}),
        "truncated after a record": lambda: (
            None if route in ("record", "review") else (_valid(route) + _valid(route)[:40], {})
        ),
        "empty": lambda: (b"", {}),
        "whitespace only": lambda: (b" \n\t ", {}),
        "wrong content type": lambda: (_valid(route), {"Content-Type": "text/plain"}),
        "no content type": lambda: (_valid(route), {"Content-Type": ""}),
        "form content type": lambda: (
            _valid(route),
            {"Content-Type": "application/x-www-form-urlencoded"},
        ),
        "multipart": lambda: (_valid(route), {"Content-Type": "multipart/form-data; boundary=x"}),
        "CSV labelled JSON": lambda: (_csv().encode(), {"Content-Type": "application/json"}),
        "JSON labelled CSV": lambda: (
            _framed(route, _record_text("record")).encode(),
            {"Content-Type": "text/csv"},
        ),
        "huge exponent": lambda: (
            _csv(amt="1e999999").encode() if is_csv else _body_with(route, "1e999999"),
            {},
        ),
        "huge integer": lambda: (
            _csv(amt="9" * 5_000).encode() if is_csv else _body_with(route, "9" * 5_000),
            {},
        ),
        "NaN": lambda: None if is_csv else (_body_with(route, "NaN"), {}),
        "Infinity": lambda: None if is_csv else (_body_with(route, "-Infinity"), {}),
        "giant string": lambda: (
            _body_with(route, json.dumps("x" * 12_000), "x" * 12_000),
            {},
        ),
        "gzip": lambda: (gzip.compress(_valid(route)), {"Content-Encoding": "gzip"}),
        "deflate": lambda: (zlib.compress(_valid(route)), {"Content-Encoding": "deflate"}),
        "gzip bomb": lambda: (
            gzip.compress(b"[" + b" " * 10_000_000 + b"]", compresslevel=1),
            {"Content-Encoding": "gzip"},
        ),
        "Content-Length not a number": lambda: (_valid(route), {"Content-Length": "12abc"}),
        "negative Content-Length": lambda: (_valid(route), {"Content-Length": "-1"}),
        "oversize": lambda: (
            _valid(route) + b" " * LIMIT.get(route, 8 * 1024 * 1024),
            {},
        ),
    }
    found = bodies[case]()
    if found is None:
        return None
    body, headers = found
    return body, {"Content-Type": kind} | headers


# A CSV has no nesting and no JSON numbers; a single record or review has no second record.
NOT_MEANINGFUL = {
    *(
        ("csv batch", case)
        for case in (
            "deep nesting",
            "deep nesting in a field",
            "deep object nesting",
            "lone surrogate escape",
            "NaN",
            "Infinity",
        )
    ),
    ("record", "truncated after a record"),
    ("review", "truncated after a record"),
}


# What a case's answer must be. WHOLE: the body is refused as a whole (4xx problem); a
# batch may instead answer 200 rejecting each unreadable record. FIELD: the value reaches
# validation, which names the field (422; a batch: 200, the record rejected naming it).
MALFORMED: dict[str, str] = {
    "deep nesting": WHOLE,
    "deep nesting in a field": WHOLE,
    "deep object nesting": WHOLE,
    "invalid UTF-8": WHOLE,
    "overlong UTF-8": WHOLE,
    "lone surrogate escape": WHOLE,
    "UTF-16 with BOM": WHOLE,
    "UTF-32": WHOLE,
    "charset UTF-16 declared": WHOLE,
    "raw NUL byte": WHOLE,
    "escaped NUL in a field": FIELD_LEVEL,
    "truncated": WHOLE,
    "truncated after a record": WHOLE,
    "empty": WHOLE,
    "whitespace only": WHOLE,
    "wrong content type": WHOLE,
    "no content type": WHOLE,
    "form content type": WHOLE,
    "multipart": WHOLE,
    "CSV labelled JSON": WHOLE,
    "JSON labelled CSV": WHOLE,
    "huge exponent": WHOLE,
    "huge integer": WHOLE,
    "NaN": WHOLE,
    "Infinity": WHOLE,
    "giant string": FIELD_LEVEL,
    "gzip": WHOLE,
    "deflate": WHOLE,
    "gzip bomb": WHOLE,
    "Content-Length not a number": WHOLE,
    "negative Content-Length": WHOLE,
    "oversize": WHOLE,
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_malformed_body_is_a_4xx_problem_never_a_5xx_or_a_hang(
    api: httpx.AsyncClient, token: Callable[..., str], aws: str, case: str
) -> None:
    writer = token(names.SCOPE_WRITE)
    reviewer = token(names.SCOPE_ALERTS_REVIEW, person="Rita")
    for route, (method, path, _) in BODY_ROUTES.items():
        if (route, case) in NOT_MEANINGFUL:
            continue
        made = _malformed(route, case)
        assert made is not None
        body, headers = made
        caller = reviewer if route == "review" else writer
        headers = {k: v for k, v in headers.items() if v}
        answer = await asyncio.wait_for(
            api.request(method, path, content=body, headers=bearer(caller) | headers),
            timeout=120,
        )
        _check_refused(route, case, answer)
    assert stream_data(aws) == [] or case == "truncated after a record"


def _check_refused(route: str, case: str, answer: httpx.Response) -> None:
    """``answer`` refuses ``case``'s body of ``route`` as :data:`MALFORMED` says."""
    field = FIELD.get(route, "merchant")
    where = (route, answer.status_code, answer.text[:300])
    if route.endswith("batch") and answer.status_code == 200:
        # A batch answers per record: no record of the case is accepted, each rejection
        # says why, and names the field when the value reached validation.
        results = answer.json()["results"]
        if case == "truncated after a record":
            assert [r["status"] for r in results] == ["accepted", "rejected"], where
            results = results[1:]
        for result in results:
            assert result["status"] == "rejected", where
            assert all(e["message"] and e["type"] for e in result["errors"]), where
            if MALFORMED[case] == FIELD_LEVEL:
                assert field in [e["field"] for e in result["errors"]], where
        return
    assert 400 <= answer.status_code < 500, where
    # A review's body is refused before the alert is looked up.
    assert answer.status_code != 404, where
    problem = assert_problem(answer, answer.status_code)
    assert problem["detail"], where
    if MALFORMED[case] == FIELD_LEVEL:
        assert answer.status_code == 422, where
        named = [e["field"] for e in problem["errors"]]
        assert named == [f"body.{field}" if route == "review" else field], where


async def test_review_bodies_are_bounded_before_they_are_parsed(
    api: httpx.AsyncClient, tenants: dict[str, list[str]], token: Callable[..., str]
) -> None:
    reviewer = bearer(token(*OPERATOR_SCOPES, subject="operator-3", person="Bo Bounds"))
    alert = (await alert_ids(api, reviewer))[tenants[ALICE][2]]
    url = f"/v1/alerts/{alert}"
    json_type = {"Content-Type": "application/json"}
    huge_note = json.dumps({"status": "reviewed", "note": "x" * 10_000_000}).encode()
    assert_problem(await api.patch(url, content=huge_note, headers=reviewer | json_type), 413)
    many_fields = {"status": "reviewed", **{f"f{i}": 0 for i in range(1_000)}}
    answer = await api.patch(url, json=many_fields, headers=reviewer)
    body = assert_problem(answer, 422)
    # Errors name a few fields and count the rest: no answer amplifies a request.
    assert len(answer.content) < 2_000, len(answer.content)
    assert body["errors"][-1] == {
        "field": None,
        "message": "and 990 more errors",
        "type": "too_many_errors",
    }
    after = (await api.get(url, headers=reviewer)).json()
    assert after["status"] == "open"


async def test_page_sizes_cursors_and_times_outside_their_range_are_refused(
    api: httpx.AsyncClient, token: Callable[..., str]
) -> None:
    operator = bearer(token(*OPERATOR_SCOPES, subject="operator-1", person="Olga"))
    for params in (
        {"limit": 0},
        {"limit": -1},
        {"limit": 501},
        {"limit": 10**30},
        {"limit": "1e3"},
        {"limit": "NaN"},
        {"cursor": 0},
        {"cursor": -5},
        {"cursor": 2**63},
        {"since": "9999-12-31T23:59:59-23:59"},
        {"since": "0001-01-01T00:00:00+23:59"},
        {"since": "not a time"},
        {"status": "closed"},
        {"severity": "critical"},
        {"rule": "x" * 100},
        {"rule": "card_testing' OR '1'='1"},
    ):
        body = assert_problem(await api.get("/v1/alerts", params=params, headers=operator), 422)
        assert body["errors"], params
    assert (await api.get("/v1/alerts", params={"limit": 500}, headers=operator)).is_success


@pytest.mark.parametrize("route", list(TOKEN_ROUTES))
async def test_every_route_is_rate_limited_per_caller_with_retry_after(
    aws: str,
    jwks_url: str,
    module_database: str,
    tenants: dict[str, list[str]],
    token: Callable[..., str],
    route: str,
) -> None:
    method, path, kwargs = TOKEN_ROUTES[route]
    # Two merchants at a rate that refills nothing during the test.
    register(aws, "busy-1", "calm-2", records_per_second=0.001, burst=3)
    scopes = (names.SCOPE_READ, names.SCOPE_WRITE, names.SCOPE_ALERTS_REVIEW)
    caller = token(*scopes, subject="busy-1", person="Busy B")
    other = token(*scopes, subject="calm-2", person="Calm C")
    async with running_api(
        aws,
        jwks_url,
        module_database,
        max_records_per_request=1,
        alerts_rate_limit_burst=3,
        alerts_rate_limit_per_s=0.001,
    ) as api:
        served = [
            await api.request(method, path, headers=bearer(caller), **kwargs) for _ in range(3)
        ]
        refused = await api.request(method, path, headers=bearer(caller), **kwargs)
        unaffected = await api.request(method, path, headers=bearer(other), **kwargs)
    assert [a.status_code for a in served if a.status_code == 429] == [], route
    assert unaffected.status_code != 429
    assert_problem(refused, 429)
    assert int(refused.headers["retry-after"]) >= 1


# The alert routes check a request in this order: a token in the URL (400), the token (401,
# 403), the caller's rate (429), the body's size and type (413, 415), then what the body and
# parameters say (422). A request of each alert route refused for what it says, once read:
JSON_TYPE = {"Content-Type": "application/json"}
UNREADABLE: dict[str, tuple[str, str, dict[str, Any]]] = {
    "list alerts": ("GET", "/v1/alerts", {"params": {"limit": 0}}),
    "read alert": ("GET", "/v1/alerts/0", {}),
    "review alert": ("PATCH", f"/v1/alerts/{NO_ALERT}", {"content": b'{"status": "reviewed", '}),
}


async def test_an_unauthenticated_alert_request_is_a_401_whatever_it_says(
    api: httpx.AsyncClient,
) -> None:
    for route, (method, path, kwargs) in UNREADABLE.items():
        for headers in ({}, bearer("not-a-jwt")):
            answer = await api.request(method, path, headers=headers | JSON_TYPE, **kwargs)
            assert_problem(answer, 401)
            assert answer.headers["www-authenticate"].startswith("Bearer"), route


async def test_a_caller_past_its_alert_rate_is_refused_before_its_request_is_read(
    aws: str, jwks_url: str, module_database: str, token: Callable[..., str]
) -> None:
    caller = bearer(token(*OPERATOR_SCOPES, subject="hasty-1", person="Hal Hasty")) | JSON_TYPE
    other = bearer(token(*OPERATOR_SCOPES, subject="calm-2", person="Cal Calm"))
    review = f"/v1/alerts/{NO_ALERT}"
    pulled: list[bytes] = []

    async def endless_body() -> AsyncIterator[bytes]:
        pulled.append(b"{")
        yield b'{"status": '
        # Never released: a request whose body is read never ends.
        await asyncio.Event().wait()

    async with running_api(
        aws,
        jwks_url,
        module_database,
        alerts_rate_limit_burst=len(UNREADABLE),
        alerts_rate_limit_per_s=0.001,
    ) as api:
        # A request refused for what it says costs its caller a token like any other:
        # these spend the whole burst.
        for method, path, kwargs in UNREADABLE.values():
            assert_problem(await api.request(method, path, headers=caller, **kwargs), 422)
        past = {
            route: await api.request(method, path, headers=caller, **kwargs)
            for route, (method, path, kwargs) in UNREADABLE.items()
        }
        past["valid list"] = await api.get("/v1/alerts", headers=caller)
        # Bodies that would be refused for their size (413) and coding (415).
        past["oversize"] = await api.patch(review, content=b" " * 100_000, headers=caller)
        past["gzip"] = await api.patch(
            review,
            content=gzip.compress(b'{"status": "reviewed"}'),
            headers=caller | {"Content-Encoding": "gzip"},
        )
        # A body that never ends: answered all the same, without a byte of it read.
        past["endless"] = await asyncio.wait_for(
            api.patch(review, content=endless_body(), headers=caller), timeout=120
        )
        unaffected = await api.get("/v1/alerts", headers=other)
    for route, answer in past.items():
        body = assert_problem(answer, 429)
        assert body["type"] == "urn:cardstream:problem:rate-limited", route
        assert int(answer.headers["retry-after"]) >= 1, route
    assert pulled == []
    assert unaffected.status_code == 200


# Each error an alert route answers, as (route, status): the request that provokes it.
ALERT_OPERATIONS = {
    "list alerts": ("get", "/v1/alerts"),
    "read alert": ("get", "/v1/alerts/{alert_id}"),
    "review alert": ("patch", "/v1/alerts/{alert_id}"),
}


def _alert_error_requests(
    own_alert: int, caller: dict[str, str], writer: dict[str, str]
) -> dict[tuple[str, int], tuple[str, str, dict[str, Any]]]:
    one = f"/v1/alerts/{own_alert}"
    review = {"json": {"status": "reviewed"}}
    requests: dict[tuple[str, int], tuple[str, str, dict[str, Any]]] = {}
    for route, url, body in (
        ("list alerts", "/v1/alerts", {}),
        ("read alert", one, {}),
        ("review alert", one, review),
    ):
        method = ALERT_OPERATIONS[route][0].upper()
        requests[route, 400] = (method, url, body | {"params": {"token": "x"}, "headers": caller})
        requests[route, 401] = (method, url, body)
        requests[route, 403] = (method, url, body | {"headers": writer})
    requests["list alerts", 422] = (
        "GET",
        "/v1/alerts",
        {"params": {"limit": 0}, "headers": caller},
    )
    requests["read alert", 404] = ("GET", f"/v1/alerts/{NO_ALERT}", {"headers": caller})
    requests["read alert", 422] = ("GET", "/v1/alerts/0", {"headers": caller})
    patch = {"headers": caller | JSON_TYPE}
    requests["review alert", 404] = ("PATCH", f"/v1/alerts/{NO_ALERT}", review | patch)
    # An open alert cannot be opened again.
    requests["review alert", 409] = ("PATCH", one, {"json": {"status": "open"}} | patch)
    requests["review alert", 413] = ("PATCH", one, {"content": b" " * 100_000} | patch)
    requests["review alert", 415] = (
        "PATCH",
        one,
        {"content": b'{"status": "reviewed"}', "headers": caller | {"Content-Type": "text/plain"}},
    )
    requests["review alert", 422] = ("PATCH", one, {"json": {"status": "closed"}} | patch)
    return requests


def _assert_declared_problem(
    schema: dict[str, Any], route: str, status: int, answer: httpx.Response
) -> None:
    """``answer`` is a problem document in the project's shape, and the route's OpenAPI
    operation declares ``status`` as one."""
    body = assert_problem(answer, status)
    assert body["title"], (route, body)
    assert body["detail"], (route, body)
    if status == 422:
        assert body["errors"], (route, body)
        for error in body["errors"]:
            assert set(error) == {"field", "message", "type"}, (route, error)
    if status == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer"), route
    if status in (429, 503):
        assert int(answer.headers["retry-after"]) >= 1, route
    method, path = ALERT_OPERATIONS[route]
    declared = schema["paths"][path][method]["responses"]
    assert str(status) in declared, (route, status)
    assert declared[str(status)]["content"] == {
        PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}
    }, (route, status)


async def test_every_error_of_every_alert_route_is_a_problem_document_openapi_declares(
    aws: str,
    jwks_url: str,
    module_database: str,
    tenants: dict[str, list[str]],
    token: Callable[..., str],
) -> None:
    operator = bearer(token(*OPERATOR_SCOPES, subject="operator-9", person="Pru Problem"))
    writer = bearer(token(names.SCOPE_WRITE))
    async with running_api(aws, jwks_url, module_database) as api:
        schema = (await api.get("/openapi.json")).json()
        own_alert = (await alert_ids(api, operator))[tenants[ALICE][1]]
        requests = _alert_error_requests(own_alert, operator, writer)
        answers = {
            key: await api.request(method, url, **kwargs)
            for key, (method, url, kwargs) in requests.items()
        }
        answers["review alert", 400] = await api.patch(
            f"/v1/alerts/{own_alert}",
            content=b'{"status": "reviewed", "note": "\xff"}',
            headers=operator | JSON_TYPE,
        )
        # Methods no alert route has.
        not_allowed = [
            await api.put(f"/v1/alerts/{own_alert}", headers=operator),
            await api.post("/v1/alerts", headers=operator),
        ]
        assert (await api.get(f"/v1/alerts/{own_alert}", headers=operator)).json()["history"] == []
    async with running_api(
        aws, jwks_url, module_database, alerts_rate_limit_burst=1, alerts_rate_limit_per_s=0.001
    ) as api:
        for route, (method, path) in ALERT_OPERATIONS.items():
            url = path.format(alert_id=NO_ALERT)
            review = {"json": {"status": "reviewed"}} if method == "patch" else {}
            caller = bearer(token(*OPERATOR_SCOPES, subject=f"spender-{method}{path}", person="S"))
            await api.request(method, url, headers=caller, **review)
            answers[route, 429] = await api.request(method, url, headers=caller, **review)
    # A database that does not answer.
    nowhere = f"postgresql://nobody@127.0.0.1:{_closed_port()}/nothing"
    async with running_api(aws, jwks_url, nowhere) as api:
        for route, (method, path) in ALERT_OPERATIONS.items():
            url = path.format(alert_id=NO_ALERT)
            review = {"json": {"status": "reviewed"}} if method == "patch" else {}
            answers[route, 503] = await api.request(method, url, headers=operator, **review)
    for (route, status), answer in answers.items():
        _assert_declared_problem(schema, route, status, answer)
    for answer in not_allowed:
        assert_problem(answer, 405)
    # Every error an alert operation declares is a problem document, and none is left out.
    for route, (method, path) in ALERT_OPERATIONS.items():
        responses = schema["paths"][path][method]["responses"]
        errors = {int(status) for status in responses if not status.startswith("2")}
        assert errors == {status for r, status in answers if r == route}, route


def _closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- API5: function-level authorization ------------------------------------------------------


async def test_each_route_with_each_kind_of_token(
    api: httpx.AsyncClient, tenants: dict[str, list[str]], token: Callable[..., str]
) -> None:
    operator = token(*OPERATOR_SCOPES, subject="operator-1", person="Olga")
    ids = await alert_ids(api, bearer(operator))
    own_alert = ids[tenants[ALICE][3]]
    own_trans = tenants[ALICE][3]
    callers = {
        "none": None,
        "no scope": token(),
        "writer": token(names.SCOPE_WRITE),
        "reader": token(names.SCOPE_READ),
        "tenants:all alone": token(names.SCOPE_ALL_TENANTS, person="Olga"),
        "review alone (person)": token(names.SCOPE_ALERTS_REVIEW, person="Alice A"),
        "reader and review (client)": token(names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW),
        "reader and review (person)": token(
            names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW, person="Alice A"
        ),
        "operator (client)": token(*OPERATOR_SCOPES, subject="batch-job"),
        "operator (person)": operator,
    }
    routes = {
        "post one": ("POST", "/v1/transactions", {"json": {"trans_num": "x"}}),
        "post batch": ("POST", "/v1/transactions/batch", {"json": [{"trans_num": "x"}]}),
        "read one": ("GET", f"/v1/transactions/{own_trans}", {}),
        "list alerts": ("GET", "/v1/alerts", {}),
        "read alert": ("GET", f"/v1/alerts/{own_alert}", {}),
        # A transition an open alert refuses (409) shows the call got through, changing nothing.
        "review": ("PATCH", f"/v1/alerts/{own_alert}", {"json": {"status": "open"}}),
    }
    allowed = {
        "post one": {"writer": 422},
        "post batch": {"writer": 200},
        "read one": dict.fromkeys(
            [
                "reader",
                "reader and review (client)",
                "reader and review (person)",
                "operator (client)",
                "operator (person)",
            ],
            200,
        ),
        "list alerts": dict.fromkeys(
            [
                "reader",
                "reader and review (client)",
                "reader and review (person)",
                "operator (client)",
                "operator (person)",
            ],
            200,
        ),
        "read alert": dict.fromkeys(
            [
                "reader",
                "reader and review (client)",
                "reader and review (person)",
                "operator (client)",
                "operator (person)",
            ],
            200,
        ),
        # Reviewing needs alerts:review and a person, not transactions:read.
        "review": {
            "review alone (person)": 409,
            "reader and review (person)": 409,
            "operator (person)": 409,
        },
    }
    seen: dict[tuple[str, str], int] = {}
    for route, (method, path, kwargs) in routes.items():
        for caller, value in callers.items():
            headers = bearer(value) if value else {}
            answer = await api.request(method, path, headers=headers, **kwargs)
            seen[route, caller] = answer.status_code
            if answer.status_code >= 400:
                assert answer.headers["content-type"] == PROBLEM
    expected = {
        (route, caller): allowed[route].get(caller, 401 if caller == "none" else 403)
        for route in routes
        for caller in callers
    }
    # The transaction was loaded (the burst), so a reader of its tenant reads it.
    assert seen == expected


async def test_methods_and_overrides_reach_no_other_function(
    api: httpx.AsyncClient, tenants: dict[str, list[str]], token: Callable[..., str]
) -> None:
    reader = bearer(token(names.SCOPE_READ))
    operator = bearer(token(*OPERATOR_SCOPES, subject="operator-1", person="Olga"))
    alert = (await alert_ids(api, operator))[tenants[ALICE][0]]
    for method in ("PUT", "DELETE", "TRACE", "CONNECT", "PROPFIND", "POST"):
        answer = await api.request(method, f"/v1/alerts/{alert}", headers=reader)
        assert_problem(answer, 405)
    for override in ("X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"):
        answer = await api.get(
            f"/v1/alerts/{alert}",
            headers=reader | {override: "PATCH"},
            params={"_method": "PATCH", "status": "dismissed"},
        )
        assert answer.status_code == 200
    assert (await api.get(f"/v1/alerts/{alert}", headers=operator)).json()["status"] == "open"


# --- card numbers anywhere a caller writes text (PCI DSS 3.3-3.5, API8) -------------------------


def _digits_in(zero: str, pan: str) -> str:
    return "".join(chr(ord(zero) + int(d)) for d in pan)


# A card number as people and systems write it (the detector's forms).
CARD = luhn_completed("455673758689985")
CARD_FORMS: dict[str, str] = {
    "plain": CARD,
    "spaces": " ".join(CARD[i : i + 4] for i in range(0, 16, 4)),
    "several spaces": "   ".join(CARD[i : i + 4] for i in range(0, 16, 4)),
    "dots": ".".join(CARD[i : i + 4] for i in range(0, 16, 4)),
    "dashes": "-".join(CARD[i : i + 4] for i in range(0, 16, 4)),
    "slashes": "/".join(CARD[i : i + 4] for i in range(0, 16, 4)),
    "underscores": "_".join(CARD[i : i + 4] for i in range(0, 16, 4)),
    "non-breaking spaces": "\u00a0".join(CARD[i : i + 4] for i in range(0, 16, 4)),
    "tabs": "\t".join(CARD[i : i + 4] for i in range(0, 16, 4)),
    "zero-width spaces": "\u200b".join(CARD),
    "full-width digits": _digits_in("\uff10", CARD),
    "Arabic-Indic digits": _digits_in("\u0660", CARD),
    "Devanagari digits": _digits_in("\u0966", CARD),
    "mixed scripts and separators": _digits_in("\uff10", CARD[:8]) + " - " + CARD[8:],
    "inside words": f"see card {CARD} exp 12/29",
}
# Every field of a record but cc_num (where a card number belongs).
RECORD_FIELDS = [name for name in KAGGLE_FIELDS if name != "cc_num"]


@pytest.mark.parametrize("form", list(CARD_FORMS))
async def test_a_card_number_in_any_field_is_refused_naming_the_field_never_echoing_it(
    api: httpx.AsyncClient,
    tenants: dict[str, list[str]],
    token: Callable[..., str],
    aws: str,
    form: str,
) -> None:
    text = CARD_FORMS[form]
    writer = bearer(token(names.SCOPE_WRITE))
    for field in RECORD_FIELDS:
        record = kaggle_example() | {field: text}
        single = await api.post("/v1/transactions", json=record, headers=writer)
        problem = assert_problem(single, 422)
        assert [e["field"] for e in problem["errors"]] == [field], (field, problem)
        batch = await api.post("/v1/transactions/batch", json=[record], headers=writer)
        [result] = batch.json()["results"]
        assert result["status"] == "rejected"
        assert [e["field"] for e in result["errors"]] == [field], (field, result)
        rows = io.StringIO()
        csv.DictWriter(rows, fieldnames=list(record)).writeheader()
        csv.DictWriter(rows, fieldnames=list(record)).writerow(record)
        from_csv = await api.post(
            "/v1/transactions/batch",
            content=rows.getvalue().encode(),
            headers=writer | {"Content-Type": "text/csv"},
        )
        [result] = from_csv.json()["results"]
        assert [e["field"] for e in result["errors"]] == [field], (field, result)
        for answer in (single, batch, from_csv):
            assert CARD not in ascii_digits(answer.text), (field, answer.text)
    # A review's note, the one free text of the alert routes.
    reviewer = bearer(token(*OPERATOR_SCOPES, subject="operator-5", person="Nora Note"))
    alert = (await alert_ids(api, reviewer))[tenants[ALICE][0]]
    noted = await api.patch(
        f"/v1/alerts/{alert}", json={"status": "reviewed", "note": text}, headers=reviewer
    )
    problem = assert_problem(noted, 422)
    assert [e["field"] for e in problem["errors"]] == ["body.note"]
    assert CARD not in ascii_digits(noted.text)
    assert (await api.get(f"/v1/alerts/{alert}", headers=reviewer)).json()["status"] == "open"
    assert stream_data(aws) == []


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(card=written_card_numbers, where=st.sampled_from(["key", "value", "query", "path"]))
async def test_a_card_number_sent_outside_the_records_is_never_echoed(
    api: httpx.AsyncClient,
    tenants: dict[str, list[str]],
    token: Callable[..., str],
    card: tuple[str, str],
    where: str,
) -> None:
    pan, text = card
    reviewer = bearer(token(*OPERATOR_SCOPES, subject="operator-4", person="Pat Pan"))
    answers: list[httpx.Response] = []
    if where == "key":
        answers.append(
            await api.patch(
                f"/v1/alerts/{NO_ALERT}", json={"status": "reviewed", text: 1}, headers=reviewer
            )
        )
        answers.append(
            await api.post(
                "/v1/transactions",
                json=kaggle_example() | {text: "1"},
                headers=bearer(token(names.SCOPE_WRITE)),
            )
        )
    elif where == "value":
        for body in ({"status": text}, {"status": "reviewed", "note": text}, [text], text):
            answers.append(await api.patch(f"/v1/alerts/{NO_ALERT}", json=body, headers=reviewer))
    elif where == "query":
        for name in ("rule", "status", "severity", "since", "cursor", "limit", text):
            answers.append(await api.get("/v1/alerts", params={name: text}, headers=reviewer))
    else:
        written = quote(text, safe="")
        for path in (f"/v1/alerts/{written}", f"/v1/transactions/{written}", f"/v1/{written}"):
            answers.append(await api.get(path, headers=reviewer))
    for answer in answers:
        assert answer.status_code < 500, answer.text
        assert pan not in ascii_digits(answer.text), (where, answer.text)


async def test_no_answer_of_the_api_is_a_server_error_on_a_database_it_cannot_parse(
    api: httpx.AsyncClient, token: Callable[..., str], module_database: str
) -> None:
    # Inputs the database would refuse are refused before they reach it (no 503 for a
    # client's mistake): times outside PostgreSQL's range, ids outside bigint.
    operator = bearer(token(*OPERATOR_SCOPES, subject="operator-1", person="Olga"))
    with psycopg.connect(module_database) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    for since in ("294277-01-01T00:00:00Z", "-4714-01-01T00:00:00Z", "2019-02-30T00:00:00Z"):
        answer = await api.get("/v1/alerts", params={"since": since}, headers=operator)
        assert_problem(answer, 422)

"""``/v1/alerts`` in ingest-api, in process, against moto and a real migrated database.

Alerts are raised the real way (rows loaded by the loader's load path with the rule
monitor as its hook); the API reads and updates them as the api role. Covers scopes (401
and 403), listing filters and paging, tenant scoping for two merchants (another tenant's
alert answers like a missing one; evidence without the other merchant's transactions and
amounts; operators with ``tenants:all`` see all), reviews by people only, status
transitions with their audit trail (subject and name), refused transitions (409), unknown
alerts (404) and the per-caller rate limit (429).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import boto3
import httpx
import pytest
from card_number_forms import ascii_digits, written_card_numbers
from card_testing_bursts import load, load_burst, probe
from hypothesis import HealthCheck, given, settings
from merchant_entries import OPERATORS_CLIENT, register

from cardstream_shared import resource_names as names
from cardstream_shared.jwt_auth import SigningKey, generate_signing_key, issue_token
from cardstream_shared.pan import PanKeyring
from ingest_api.app import create_app
from ingest_api.settings import IngestSettings

pytestmark = pytest.mark.functional

ISSUER = "cardstream-local"
AUDIENCE = "cardstream"


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return generate_signing_key("alerts-test-key")


@pytest.fixture(scope="module")
def jwks_url(tmp_path_factory: pytest.TempPathFactory, signing_key: SigningKey) -> str:
    path = tmp_path_factory.mktemp("alerts-jwks") / "jwks.json"
    path.write_text(json.dumps(signing_key.jwks))
    return f"file://{path}"


@pytest.fixture
def token(signing_key: SigningKey) -> Callable[..., str]:
    def make(
        *scopes: str,
        subject: str = "merchant-1",
        name: str | None = None,
        client: str | None = None,
    ) -> str:
        claims = {}
        if name:
            # A person's token carries the username (Cognito user pools do the same).
            claims["username"] = name
        if names.SCOPE_ALL_TENANTS in scopes:
            # Operators sign in through the operators' client.
            claims["client_id"] = OPERATORS_CLIENT
        if client is not None:
            claims["client_id"] = client
        return issue_token(
            signing_key,
            issuer=ISSUER,
            audience=AUDIENCE,
            subject=subject,
            scopes=scopes,
            extra_claims=claims,
        )

    return make


OPERATOR = (names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW, names.SCOPE_ALL_TENANTS)


@pytest.fixture
def aws(moto_reset: str) -> str:
    secrets_client = boto3.client(
        "secretsmanager", endpoint_url=moto_reset, region_name="us-east-1"
    )
    secrets_client.create_secret(
        Name=names.PAN_KEY_SECRET, SecretString=PanKeyring.new_secret_string()
    )
    register(moto_reset, "merchant-1", "merchant-2", "merchant-3")
    return moto_reset


@asynccontextmanager
async def running_api(
    aws: str, jwks_url: str, database_url: str, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    settings = IngestSettings(
        environment="test",
        aws_endpoint_url=aws,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        jwks_url=jwks_url,
        database_secret_id=None,
        # Superuser login switched to the api role at connect: exactly the api's grants.
        database_url=f"{database_url}?role={names.DB_API_ROLE}",
        operator_client_ids=OPERATORS_CLIENT,
        **overrides,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4444))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def test_alert_endpoints_refuse_missing_and_insufficient_tokens(
    aws: str, jwks_url: str, module_database: str, token: Callable[..., str]
) -> None:
    writer = bearer(token(names.SCOPE_WRITE))
    reader = bearer(token(names.SCOPE_READ))
    async with running_api(aws, jwks_url, module_database) as api:
        assert (await api.get("/v1/alerts")).status_code == 401
        bad = await api.get("/v1/alerts", headers=bearer("not-a-jwt"))
        assert bad.status_code == 401
        assert bad.headers["content-type"] == "application/problem+json"
        assert (await api.get("/v1/alerts", headers=writer)).status_code == 403
        assert (await api.get("/v1/alerts/1", headers=writer)).status_code == 403
        patch = await api.patch("/v1/alerts/1", json={"status": "reviewed"})
        assert patch.status_code == 401
        refused = await api.patch("/v1/alerts/1", json={"status": "reviewed"}, headers=reader)
        assert refused.status_code == 403
        assert refused.json()["type"].endswith("forbidden")


async def test_list_filters_pages_and_scopes_alerts_by_tenant(
    aws: str, jwks_url: str, module_database: str, token: Callable[..., str]
) -> None:
    mine = await load_burst(module_database, 11, "merchant-1")
    theirs = await load_burst(module_database, 12, "merchant-2")
    reader = bearer(token(names.SCOPE_READ))
    # alerts:review alone does not lift the tenant scope; tenants:all does.
    merchant_reviewer = bearer(token(names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW, name="ann"))
    operator = bearer(token(*OPERATOR, subject="analyst-7", name="Ann Analyst"))
    async with running_api(aws, jwks_url, module_database) as api:
        own = await api.get("/v1/alerts", params={"rule": "card_testing"}, headers=reader)
        assert own.status_code == 200
        seen = {item["trans_num"] for item in own.json()["items"]}
        assert set(mine) <= seen
        assert not seen & set(theirs)
        reviewed = await api.get("/v1/alerts", params={"limit": 500}, headers=merchant_reviewer)
        assert not {i["trans_num"] for i in reviewed.json()["items"]} & set(theirs)
        item = own.json()["items"][0]
        assert item["card_masked"].startswith("****")
        # The same timestamp form as the transaction lookup and the contract.
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", item["trans_date_trans_time"])
        assert len(item["card_last4"]) == 4
        assert item["evidence"]["count"] >= 4
        assert item["severity"] == "high"
        assert item["status"] == "open"

        everything: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3, "severity": "high", "status": "open"}
            if cursor:
                params["cursor"] = cursor
            page = (await api.get("/v1/alerts", params=params, headers=operator)).json()
            # A page holds items and a cursor, never a count of anyone's alerts.
            assert set(page) <= {"items", "next_cursor"}
            everything += [i["trans_num"] for i in page["items"]]
            cursor = page.get("next_cursor")
            if cursor is None:
                break
        assert set(mine) | set(theirs) <= set(everything)
        assert len(everything) == len(set(everything))

        none = await api.get("/v1/alerts", params={"rule": "velocity"}, headers=operator)
        assert none.json()["items"] == []
        later = await api.get(
            "/v1/alerts", params={"since": "2999-01-01T00:00:00Z"}, headers=operator
        )
        assert later.json()["items"] == []
        invalid = await api.get("/v1/alerts", params={"status": "closed"}, headers=operator)
        assert invalid.status_code == 422


async def _alert_ids(api: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, int]:
    listed = await api.get("/v1/alerts", params={"limit": 500}, headers=headers)
    assert listed.status_code == 200, listed.text
    return {i["trans_num"]: i["alert_id"] for i in listed.json()["items"]}


async def test_another_tenants_alert_answers_exactly_like_a_missing_one(
    aws: str, jwks_url: str, module_database: str, token: Callable[..., str]
) -> None:
    theirs = await load_burst(module_database, 15, "merchant-2")
    me = bearer(token(names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW, name="Mo Merchant"))
    operator = bearer(token(*OPERATOR, subject="analyst-7", name="Ann Analyst"))
    async with running_api(aws, jwks_url, module_database) as api:
        their_id = (await _alert_ids(api, operator))[theirs[0]]
        missing_id = 2**62
        foreign = await api.get(f"/v1/alerts/{their_id}", headers=me)
        missing = await api.get(f"/v1/alerts/{missing_id}", headers=me)
        # A change of someone else's alert is a 404 too, not a 409 that would confirm it.
        foreign_patch = await api.patch(
            f"/v1/alerts/{their_id}", json={"status": "open"}, headers=me
        )
        missing_patch = await api.patch(
            f"/v1/alerts/{missing_id}", json={"status": "open"}, headers=me
        )
        after = (await api.get(f"/v1/alerts/{their_id}", headers=operator)).json()
    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content
    assert foreign_patch.status_code == missing_patch.status_code == 404
    assert foreign_patch.content == missing_patch.content
    assert after["status"] == "open"
    assert after["history"] == []


async def _burst_at_two_merchants(database: str, card: int) -> tuple[list[str], list[str]]:
    """One card probed at four merchants, two posting through merchant-1 (1.50 each), two
    through merchant-2 with amounts of their own (2.75 each, the last completing the
    burst): the burst's evidence is computed over all four. The trans_nums of each."""
    probes = [probe(card, i, "1.50" if i < 2 else "2.75") for i in range(4)]
    clients = ["merchant-1", "merchant-1", "merchant-2", "merchant-2"]
    await load(database, list(zip(probes, clients, strict=True)))
    return [p["trans_num"] for p in probes[:2]], [p["trans_num"] for p in probes[2:]]


async def test_evidence_shown_to_a_merchant_names_no_other_merchants_transactions(
    aws: str, jwks_url: str, module_database: str, token: Callable[..., str]
) -> None:
    ours, theirs = await _burst_at_two_merchants(module_database, 21)
    m1 = bearer(token(names.SCOPE_READ, subject="merchant-1"))
    m2 = bearer(token(names.SCOPE_READ, subject="merchant-2"))
    operator = bearer(token(*OPERATOR, subject="analyst-7", name="Ann Analyst"))
    async with running_api(aws, jwks_url, module_database) as api:
        ids = await _alert_ids(api, operator)
        as_m1 = [await api.get(f"/v1/alerts/{ids[t]}", headers=m1) for t in ours]
        listed_m1 = await api.get("/v1/alerts", params={"limit": 500}, headers=m1)
        as_m2 = (await api.get(f"/v1/alerts/{ids[theirs[0]]}", headers=m2)).json()
        as_operator = (await api.get(f"/v1/alerts/{ids[ours[0]]}", headers=operator)).json()

    whole = as_operator["evidence"]
    assert whole["trigger_trans_num"] == theirs[-1]
    assert whole["total_amount"] == 8.5
    for response in [*as_m1, listed_m1]:
        assert response.status_code == 200
        for other in theirs:
            assert other not in response.text
        assert "2.75" not in response.text
        assert "8.5" not in response.text
    evidence = as_m1[0].json()["evidence"]
    assert "trigger_trans_num" not in evidence
    assert "total_amount" not in evidence
    # What the merchant may know of the burst stays: how many, at how many merchants, when.
    assert (evidence["count"], evidence["merchants"]) == (4, 4)
    assert evidence["window_end"] == whole["window_end"]
    # merchant-2's own transaction completed the burst: named to merchant-2.
    assert as_m2["evidence"]["trigger_trans_num"] == theirs[-1]
    assert "total_amount" not in as_m2["evidence"]


async def test_no_answer_of_any_alert_route_shows_a_merchant_another_merchants_evidence(
    aws: str, jwks_url: str, module_database: str, token: Callable[..., str]
) -> None:
    ours, theirs = await _burst_at_two_merchants(module_database, 22)
    read, review, every = names.SCOPE_READ, names.SCOPE_ALERTS_REVIEW, names.SCOPE_ALL_TENANTS
    # Every combination of scopes a person of merchant-1's client can hold; tenants:all in
    # a merchant's token lifts nothing (only the operators' client reads every tenant).
    merchant_people = [
        (read,),
        (review,),
        (read, review),
        (read, every),
        (read, review, every),
    ]
    operator = bearer(token(*OPERATOR, subject="analyst-7", name="Ann Analyst"))
    async with running_api(aws, jwks_url, module_database) as api:
        alert = (await _alert_ids(api, operator))[ours[0]]
        answers: list[httpx.Response] = []
        for scopes in merchant_people:
            headers = bearer(token(*scopes, name="Mia", client="merchant-1"))
            if read in scopes:
                answers.append(await api.get(f"/v1/alerts/{alert}", headers=headers))
                answers.append(await api.get("/v1/alerts", params={"limit": 500}, headers=headers))
            if review in scopes:
                for status in ("reviewed", "open"):
                    answers.append(
                        await api.patch(
                            f"/v1/alerts/{alert}", json={"status": status}, headers=headers
                        )
                    )
        whole = await api.patch(
            f"/v1/alerts/{alert}", json={"status": "reviewed"}, headers=operator
        )
    assert len(answers) == 14
    for answer in answers:
        assert answer.status_code == 200, answer.text
        for other in theirs:
            assert other not in answer.text
        assert "2.75" not in answer.text
        assert "8.5" not in answer.text
        assert "total_amount" not in answer.text
    # The operator's answer holds what the merchants' leave out.
    assert whole.json()["evidence"]["trigger_trans_num"] == theirs[-1]
    assert whole.json()["evidence"]["total_amount"] == 8.5


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(card=written_card_numbers)
async def test_a_note_holding_a_card_number_is_refused_never_stored_or_echoed(
    aws: str,
    jwks_url: str,
    module_database: str,
    token: Callable[..., str],
    card: tuple[str, str],
) -> None:
    pan, text = card
    trans_nums = await load_burst(module_database, 31, "merchant-1")
    async with running_api(aws, jwks_url, module_database) as api:
        reviewer = bearer(token(*OPERATOR, subject="analyst-7", name="Ann Analyst"))
        alert_id = (await _alert_ids(api, reviewer))[trans_nums[0]]
        refused = await api.patch(
            f"/v1/alerts/{alert_id}",
            json={"status": "reviewed", "note": f"card {text} called back"},
            headers=reviewer,
        )
        detail = (await api.get(f"/v1/alerts/{alert_id}", headers=reviewer)).json()
    assert refused.status_code == 422
    assert [(e["field"], e["type"]) for e in refused.json()["errors"]] == [
        ("body.note", "card_number")
    ]
    assert pan not in ascii_digits(refused.text)
    assert (detail["status"], detail["history"]) == ("open", [])


async def test_status_transitions_are_recorded_with_the_person_and_when(
    aws: str, jwks_url: str, module_database: str, token: Callable[..., str]
) -> None:
    trans_nums = await load_burst(module_database, 13, "merchant-1")
    async with running_api(aws, jwks_url, module_database) as api:
        reviewer = bearer(token(*OPERATOR, subject="analyst-7", name="Ann Analyst"))
        lead = bearer(token(*OPERATOR, subject="lead-2", name="Lee Lead"))
        alert_id = (await _alert_ids(api, reviewer))[trans_nums[0]]
        url = f"/v1/alerts/{alert_id}"

        reviewed = await api.patch(
            url, json={"status": "reviewed", "note": "called the cardholder"}, headers=reviewer
        )
        assert reviewed.status_code == 200
        assert reviewed.json()["status"] == "reviewed"
        assert reviewed.json()["status_changed_by"] == "analyst-7"
        assert reviewed.json()["status_changed_by_name"] == "Ann Analyst"

        escalated = await api.patch(url, json={"status": "escalated"}, headers=lead)
        assert escalated.status_code == 200

        refused = await api.patch(url, json={"status": "open"}, headers=lead)
        assert refused.status_code == 409
        assert refused.json()["current_status"] == "escalated"

        unknown_field = await api.patch(url, json={"status": "dismissed", "by": "x"}, headers=lead)
        assert unknown_field.status_code == 422

        detail = (await api.get(url, headers=reviewer)).json()
        assert detail["status"] == "escalated"
        trail = [
            (h["from_status"], h["to_status"], h["changed_by"], h["changed_by_name"])
            for h in detail["history"]
        ]
        assert trail == [
            ("open", "reviewed", "analyst-7", "Ann Analyst"),
            ("reviewed", "escalated", "lead-2", "Lee Lead"),
        ]
        assert detail["history"][0]["note"] == "called the cardholder"
        first, second = (dt.datetime.fromisoformat(h["changed_at"]) for h in detail["history"])
        assert first <= second

        missing = await api.patch("/v1/alerts/999999999", json={"status": "reviewed"}, headers=lead)
        assert missing.status_code == 404

        # The merchant reads its own alert's trail too.
        merchant = bearer(token(names.SCOPE_READ, subject="merchant-1"))
        own = (await api.get(url, headers=merchant)).json()
        assert [h["changed_by"] for h in own["history"]] == ["analyst-7", "lead-2"]


async def test_reviews_are_made_by_people(
    aws: str, jwks_url: str, module_database: str, token: Callable[..., str]
) -> None:
    trans_nums = await load_burst(module_database, 16, "merchant-1")
    # A client-credentials token (no person) with every scope.
    client = bearer(token(*OPERATOR, subject="batch-job"))
    person = bearer(token(*OPERATOR, subject="analyst-7", name="Ann Analyst"))
    async with running_api(aws, jwks_url, module_database) as api:
        alert_id = (await _alert_ids(api, person))[trans_nums[0]]
        refused = await api.patch(
            f"/v1/alerts/{alert_id}", json={"status": "dismissed"}, headers=client
        )
        after = (await api.get(f"/v1/alerts/{alert_id}", headers=person)).json()
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert after["status"] == "open"


async def test_alert_routes_are_rate_limited_per_caller(
    aws: str, jwks_url: str, module_database: str, token: Callable[..., str]
) -> None:
    busy = bearer(token(*OPERATOR, subject="analyst-7", name="Ann Analyst"))
    other = bearer(token(names.SCOPE_READ, subject="merchant-2"))
    async with running_api(
        aws, jwks_url, module_database, alerts_rate_limit_burst=3, alerts_rate_limit_per_s=0.001
    ) as api:
        answers = [
            await api.get("/v1/alerts", headers=busy),
            await api.get(f"/v1/alerts/{2**62}", headers=busy),
            await api.patch(f"/v1/alerts/{2**62}", json={"status": "reviewed"}, headers=busy),
        ]
        limited = [
            await api.get("/v1/alerts", headers=busy),
            await api.get(f"/v1/alerts/{2**62}", headers=busy),
            await api.patch(f"/v1/alerts/{2**62}", json={"status": "reviewed"}, headers=busy),
        ]
        unaffected = await api.get("/v1/alerts", headers=other)
    assert [a.status_code for a in answers] == [200, 404, 404]
    for response in limited:
        assert response.status_code == 429
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["type"].endswith("rate-limited")
    assert unaffected.status_code == 200


@pytest.mark.parametrize("role", [names.DB_DASHBOARD_ROLE, names.DB_ANALYST_ROLE])
async def test_dashboard_views_show_every_tenants_open_alerts(
    module_database: str, role: str
) -> None:
    await load_burst(module_database, 14, "merchant-3")
    conn = await asyncpg.connect(module_database, server_settings={"role": role})
    try:
        open_rows = await conn.fetch(
            "SELECT rule, severity, open_alerts FROM cardstream.dash_alerts_open"
        )
        assert ("card_testing", "high") in {(r["rule"], r["severity"]) for r in open_rows}
        latest = await conn.fetch("SELECT card_masked, evidence FROM cardstream.dash_alerts_latest")
        assert latest
        assert all(r["card_masked"].startswith("****") for r in latest)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT card_token FROM cardstream.alert")
    finally:
        await conn.close()


async def test_ids_beyond_the_bigint_range_are_a_client_error_not_a_503(
    aws: str, jwks_url: str, module_database: str, token: Callable[..., str]
) -> None:
    # Found by schemathesis: /v1/alerts/1396015984240818651136 answered 503.
    reviewer = bearer(token(*OPERATOR, name="Ann Analyst"))
    huge = str(2**63)
    async with running_api(aws, jwks_url, module_database) as api:
        for response in (
            await api.get(f"/v1/alerts/{huge}", headers=reviewer),
            await api.patch(f"/v1/alerts/{huge}", json={"status": "reviewed"}, headers=reviewer),
            await api.get("/v1/alerts", params={"cursor": huge}, headers=reviewer),
        ):
            assert response.status_code == 422, response.text
            assert response.headers["content-type"] == "application/problem+json"
        largest = await api.get(f"/v1/alerts/{2**63 - 1}", headers=reviewer)
        assert largest.status_code == 404

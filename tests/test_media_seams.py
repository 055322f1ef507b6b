"""The media plane's two seams: join tokens (S1) and event reports (S6).

Visits are ORM rows (tests/support_visits.py), so these tests do not depend on booking.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from control_api.auth import Role
from openvisit.join_tokens import JoinTokenError, JoinTokenSigner, JoinTokenVerifier
from openvisit.keys import load_public_key
from tests.support import Api
from tests.support_visits import (
    add_unit_kiosk,
    ledger_balanced,
    load_visit,
    media_headers,
    report,
    seed_visit,
    seed_world,
)


async def _verifier(api: Api) -> JoinTokenVerifier:
    """What a media node holds: the published public key, nothing else."""
    answer = (await api.anonymous.get("/v1/media/public-key")).ok()
    assert answer["algorithm"] == "EdDSA" and "PRIVATE" not in answer["public_key_pem"]
    return JoinTokenVerifier(load_public_key(answer["public_key_pem"]))


async def test_s1_join_is_refused_before_the_lobby_opens(api: Api) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=timedelta(minutes=12))  # lobby opens 10 min before: ~2 min away
    problem = (await w.visitor.post(f"/v1/visits/{v['id']}/join")).problem(409, "outside-join-window")
    opens = datetime.fromisoformat(v["starts_at"]) - timedelta(minutes=10)
    assert "opens at" in problem["detail"] and problem["opens_at"] == opens.isoformat()


async def test_s1_visitor_token_inside_the_window_verifies_with_the_public_key_only(api: Api) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=timedelta(minutes=9, seconds=30))  # inside the lobby
    start, end = datetime.fromisoformat(v["starts_at"]), datetime.fromisoformat(v["ends_at"])
    joined = (await w.visitor.post(f"/v1/visits/{v['id']}/join")).ok()
    assert joined["participant_role"] == "visitor" and joined["signaling_url"]
    assert isinstance(joined["ice_servers"], list)
    assert joined["visit"] == {"id": v["id"], "starts_at": joined["visit"]["starts_at"],
                               "ends_at": joined["visit"]["ends_at"], "visit_type": "social"}
    assert datetime.fromisoformat(joined["visit"]["starts_at"]) == start
    now = api.ctx.clock.now()
    expires = datetime.fromisoformat(joined["expires_at"])
    assert expires <= now + timedelta(seconds=api.ctx.settings.join_token_seconds) + timedelta(seconds=1)

    verifier = await _verifier(api)
    claims = verifier.verify(joined["join_token"], now, visit_id=v["id"])
    assert (claims.visit_id, claims.participant_id, claims.participant_role, claims.visit_type) == (
        v["id"], w.visitor.principal_id, "visitor", "social")
    assert claims.not_before == start - timedelta(minutes=10)  # the lobby opening
    assert (claims.visit_starts_at, claims.visit_ends_at) == (start, end)
    with pytest.raises(JoinTokenError):  # bound to this visit
        verifier.verify(joined["join_token"], now, visit_id="another-visit")
    with pytest.raises(JoinTokenError, match="expired"):  # short-lived
        verifier.verify(joined["join_token"], expires + timedelta(seconds=1))
    with pytest.raises(JoinTokenError):  # a token signed by anyone else is refused
        forged, _ = JoinTokenSigner(Ed25519PrivateKey.generate()).issue(
            visit_id=v["id"], participant_id="x", participant_role="visitor", visit_type="social",
            visit_starts_at=start, visit_ends_at=end, not_before=start - timedelta(minutes=10), expires_at=end)
        verifier.verify(forged, now)


async def test_s1_s2_token_never_outlives_the_visit_and_join_closes_at_the_end(api: Api) -> None:
    w = await seed_world(api)
    nearly_over = await seed_visit(api, w, starts_in=timedelta(minutes=-29, seconds=-30))  # 30-min visit
    end = datetime.fromisoformat(nearly_over["ends_at"])
    joined = (await w.visitor.post(f"/v1/visits/{nearly_over['id']}/join")).ok()
    assert datetime.fromisoformat(joined["expires_at"]) == end  # min(now + ttl, end)
    over = await seed_visit(api, w, starts_in=timedelta(minutes=-31))  # still `scheduled`: no sweep ran
    problem = (await w.visitor.post(f"/v1/visits/{over['id']}/join")).problem(409, "outside-join-window")
    assert "ended at" in problem["detail"]


async def test_s1_only_the_visits_participants_may_join(api: Api) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=timedelta(minutes=5))
    path = f"/v1/visits/{v['id']}/join"
    other_visitor = await api.sign_up("visitor")
    (await other_visitor.post(path)).problem(404)  # another family cannot even see it
    (await other_visitor.post("/v1/visits/no-such-visit/join")).problem(404)
    other_kiosk = await add_unit_kiosk(api, w)
    (await other_kiosk.post(path)).problem(403)  # a kiosk of another housing unit
    admin = await api.create_user(Role.ADMIN, facility_id=w.facility_id)
    (await admin.post(path)).problem(403)  # staff never hold a join token
    (await w.operator.post(path)).problem(403)
    (await api.anonymous.post(path)).problem(401)


async def test_s1_s6_kiosk_joins_for_the_resident_only_after_check_in(api: Api) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=timedelta(minutes=5))
    (await w.kiosk.post(f"/v1/visits/{v['id']}/join")).problem(409, "not-checked-in")
    checked = await seed_visit(api, w, starts_in=timedelta(minutes=5), checked_in=True)
    joined = (await w.kiosk.post(f"/v1/visits/{checked['id']}/join")).ok()
    assert joined["participant_role"] == "resident"
    claims = (await _verifier(api)).verify(joined["join_token"], api.ctx.clock.now(), visit_id=checked["id"])
    assert (claims.participant_id, claims.participant_role) == (w.resident_id, "resident")


async def test_join_refused_for_a_visit_that_is_not_live(api: Api) -> None:
    w = await seed_world(api)
    for status in ("cancelled", "completed", "pending_review"):
        v = await seed_visit(api, w, starts_in=timedelta(minutes=1), status=status)
        (await w.visitor.post(f"/v1/visits/{v['id']}/join")).problem(409, "not-joinable")


async def test_media_events_need_the_media_secret(api: Api) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=timedelta(minutes=1))
    body = {"event_id": "auth-1", "visit_id": v["id"], "kind": "started", "occurred_at": v["starts_at"]}
    path = "/v1/internal/media-events"
    (await api.anonymous.post(path, body)).problem(401)
    (await api.anonymous.post(path, body, headers={"Authorization": "Bearer wrong"})).problem(401)
    (await api.anonymous.post(path, body, headers={"Authorization": f"Basic {api.ctx.media_secret}"})).problem(401)
    (await api.anonymous.post(path, body, headers={"Authorization": f"Bearer {api.ctx.media_secret}x"})).problem(401)
    (await w.visitor.post(path, body)).problem(401)  # a user's access token is not the media credential
    (await w.operator.post(path, body)).problem(401)
    assert (await load_visit(api, v["id"])).status == "scheduled"  # none of those changed anything
    ok = (await api.anonymous.post(path, body, headers=media_headers(api))).ok()
    assert ok == {"accepted": True, "duplicate": False, "visit_status": "in_progress"}
    unknown = {**body, "event_id": "auth-2", "visit_id": "no-such-visit"}
    (await api.anonymous.post(path, unknown, headers=media_headers(api))).problem(404)


async def test_media_event_ids_make_reports_idempotent(api: Api) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=timedelta(minutes=-1))
    start = datetime.fromisoformat(v["starts_at"])
    headers = media_headers(api)
    joined = {"event_id": "node1:join:visitor", "visit_id": v["id"], "kind": "participant_joined",
              "participant": "visitor", "occurred_at": start.isoformat()}
    first = (await api.anonymous.post("/v1/internal/media-events", joined, headers=headers)).ok()
    # The same id again, even with other content, is acknowledged and ignored.
    retried = {**joined, "occurred_at": (start + timedelta(minutes=3)).isoformat()}
    again = (await api.anonymous.post("/v1/internal/media-events", retried, headers=headers)).ok()
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    visit = await load_visit(api, v["id"])
    assert visit.visitor_joined_at == start
    ended = {"event_id": "node1:end", "visit_id": v["id"], "kind": "ended", "reason": "failed",
             "occurred_at": (start + timedelta(minutes=1)).isoformat(), "connected_seconds": 0}
    for _ in range(3):
        await api.anonymous.post("/v1/internal/media-events", ended, headers=headers)
    visit = await load_visit(api, v["id"])
    assert visit.status == "failed"
    balance = (await w.visitor.get("/v1/me/balance")).ok()
    assert balance["available_cents"] == v["price_cents"]  # credited once, not three times (M6)
    assert await ledger_balanced(api)


async def test_media_event_shapes_are_validated(api: Api) -> None:
    w = await seed_world(api)
    v = await seed_visit(api, w, starts_in=timedelta(minutes=-1))
    base: dict[str, Any] = {"visit_id": v["id"], "occurred_at": v["starts_at"]}
    headers = media_headers(api)
    bads: list[dict[str, Any]] = [
        {"kind": "participant_joined"},  # which participant?
        {"kind": "ended"},  # why did it end?
        {"kind": "ended", "reason": "disconnected"},  # S4: the officer's reason is required
        {"kind": "ended", "reason": "completed", "connected_seconds": -1},
        {"kind": "exploded"},
        {"kind": "started", "occurred_at": "2030-01-01T00:00:00"},  # not an aware time
    ]
    for n, bad in enumerate(bads):
        r = await api.anonymous.post("/v1/internal/media-events", {**base, "event_id": f"bad-{n}", **bad},
                                     headers=headers)
        r.problem(422)
    assert (await load_visit(api, v["id"])).status == "scheduled"
    await report(api, v["id"], "started", datetime.fromisoformat(v["starts_at"]))
    assert (await load_visit(api, v["id"])).status == "in_progress"

"""The media plane's two seams: join tokens (S1) and event reports (S6)."""

from __future__ import annotations

from datetime import datetime, timedelta

from openvisit.join_tokens import JoinTokenError, JoinTokenVerifier
from openvisit.keys import load_public_key
from tests.support import Api, As
from tests.support_booking import at, book
from tests.support_facility import build_facility


async def _to(api: Api, operator: As, instant: datetime) -> None:
    await api.advance(operator, int((instant - api.ctx.clock.now()).total_seconds()))


async def test_s1_join_tokens_only_for_participants_inside_the_window(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    other = await w.approved_visitor(api)
    v = (await book(visitor, w.resident_id, at(api, days=1))).ok(201)
    start = datetime.fromisoformat(v["starts_at"])
    path = f"/v1/visits/{v['id']}/join"
    r = await visitor.post(path)
    assert "opens at" in r.problem(409, "outside-join-window")["detail"]
    await _to(api, w.operator, start - timedelta(minutes=9))
    (await other.post(path)).problem(404)
    (await w.kiosk.post(path)).problem(409, "not-checked-in")
    (await w.admin.post(path)).problem(403)
    joined = (await visitor.post(path)).ok()
    assert joined["participant_role"] == "visitor" and joined["signaling_url"]
    # A media node verifies it with nothing but the published public key.
    pem = (await api.anonymous.get("/v1/media/public-key")).ok()["public_key_pem"]
    verifier = JoinTokenVerifier(load_public_key(pem))
    claims = verifier.verify(joined["join_token"], api.ctx.clock.now(), visit_id=v["id"])
    assert (claims.participant_id, claims.participant_role, claims.visit_type) == (visitor.principal_id, "visitor",
                                                                                    "social")
    assert claims.not_before == start - timedelta(minutes=10) and claims.expires_at <= datetime.fromisoformat(
        v["ends_at"])
    try:
        verifier.verify(joined["join_token"], api.ctx.clock.now(), visit_id="another-visit")
        raise AssertionError("a token for one visit must not open another")
    except JoinTokenError:
        pass
    (await w.kiosk.post(f"/v1/visits/{v['id']}/check-in")).ok()
    kiosk_join = (await w.kiosk.post(path)).ok()
    assert verifier.verify(kiosk_join["join_token"], api.ctx.clock.now()).participant_id == w.resident_id
    await _to(api, w.operator, datetime.fromisoformat(v["ends_at"]) + timedelta(seconds=1))
    (await visitor.post(path)).problem(409, "not-joinable")  # the sweep has closed it by now


async def test_join_token_is_short_lived_and_never_outlives_the_visit(api: Api) -> None:
    w = await build_facility(api)
    visitor = await w.approved_visitor(api)
    v = (await book(visitor, w.resident_id, at(api, days=1), length=20)).ok(201)
    end = datetime.fromisoformat(v["ends_at"])
    await _to(api, w.operator, end - timedelta(seconds=30))
    joined = (await visitor.post(f"/v1/visits/{v['id']}/join")).ok()
    assert datetime.fromisoformat(joined["expires_at"]) == end
    pem = (await api.anonymous.get("/v1/media/public-key")).ok()["public_key_pem"]
    verifier = JoinTokenVerifier(load_public_key(pem))
    try:
        verifier.verify(joined["join_token"], end + timedelta(seconds=1))
        raise AssertionError("expired token accepted")
    except JoinTokenError as exc:
        assert "expired" in str(exc)


async def test_media_events_need_the_media_secret(api: Api) -> None:
    body = {"event_id": "e1", "visit_id": "x", "kind": "started", "occurred_at": "2030-01-01T00:00:00Z"}
    (await api.anonymous.post("/v1/internal/media-events", body)).problem(401)
    (await api.anonymous.post("/v1/internal/media-events", body,
                              headers={"Authorization": "Bearer wrong"})).problem(401)
    visitor = await api.sign_up()
    (await visitor.post("/v1/internal/media-events", body)).problem(401)
    r = await api.anonymous.post("/v1/internal/media-events", body,
                                 headers={"Authorization": f"Bearer {api.ctx.media_secret}"})
    r.problem(404)

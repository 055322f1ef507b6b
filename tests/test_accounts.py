"""Accounts and authentication."""

from __future__ import annotations

from PIL import Image

from tests.support import PASSWORD, PNG, Api, image_bytes


async def test_sign_up_login_and_read_me(api: Api) -> None:
    visitor = await api.sign_up()
    me = (await visitor.get("/v1/me")).ok()
    assert me["role"] == "visitor" and me["has_photo_id"] is False
    assert "password" not in str(me).lower()


async def test_attorney_sign_up_requires_bar_details(api: Api) -> None:
    r = await api.anonymous.post("/v1/accounts", {
        "role": "attorney", "email": "a@example.org", "password": PASSWORD, "legal_name": "A B",
        "postal_address": "1 Main Street", "date_of_birth": "1970-01-01", "phone": "+1 555 0100 22"})
    r.problem(422, "validation-error")


async def test_sign_up_does_not_reveal_an_existing_account(api: Api) -> None:
    """Issue 12: sign-up answered 409 email-taken, telling anyone who has an account. Now both
    answers are the same 202; the holder of the address is told by mail, nothing is written."""
    first = await api.sign_up(email="same@example.org")
    assert first.principal_id
    body = {"password": PASSWORD, "legal_name": "Other", "postal_address": "2 Main Street",
            "date_of_birth": "1990-01-01", "phone": "+1 555 0100 23"}
    taken = await api.anonymous.post("/v1/accounts", {"email": "SAME@example.org", **body})
    fresh = await api.anonymous.post("/v1/accounts", {"email": "fresh@example.org", **body})
    assert taken.status == fresh.status == 202
    assert set(taken.body) == set(fresh.body) and taken.body["status"] == fresh.body["status"] == "check-your-email"
    assert [m["kind"] for m in await api.mail("same@example.org")] == ["sign-up-existing", "confirm-email"]
    assert [m["kind"] for m in await api.mail("fresh@example.org")] == ["confirm-email"]
    # The original account is untouched: its password still works, the other one does not.
    (await api.anonymous.post("/v1/auth/login", {"email": "same@example.org", "password": PASSWORD})).ok()
    me = (await first.get("/v1/me")).ok()
    assert me["legal_name"] != "Other"


async def test_email_confirmation_end_to_end_through_the_demo_outbox(api: Api) -> None:
    visitor = await api.sign_up(confirm=False)
    email = visitor.extra["email"]
    assert (await visitor.get("/v1/me")).ok()["email_confirmed"] is False
    # Unconfirmed accounts cannot ask a facility for access yet (V1).
    (await visitor.put("/v1/me/photo-id", data=PNG, headers={"Content-Type": "image/png"})).ok()
    operator = await api.operator()
    facility = (await operator.post("/v1/facilities", {"name": "Mail County Jail",
                                                       "timezone": "America/Chicago"})).ok(201)
    (await visitor.post(f"/v1/facilities/{facility['id']}/access-requests")).problem(422, "email-not-confirmed")
    mail = (await api.mail(email, "confirm-email"))[0]
    assert "/app/account.html#confirm=" in mail["body"] and "expires in 2880 minutes" in mail["body"]
    # A second link replaces the first (resend waits a minute between mails).
    assert (await visitor.post("/v1/me/confirmation-email")).ok(202)["status"] == "already-sent-recently"
    old_token = await api.mailed_token(email, "confirm-email")
    await api.advance(operator, 61)
    assert (await visitor.post("/v1/me/confirmation-email")).ok(202)["status"] == "sent"
    new_token = await api.mailed_token(email, "confirm-email")
    assert new_token != old_token
    (await api.anonymous.post("/v1/auth/confirm-email", {"token": old_token})).problem(400, "invalid-or-expired-token")
    assert (await api.anonymous.post("/v1/auth/confirm-email", {"token": new_token})).ok()["status"] == "confirmed"
    # Single use.
    (await api.anonymous.post("/v1/auth/confirm-email", {"token": new_token})).problem(400, "invalid-or-expired-token")
    assert (await visitor.get("/v1/me")).ok()["email_confirmed"] is True
    (await visitor.post(f"/v1/facilities/{facility['id']}/access-requests")).ok(201)


async def test_confirmation_link_expires(api: Api) -> None:
    visitor = await api.sign_up(confirm=False)
    token = await api.mailed_token(visitor.extra["email"], "confirm-email")
    await api.advance(await api.operator(), 48 * 3600 + 1)
    (await api.anonymous.post("/v1/auth/confirm-email", {"token": token})).problem(400, "invalid-or-expired-token")


async def test_wrong_password_and_bad_tokens_are_401(api: Api) -> None:
    visitor = await api.sign_up()
    r = await api.anonymous.post("/v1/auth/login", {"email": visitor.extra["email"], "password": "nope-nope-nope"})
    r.problem(401)
    r = await api.anonymous.get("/v1/me", headers={"Authorization": "Bearer not-a-token"})
    r.problem(401)
    r = await api.anonymous.get("/v1/me")
    r.problem(401)


async def test_malformed_json_is_400_not_500(api: Api) -> None:
    resp = await api.client.post("/v1/accounts", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 400
    assert resp.headers["Content-Type"].startswith("application/problem+json")


async def test_photo_id_upload_is_checked_and_private(api: Api) -> None:
    visitor = await api.sign_up()
    r = await visitor.put("/v1/me/photo-id", data=b"<html>hi</html>", headers={"Content-Type": "image/png"})
    r.problem(400, "not-an-image")
    r = await visitor.put("/v1/me/photo-id", data=PNG, headers={"Content-Type": "text/html"})
    r.problem(415)
    # A PNG signature followed by HTML (issue 12's finding) does not decode: refused.
    fake = b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>"
    r = await visitor.put("/v1/me/photo-id", data=fake, headers={"Content-Type": "image/png"})
    r.problem(400, "not-an-image")
    # A real PNG with HTML appended: stored as the pixels only.
    polyglot = PNG + b"<html><script>alert(1)</script></html>"
    me = (await visitor.put("/v1/me/photo-id", data=polyglot, headers={"Content-Type": "image/png"})).ok()
    assert me["has_photo_id"] is True
    stored = list((api.ctx.settings.uploads_dir / "photo-ids").iterdir())
    assert len(stored) == 1 and b"<html>" not in stored[0].read_bytes()
    with Image.open(stored[0]) as back:
        assert (back.format, back.size) == ("PNG", (64, 48))
    assert stored[0].stat().st_mode & 0o077 == 0  # owner-only


async def test_a_photo_ids_metadata_is_stripped_and_limits_hold(api: Api) -> None:
    """V1 (issue 12): a phone photo's GPS position never reaches our disk; tiny or huge images
    and a declared type that is not what the bytes are get a clear 400."""
    visitor = await api.sign_up()
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (44.0, 58.0, 30.0), 3: "W", 4: (93.0, 15.0, 0.0)}  # GPSInfo
    exif[0x010F] = "PhoneMaker"
    photo = image_bytes("JPEG", (120, 80), exif=exif.tobytes())
    with Image.open(__import__("io").BytesIO(photo)) as original:
        assert original.getexif().get(0x010F) == "PhoneMaker"  # the upload does carry metadata
    (await visitor.put("/v1/me/photo-id", data=photo, headers={"Content-Type": "image/jpeg"})).ok()
    [stored] = list((api.ctx.settings.uploads_dir / "photo-ids").iterdir())
    with Image.open(stored) as kept:
        assert kept.format == "JPEG" and kept.size == (120, 80) and not kept.getexif()
    assert b"PhoneMaker" not in stored.read_bytes()
    tiny = image_bytes("PNG", (8, 8))
    (await visitor.put("/v1/me/photo-id", data=tiny, headers={"Content-Type": "image/png"})).problem(400,
                                                                                                    "not-an-image")
    (await visitor.put("/v1/me/photo-id", data=PNG, headers={"Content-Type": "image/jpeg"})).problem(400,
                                                                                                  "not-an-image")


async def test_unknown_route_is_problem_json(api: Api) -> None:
    r = await api.anonymous.get("/v1/nope")
    r.problem(404)


async def test_metrics_count_requests_by_route_template(api: Api) -> None:
    await api.anonymous.get("/v1/me")
    resp = await api.client.get("/metrics")
    text = await resp.text()
    assert resp.status == 200
    assert 'openvisit_http_requests_total{method="GET",route="/v1/me",status="401"}' in text


async def test_nul_characters_are_a_clear_400_everywhere(api: Api) -> None:
    """PostgreSQL text cannot hold NUL: refused before any query, on both databases alike."""
    visitor = await api.sign_up()
    (await visitor.get("/v1/facilities/a%00b")).problem(400, "nul-character")
    (await visitor.get("/v1/visits?status=a%00")).problem(400, "nul-character")
    resp = await api.client.patch("/v1/me", data=b'{"legal_name": "a\\u0000b"}',
                                  headers={"Content-Type": "application/json", **visitor.headers()})
    assert resp.status == 400 and (await resp.json())["type"].endswith("/nul-character")


async def test_a_visitor_sees_the_photo_id_on_file(api: Api) -> None:
    """V1 (issue 13): the account page shows the photo ID the facilities will review; only its holder
    (and the reviewing facility's admins) can read it."""
    visitor = await api.sign_up()
    (await visitor.get("/v1/me/photo-id")).problem(404)
    (await visitor.put("/v1/me/photo-id", data=PNG, headers={"Content-Type": "image/png"})).ok()
    resp = await visitor.get("/v1/me/photo-id")
    assert resp.status == 200 and resp.headers["Content-Type"] == "image/png"
    assert resp.headers["Cache-Control"] == "no-store"
    with Image.open(__import__("io").BytesIO(resp.body)) as shown:
        assert shown.size == (64, 48)
    (await api.anonymous.get("/v1/me/photo-id")).problem(401)
    operator = await api.operator()
    (await operator.get("/v1/me/photo-id")).problem(403)

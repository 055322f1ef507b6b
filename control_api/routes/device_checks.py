"""Device checks (issue 13): a short loopback test against the media server for anyone signed in.

The answer carries a device-check token (openvisit/device_check_tokens.py): a join token of its
own kind that names no visit, so it never joins a visit and a visit's token never opens a check.
The media server echoes the person's own audio and video back (sfu/device_check.py); nothing is
recorded, monitored, billed or tied to a visit. Limits: one open check per account at a time
(the media server enforces it too), and `CHECKS_PER_WINDOW` per hour per account.
"""

from __future__ import annotations

import math
import weakref
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, Field

from control_api.api import ApiRequest, ApiRoutes
from control_api.auth import Role
from control_api.domain.device_check_limits import CHECKS_PER_WINDOW, WINDOW, CheckRate, issued, wait_before_next
from control_api.problems import ProblemError, conflict
from control_api.routes.media import IceServerOut, signaling_url_for
from control_api.services.ice_servers import ice_servers_for
from openvisit.device_check_tokens import DeviceCheckTokenSigner

routes = ApiRoutes()
TAGS = ("media",)
CHECK_SECONDS = 60  # how long the media server echoes, at most
CONNECT_SECONDS = 30  # the token opens a check only this soon after it was issued
ANYONE_SIGNED_IN = {Role.VISITOR, Role.ATTORNEY, Role.KIOSK, Role.ADMIN, Role.OFFICER, Role.INVESTIGATOR,
                    Role.OPERATOR}
# Per application (each test app is its own): account key -> its checks in the last hour.
_rates: weakref.WeakKeyDictionary[web.Application, dict[str, CheckRate]] = weakref.WeakKeyDictionary()


class DeviceCheckOut(BaseModel):
    join_token: str = Field(description="a device-check token: send it as `{type: check, token}` "
                                        "(docs/signaling.md, section 8); it never joins a visit")
    signaling_url: str
    ice_servers: list[IceServerOut]
    expires_at: datetime = Field(description="open the check before this")
    max_seconds: int = Field(description="the media server ends the check this long after it opened")


@routes.post("/v1/device-checks", summary="Start a connection test against the media server",
             roles=ANYONE_SIGNED_IN, tags=TAGS, response=DeviceCheckOut, status=201, errors=(409, 429, 503),
             own_transactions=True,
             description="A loopback test for the device check page: the media server sends the caller's own "
                         "audio and video straight back over the same peer connection, so the page can measure "
                         "round-trip time, loss, frame rate and bitrate. Nothing is recorded, monitored or "
                         "billed, and no visit is involved. One open check per account (409 `check-open`), "
                         f"at most {CHECKS_PER_WINDOW} per hour per account (429 `too-many-checks` with "
                         "Retry-After); 503 `no-media-server` when no media server is attached.")
async def start_check(req: ApiRequest[Any, Any]) -> DeviceCheckOut:
    p = req.principal
    signaling_url = signaling_url_for(req)
    if signaling_url is None:
        raise ProblemError(503, "no-media-server", "no media server is attached to this service: the connection "
                                                   "test cannot run", headers={"Retry-After": "60"})
    checks = getattr(req.ctx.media, "device_checks", None)  # the embedded media plane knows its open checks
    if checks is not None and checks.is_open(p.key):
        raise conflict("a connection test is already running for this account (in another tab or on another "
                       "device); finish it first", slug="check-open")
    now = req.now
    rates = _rates.setdefault(req.request.app, {})
    rate = rates.setdefault(p.key, CheckRate())
    wait = wait_before_next(rate, now)
    if wait is not None:
        seconds = max(1, math.ceil(wait.total_seconds()))
        raise ProblemError(429, "too-many-checks",
                           f"at most {CHECKS_PER_WINDOW} connection tests per {int(WINDOW.total_seconds() // 60)} "
                           f"minutes: try again in {seconds} seconds",
                           headers={"Retry-After": str(seconds)}, extra={"retry_after_seconds": seconds})
    issued(rate, now)
    if len(rates) > 10_000:  # bounded memory: forget accounts with nothing in the window
        for key in [k for k, r in rates.items() if not r.issued or now - r.issued[-1] >= WINDOW]:
            del rates[key]
    expires = now + timedelta(seconds=CONNECT_SECONDS)
    token, _ = DeviceCheckTokenSigner(req.ctx.join_tokens.signing_key).issue(
        account_id=p.id, account_role=p.role.value, max_seconds=CHECK_SECONDS, not_before=now - timedelta(seconds=5),
        expires_at=expires)
    return DeviceCheckOut(join_token=token, signaling_url=signaling_url,
                          ice_servers=[IceServerOut(**s.model_dump()) for s in ice_servers_for(
                              req.ctx.settings, participant_id=f"check-{p.id}", now=now,
                              valid_until=expires + timedelta(seconds=CHECK_SECONDS))],  # a relay, as for a visit
                          expires_at=expires, max_seconds=CHECK_SECONDS)

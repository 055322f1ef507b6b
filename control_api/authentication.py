"""Who is calling, and may they call this endpoint: the first step of every request.

Users and kiosks present an access token (`Authorization: Bearer <token>`, control_api.auth);
media nodes present the shared media secret. A token's sign-in must still be open, and staff who
have yet to set up their second factor may only do that.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from aiohttp import web

from control_api.auth import Principal, Role, TokenError
from control_api.context import AppContext
from control_api.problems import ProblemError, forbidden, unauthorized
from control_api.services.sign_in import session_is_live

if TYPE_CHECKING:
    from control_api.api import Endpoint


def authenticate_media_node(request: web.Request, ctx: AppContext) -> Principal:
    """Media nodes present the shared media secret, not a user's access token."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if (scheme.lower() != "bearer" or not token.isascii()
            or not hmac.compare_digest(token.strip().encode(), ctx.media_secret.encode())):
        raise unauthorized("media nodes authenticate with 'Bearer <media secret>'")
    return Principal(id="media-node", role=Role.MEDIA)


def authenticate(request: web.Request, ctx: AppContext) -> Principal | None:
    """The caller named by the access token, or None when there is no Authorization header."""
    header = request.headers.get("Authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("Authorization must be 'Bearer <token>'")
    if not token.isascii():  # tokens are ASCII; other bytes arrive as lone surrogates that cannot be encoded
        raise unauthorized("the access token holds characters no token has")
    try:
        return ctx.access_tokens.verify(token.strip(), ctx.clock.now())
    except TokenError as exc:
        raise unauthorized(str(exc)) from exc


async def require_live_session(ctx: AppContext, session_id: str) -> None:
    """A token's session must still be open: signing out or changing the password ends it at once."""
    async with ctx.read_sessions() as session:
        live = await session_is_live(session, session_id, ctx.clock.now())
    if not live:
        raise unauthorized("this sign-in has ended (signed out, password changed or expired): sign in again")


async def caller_of(request: web.Request, ctx: AppContext, endpoint: Endpoint) -> Principal | None:
    """Authenticate, check the endpoint's roles, the sign-in and second-factor enrolment; None
    only for an anonymous caller of a public endpoint."""
    principal = (authenticate_media_node(request, ctx) if Role.MEDIA in endpoint.roles
                 else authenticate(request, ctx))
    if not endpoint.public:
        if principal is None:
            raise unauthorized()
        if principal.role not in endpoint.roles:
            raise forbidden(f"the {principal.role.value} role may not {endpoint.summary.lower()}")
    if principal is not None and principal.session_id is not None:
        await require_live_session(ctx, principal.session_id)
    if principal is not None and principal.enrolling and not endpoint.during_enrolment:
        raise ProblemError(403, "second-factor-enrolment-required",
                           "set up two-step sign-in first (POST /v1/me/second-factor/setup, then /confirm)")
    return principal

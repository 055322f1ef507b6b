"""What both signaling handlers (visits, device checks) read off a WebSocket: one JSON object per
text message, and the names an unverifiable token claims (for the audit trail only)."""

from __future__ import annotations

import json
from typing import Any

import jwt
from aiohttp import WSMsgType


def parse_message(message: Any) -> dict[str, Any] | None:
    """The JSON object a text message carries; None for anything else."""
    if message.type != WSMsgType.TEXT:
        return None
    try:
        value = json.loads(message.data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def unverified_claims(token: str) -> tuple[str, str] | None:
    """The visit and subject a rejected token names (for the audit trail only; never trusted)."""
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    visit, subject = payload.get("visit"), payload.get("sub")
    if isinstance(visit, str) and isinstance(subject, str) and 0 < len(visit) <= 36 and len(subject) <= 120:
        return visit, subject
    return None

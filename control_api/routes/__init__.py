"""Every endpoint of the control API, one module per area."""

from __future__ import annotations

import importlib

from control_api.api import ApiRoutes

# One module per area; each exposes `routes: ApiRoutes`.
AREAS = (
    "accounts",  # sign-up, email confirmation, profile, photo ID upload
    "auth",  # sign-in, sessions, sign-out, password change and reset, second factor
    "mail",  # the demo outbox (outside production)
    "facilities",  # facility configuration, housing units, windows, closures, prices, kiosks, staff (A)
    "residents",  # roster and CSV import
    "access",  # access requests (V1) and attorney Bar verification (V2)
    "visits",  # availability, quotes, booking, review, cancellation, check-in, kiosk notices (B, S6)
    "billing",  # balance, statements, credit requests (M)
    "media",  # join tokens and media-plane event reports (S1, S6, M6)
    "monitoring",  # officers' live visits and monitor tokens (P1)
    "device_checks",  # loopback connection tests against the media server (issue 13)
    "privilege",  # attestations of privileged visits (P3)
    "recordings",  # investigator search, playback, flags, export, legal hold (R3, R4)
    "clock",  # the test clock
    "audit",  # the audit chain's state for the operator (R3)
)


def all_routes() -> ApiRoutes:
    routes = ApiRoutes()
    for area in AREAS:
        module = importlib.import_module(f"control_api.routes.{area}")
        routes.include(module.routes)
    return routes

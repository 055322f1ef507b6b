"""Visits (rules B1-B8, M3, M4, S6): one module per area, their routes in one `routes`.

- booking: availability, quotes, booking with payment
- listing: list visits, read one
- cancellation: staff review, cancellation and its preview
- moving: move and its preview; a visit's type never changes
- kiosk: kiosk notices and check-in
- views: the shared views and who may see or book a visit
"""

from __future__ import annotations

from control_api.api import ApiRoutes
from control_api.routes.visits import booking, cancellation, kiosk, listing, moving

routes = ApiRoutes()
for _area in (booking, listing, cancellation, moving, kiosk):
    routes.include(_area.routes)

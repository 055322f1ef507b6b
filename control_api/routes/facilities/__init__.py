"""Facility configuration (rules A1-A8, M7, M8), one module per area, their routes in one `routes`.

- facility: facilities and their settings
- housing: housing units, weekly visitation windows, closures
- pricing: session lengths and prices, fees and taxes
- kiosks: kiosk registration, enabling, secret rotation
- staff: staff accounts
- scope: shared roles and path loading; the locking and cap checks live in
  services.facility_configuration
"""

from __future__ import annotations

from control_api.api import ApiRoutes
from control_api.routes.facilities import facility, housing, kiosks, pricing, staff

routes = ApiRoutes()
for _area in (facility, housing, pricing, kiosks, staff):
    routes.include(_area.routes)

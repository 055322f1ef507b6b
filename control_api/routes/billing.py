"""Placeholder until this area lands."""

from control_api.api import ApiRoutes

routes = ApiRoutes()

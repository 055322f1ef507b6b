"""Demo data for `openvisit serve --demo`: placeholder, replaced once facilities land."""

from __future__ import annotations

from openvisit.settings import Settings


async def seed_demo(settings: Settings) -> dict[str, str]:
    return {}


async def create_operator(settings: Settings, *, email: str, name: str, password: str) -> None:
    raise NotImplementedError

"""Rule M8: per-minute video price caps by facility size tier (FCC 2025 interim caps)."""

from __future__ import annotations

# cents per minute
_CAPS: dict[str, int] = {
    "prison": 25,
    "jail_1000_plus": 19,
    "jail_350_999": 19,
    "jail_100_349": 21,
    "jail_50_99": 25,
    "jail_under_50": 44,
}
SIZE_TIERS: tuple[str, ...] = tuple(_CAPS)


def per_minute_cap_cents(size_tier: str) -> int:
    try:
        return _CAPS[size_tier]
    except KeyError:
        raise ValueError(f"unknown size tier {size_tier!r}; one of {', '.join(SIZE_TIERS)}") from None


def format_cents_per_minute(cents: int) -> str:
    return f"${cents / 100:.2f}/min"

"""Pure domain logic: booking rules, pricing, credits. No aiohttp, no SQLAlchemy, no aiortc."""

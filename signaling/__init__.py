"""WebSocket signaling for browsers and mobile apps, authenticated by join tokens."""

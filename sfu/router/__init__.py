"""Per-visit routers: producers and consumers of encoded media tracks."""

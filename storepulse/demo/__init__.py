"""The demo organisation's built-in shop simulator: `shop` decides what happens (pure, seeded),
`wire` turns it into the vendors' signed HTTP requests (pure), `run` sends them to our own ingest."""

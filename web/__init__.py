"""What the HTTP apps of ingest and the read side share: JSON responses, security headers, the app."""

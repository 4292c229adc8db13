"""The read side: WebSocket push, HTTP read API, dashboard page."""

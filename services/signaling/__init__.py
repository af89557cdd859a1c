"""signaling: the HTTP API, session registry and placement, service liveness."""

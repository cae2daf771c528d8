"""Local fake broker servers for the tests: FastAPI for REST, picows for WebSockets."""

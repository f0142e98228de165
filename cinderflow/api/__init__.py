"""The Cinder v3 REST API on Starlette."""

"""Pydantic request and response models (also the source of /openapi.json)."""

"""Workflows: one module per long operation; orchestration only, every side effect in activities."""

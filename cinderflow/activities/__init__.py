"""Activities: small idempotent steps (database transitions, scheduling, driver calls)."""

"""Temporal wiring: client, workers, dev server, queues, search attributes, workflow outbox."""

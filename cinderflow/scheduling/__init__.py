"""Backend selection, after Cinder's filter scheduler: pure filters and weighing here; the
activity that reads backends and records the choice is activities/scheduler.py."""

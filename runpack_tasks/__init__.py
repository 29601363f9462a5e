"""Runpack's worker side: settings, the job store and its state machine, Celery."""

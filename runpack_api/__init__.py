"""Runpack's HTTP side: the API, and the command line that serves it."""

"""Requests from the tests, all in plain HTTP to loopback, sharing one TLS context.

httpx builds a TLS context for every client it makes, loading the certificate store: about
28 ms of CPU a client (0.7 ms with a context given), paid by every ``httpx.get`` and by
each poll of a test waiting on a server, twenty times a second. No test speaks TLS; the
context is there because httpx wants one.
"""

from __future__ import annotations

from typing import Any

import httpx

#: The TLS context every test client is given.
TLS = httpx.create_ssl_context()


def get(url: str, **kwargs: Any) -> httpx.Response:
    """``httpx.get`` with the shared TLS context."""
    return httpx.get(url, verify=TLS, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    """``httpx.post`` with the shared TLS context."""
    return httpx.post(url, verify=TLS, **kwargs)

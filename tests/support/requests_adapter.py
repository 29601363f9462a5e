"""A ``requests`` session whose requests reach an ``ApiServer`` through its own transport.

Tools built on ``requests`` (schemathesis) then talk to the in-process app on the loop it
was built on, as an httpx client of that server would.
"""

from __future__ import annotations

import io
from typing import Any

import httpx
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from urllib3 import HTTPHeaderDict, HTTPResponse

from tests.support.server import ApiServer


class _ServerAdapter(BaseAdapter):
    def __init__(self, server: ApiServer) -> None:
        super().__init__()
        self._client = server.client()

    def send(self, request: requests.PreparedRequest, **_kwargs: Any) -> requests.Response:
        body = request.body
        content = body.encode() if isinstance(body, str) else body
        answer = self._client.request(
            request.method or "GET",
            request.url or "/",
            headers=dict(request.headers),
            content=content,
        )
        response = requests.Response()
        response.status_code = answer.status_code
        raw_headers = HTTPHeaderDict()
        for name, value in answer.headers.multi_items():
            raw_headers.add(name, value)
        response.raw = HTTPResponse(
            body=io.BytesIO(answer.content),
            headers=raw_headers,
            status=answer.status_code,
            version=11,
            preload_content=False,
        )
        response.headers = CaseInsensitiveDict(answer.headers)
        response._content = answer.content
        response.url = request.url or ""
        response.request = request
        response.reason = httpx.codes.get_reason_phrase(answer.status_code)
        response.encoding = answer.encoding
        return response

    def close(self) -> None:
        self._client.close()


def session_into(server: ApiServer) -> requests.Session:
    """A session whose every request, to any URL, is answered by ``server``."""
    session = requests.Session()
    adapter = _ServerAdapter(server)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session

"""Refuses NUL characters in paths, query strings and JSON bodies with a 422.

PostgreSQL cannot store U+0000 in text, and no field of a PBX needs it; letting
it through would turn a typo or a fuzzer into a 500 deep in the database.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl, unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ErrorBody, FieldProblem

# \u0000 preceded by an even number of backslashes is an escaped NUL, not text.
_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_MESSAGE = "text may not contain the NUL character (U+0000)"


def _offending_query_fields(query: bytes) -> list[str]:
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return [f"query.{name}" for name, value in pairs if "\x00" in name or "\x00" in value]


class RefuseNulMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problems: list[str] = []
        if "\x00" in unquote(scope.get("path", "")):
            problems.append("path")
        problems += _offending_query_fields(scope.get("query_string", b""))
        replay = receive
        headers = dict(scope.get("headers", []))
        if not problems and b"json" in headers.get(b"content-type", b""):
            body, replay = await _buffered(receive)
            if b"\x00" in body or _ESCAPED_NUL.search(body):
                problems.append("body")
        if problems:
            await _refuse(send, problems)
            return
        await self.app(scope, replay, send)


async def _buffered(receive: Receive) -> tuple[bytes, Receive]:
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


async def _refuse(send: Send, fields: list[str]) -> None:
    body = ErrorBody(
        error_id="validation-failed",
        message=_MESSAGE,
        details=[FieldProblem(field=field, message=_MESSAGE) for field in fields],
    )
    payload = json.dumps(body.model_dump()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 422,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})

"""Refuse NUL characters in the path and query before anything reads them.

PostgreSQL text cannot hold U+0000 and fails the whole statement on one, so a NUL would turn
a harmless lookup into a 500. Bodies are checked by the input models (api.schemas_actions).
"""

import json
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

_BODY = json.dumps(
    {
        "error": {
            "code": "invalid_request",
            "message": "NUL characters are not accepted in the path or query",
            "details": {},
        }
    }
).encode()


class RejectNul:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = unquote(scope.get("query_string", b"").decode("latin-1"))
            if "\x00" in scope.get("path", "") or "\x00" in query:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 422,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(_BODY)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": _BODY})
                return
        await self.app(scope, receive, send)

"""The headers every answer of the web view carries, whichever layer writes it.

    >>> app = SecurityHeaders(starlette_app)      # create_app() puts it outermost but one

- ``Content-Security-Policy``: scripts, styles, images and requests from this origin only, no
  inline script, no plugin, no frame around the page, no ``<base>``, no form posting elsewhere.
  Even if a page put a user's string in as HTML (it must not: see ``static/common.js``), the
  browser would run no script from it and send nothing elsewhere. Inline styles stay allowed:
  Plotly styles its SVG through ``style`` attributes.
- ``X-Content-Type-Options: nosniff``: a JSON answer that holds markup is never read as HTML.
- ``Referrer-Policy: no-referrer``: a link out of the view does not tell the site which run was open.

:class:`SecurityHeaders` adds them to every response that passes through it, the routes' own
and the framework's (404, 405, a refused ``Host``), so no answer can leave without them;
:mod:`.limits` writes them into the answers it gives before a request reaches the app.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SECURITY_HEADERS", "SecurityHeaders"]

#: Sent with every response.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:;"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeaders:
    """ASGI middleware: :data:`SECURITY_HEADERS` on every HTTP response (replacing any value the app set)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)

"""`python -m tests.echo.scope_app`: the real serving layer (echo.serve.run) in front of a tiny ASGI
app that answers with what it was given — the scope's headers, extensions, path and raw path — so
the serving tests can check what the serving layer hands any app, independently of the echo app.

Settings come from the same environment variables as echo-server (HTTP_PORT, MAX_HEADER_SIZE, …).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import orjson

from echo.cli import serve_options
from echo.config import load_config
from echo.identity import identity_from_environ
from echo.serve import Hooks, run


def _text(value: bytes) -> str:
    return value.decode("latin-1")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        extensions = scope.get("extensions") or {}
        tls = extensions.get("meshecho.tls")
        await send({"type": "websocket.send", "text": orjson.dumps({"tls": tls}).decode()})
        await send({"type": "websocket.close"})
        return
    if scope["type"] != "http":
        return
    more = True
    body_bytes = 0
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body_bytes += len(message.get("body", b""))
        more = message.get("more_body", False)
    extensions = scope.get("extensions") or {}
    raw_names = extensions.get("echo.raw_header_names")
    document = {
        "path": scope["path"].encode("utf-8", "surrogateescape").decode("latin-1"),
        "raw_path": _text(scope["raw_path"]),
        "query_string": _text(scope["query_string"]),
        "headers": [[_text(name), _text(value)] for name, value in scope["headers"]],
        "raw_header_names": None if raw_names is None else [_text(name) for name in raw_names],
        "extensions": sorted(extensions),
        "http_version": scope["http_version"],
        "body_bytes": body_bytes,
    }
    body = orjson.dumps(document)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def error_response(status: int, error: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    body = orjson.dumps({"error": error, "from": "scope_app"})
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())], body


def main() -> int:
    config = load_config([], os.environ)
    options = serve_options(config, identity_from_environ(os.environ, "scope-app", None))
    hooks = Hooks(on_ready=lambda: None, on_drain=lambda: None, error_response=error_response)
    return run(app, options, hooks, sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())

"""A small HTTP/1.1 client on asyncio streams, enough for `agent-team serve`: JSON requests,
chunked or sized bodies, and server-sent events. Standard library only.

Addresses are ``http://HOST:PORT[/PREFIX]``, ``https://…`` or ``unix:/PATH`` (``serve
--listen unix:PATH``).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple
from urllib.parse import quote, urlsplit

#: The longest response head or SSE line read (the server caps heads at 64 KiB; a `complete`
#: line carries the whole task board).
LINE_LIMIT = 64 * 1024 * 1024


@dataclass
class Address:
    """Where the server listens."""

    host: str
    port: int
    tls: bool
    prefix: str
    unix: Optional[str] = None

    @classmethod
    def parse(cls, url: str) -> "Address":
        if url.startswith("unix:"):
            return cls("localhost", 0, False, "", unix=url[len("unix:") :])
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s):// or unix: address: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        return cls(parts.hostname, port, tls, parts.path.rstrip("/"))

    def host_header(self) -> str:
        if self.unix is not None:
            return "localhost"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def path_part(s: str) -> str:
    """One path segment, escaped."""
    return quote(s, safe="")


class Response:
    """A response whose head is read; the body is read with :meth:`json`, :meth:`text` or
    :meth:`lines`. :meth:`close` (or leaving ``async with``) closes the connection."""

    def __init__(
        self,
        status: int,
        headers: Dict[str, str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.status = status
        self.headers = headers
        self._reader = reader
        self._writer = writer
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self._left: Optional[int] = int(length) if length is not None and not self._chunked else None
        self._chunk_left = 0
        self._done = False

    async def read_some(self) -> bytes:
        """The next piece of the body, b"" at its end."""
        if self._done:
            return b""
        r = self._reader
        if self._chunked:
            if self._chunk_left == 0:
                size_line = await r.readline()
                if not size_line:
                    self._done = True
                    return b""
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers, then the blank line.
                    while True:
                        line = await r.readline()
                        if line in (b"\r\n", b"\n", b""):
                            break
                    self._done = True
                    return b""
                self._chunk_left = size
            data = await r.read(min(self._chunk_left, 65536))
            if not data:
                self._done = True
                return b""
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                await r.readline()  # the CRLF after the chunk
            return data
        if self._left is not None:
            if self._left == 0:
                self._done = True
                return b""
            data = await r.read(min(self._left, 65536))
            if not data:
                self._done = True
                return b""
            self._left -= len(data)
            return data
        data = await r.read(65536)
        if not data:
            self._done = True
        return data

    async def body(self) -> bytes:
        parts: List[bytes] = []
        while True:
            data = await self.read_some()
            if not data:
                return b"".join(parts)
            parts.append(data)

    async def text(self) -> str:
        return (await self.body()).decode("utf-8", "replace")

    async def json(self) -> Any:
        raw = await self.body()
        return json.loads(raw.decode("utf-8")) if raw.strip() else None

    async def lines(self) -> AsyncIterator[str]:
        """The body's lines (without their end), as they arrive."""
        buf = b""
        while True:
            data = await self.read_some()
            if not data:
                if buf:
                    yield buf.decode("utf-8", "replace").rstrip("\r")
                return
            buf += data
            if len(buf) > LINE_LIMIT:
                raise ValueError("a line of the response is too long")
            *complete, buf = buf.split(b"\n")
            for line in complete:
                yield line.decode("utf-8", "replace").rstrip("\r")

    async def events(self) -> AsyncIterator[Tuple[Optional[str], str, Optional[str]]]:
        """Server-sent events as (event, data, id); comments and retries are skipped."""
        event: Optional[str] = None
        data: List[str] = []
        last_id: Optional[str] = None
        async for line in self.lines():
            if line == "":
                if data:
                    yield event, "\n".join(data), last_id
                event, data, last_id = None, [], None
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
            elif name == "id":
                last_id = value
        if data:
            yield event, "\n".join(data), last_id

    async def close(self) -> None:
        self._writer.close()
        try:
            await self._writer.wait_closed()
        except (OSError, ssl.SSLError):
            pass

    async def __aenter__(self) -> "Response":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


async def request(
    addr: Address,
    method: str,
    path: str,
    *,
    token: Optional[str],
    body: Any = None,
    headers: Optional[Dict[str, str]] = None,
) -> Response:
    """Sends one request (``Connection: close``) and reads the response's head."""
    if addr.unix is not None:
        reader, writer = await asyncio.open_unix_connection(addr.unix, limit=LINE_LIMIT)
    else:
        ctx = ssl.create_default_context() if addr.tls else None
        reader, writer = await asyncio.open_connection(addr.host, addr.port, ssl=ctx, limit=LINE_LIMIT)
    try:
        payload = b"" if body is None else json.dumps(body).encode("utf-8")
        head = [
            f"{method} {addr.prefix}{path} HTTP/1.1",
            f"Host: {addr.host_header()}",
            "Connection: close",
            "User-Agent: agent-team-python",
        ]
        if token:
            head.append(f"Authorization: Bearer {token}")
        if body is not None:
            head.append("Content-Type: application/json")
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(payload)}")
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + payload)
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection without answering")
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise ConnectionError(f"not an HTTP answer: {status_line!r}")
        status = int(parts[1])
        resp_headers: Dict[str, str] = {}
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            resp_headers[name.strip().lower()] = value.strip()
        return Response(status, resp_headers, reader, writer)
    except BaseException:
        writer.close()
        raise

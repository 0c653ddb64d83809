"""Posting webhooks the way Meta does: signed raw JSON over a few keep-alive connections."""
import asyncio
import ssl
from urllib.parse import urlsplit

from . import payloads

MAX_CONNECTIONS = 8
TIMEOUT_SECONDS = 15.0
BODY_EXCERPT_CHARS = 2000


class WebhookError(Exception):
    pass


class WebhookPoster:
    """A small async HTTP/1.1 client with a bounded, reused connection pool."""

    def __init__(self, max_connections=MAX_CONNECTIONS, timeout=TIMEOUT_SECONDS):
        self._slots = asyncio.Semaphore(max_connections)
        self._idle = {}
        self._timeout = timeout

    async def deliver(self, url, payload, app_secret, sign=True, bad_signature=False):
        """Post one payload; (status, body text). Sign with a wrong secret when bad_signature."""
        body = payload if isinstance(payload, bytes) else (
            payload.encode() if isinstance(payload, str) else payloads.dumps(payload))
        headers = {"Content-Type": "application/json", "User-Agent": "facebookexternalua"}
        if sign:
            secret = app_secret + "-not-the-secret" if bad_signature else app_secret
            headers["X-Hub-Signature-256"] = payloads.sign(body, secret)
            headers["X-Hub-Signature"] = payloads.sign_sha1(body, secret)
        status, response_body = await self.post(url, body, headers)
        return status, response_body.decode("utf-8", "replace")[:BODY_EXCERPT_CHARS]

    async def post(self, url, body, headers):
        origin, target = _split_url(url)
        async with self._slots:
            connection, reused = await self._checkout(origin)
            try:
                return await self._exchange_and_keep(origin, connection, target, body, headers)
            except (ConnectionError, asyncio.IncompleteReadError):
                if not reused:
                    raise
            # A pooled connection the server had already closed: one retry on a fresh one.
            connection, _ = await self._checkout(origin, fresh=True)
            return await self._exchange_and_keep(origin, connection, target, body, headers)

    async def close(self):
        for connections in self._idle.values():
            for _reader, writer in connections:
                writer.close()
        self._idle.clear()

    async def _checkout(self, origin, fresh=False):
        idle = self._idle.get(origin)
        if idle and not fresh:
            return idle.pop(), True
        scheme, host, port = origin
        context = ssl.create_default_context() if scheme == "https" else None
        connection = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context), self._timeout)
        return connection, False

    async def _exchange_and_keep(self, origin, connection, target, body, headers):
        try:
            status, response_body, reusable = await asyncio.wait_for(
                _exchange(connection, origin, target, body, headers), self._timeout)
        except BaseException:
            connection[1].close()
            raise
        if reusable:
            self._idle.setdefault(origin, []).append(connection)
        else:
            connection[1].close()
        return status, response_body


async def _exchange(connection, origin, target, body, headers):
    reader, writer = connection
    writer.write(_request_bytes(origin, target, body, headers))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status, response_headers = _parse_response_head(head)
    if status in (204, 304):
        return status, b"", True
    response_body, complete = await _read_response_body(reader, response_headers)
    reusable = complete and response_headers.get("connection", "").lower() != "close"
    return status, response_body, reusable


def _request_bytes(origin, target, body, headers):
    scheme, host, port = origin
    default_port = 443 if scheme == "https" else 80
    host_header = host if port == default_port else f"{host}:{port}"
    lines = [f"POST {target} HTTP/1.1", f"Host: {host_header}", f"Content-Length: {len(body)}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _parse_response_head(head):
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise WebhookError(f"malformed status line: {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _read_response_body(reader, headers):
    """(body, whether the connection can carry another request)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader), True
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"])), True
    return await reader.read(), False


async def _read_chunked(reader):
    chunks = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _split_url(url):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (parts.scheme, parts.hostname, port), target

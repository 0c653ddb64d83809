"""Just enough HTTP/1.1 for the simulator: read one request, encode one response.

Requests have Content-Length (or chunked) bodies; responses always carry Content-Length so a
keep-alive client never has to guess where one ends.
"""
import asyncio
import json
from urllib.parse import parse_qs, unquote, urlsplit

MAX_BODY_BYTES = 128 * 1024 * 1024  # Meta accepts media up to 100 MB
REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
    429: "Too Many Requests", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class BadRequest(Exception):
    """The bytes received are not an HTTP request we can answer; the connection ends after it."""

    def __init__(self, details, status=400):
        super().__init__(details)
        self.details = details
        self.status = status


class Request:
    __slots__ = ("method", "path", "query_string", "headers", "body", "keep_alive",
                 "json", "json_error", "_query")

    def __init__(self, method, path, query_string, headers, body, keep_alive):
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        self.json = None
        self.json_error = False
        self._query = None

    @property
    def query(self):
        """Query parameters, last value wins (as the Graph API reads them)."""
        if self._query is None:
            pairs = parse_qs(self.query_string, keep_blank_values=True)
            self._query = {name: values[-1] for name, values in pairs.items()}
        return self._query


class Response:
    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, status, body, content_type="application/json", headers=()):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers


# json.dumps builds a new encoder on every call when given separators; this one is reused.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


def json_response(payload, status=200, headers=()):
    return Response(status, _COMPACT_JSON.encode(payload).encode(), headers=headers)


def encode_response(response, keep_alive):
    """Status line, headers and body as one bytes object, so each answer is a single write."""
    lines = [
        f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Status')}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
    ]
    if not keep_alive:
        lines.append("Connection: close")
    lines.extend(f"{name}: {value}" for name, value in response.headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


async def read_request(reader, writer):
    """Next request on the connection, or None when the client closed it between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as err:
        if err.partial.strip():
            raise BadRequest("incomplete request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise BadRequest("request head too large", 431) from None
    method, target, version, headers = parse_head(head)
    if headers.get("expect", "").lower() == "100-continue":
        writer.write(_CONTINUE)
    body = await read_body(reader, headers)
    path, query_string = split_target(target)
    return Request(method, path, query_string, headers, body, wants_keep_alive(version, headers))


def parse_head(head):
    lines = head.decode("latin-1").lstrip("\r\n").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[2].startswith("HTTP/1."):
        raise BadRequest("malformed request line")
    headers = {}
    for line in lines[1:]:
        if line:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise BadRequest("malformed header line")
            headers[name.lower()] = value.strip()
    return parts[0].upper(), parts[1], parts[2], headers


def split_target(target):
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    if not target.startswith("/"):
        raise BadRequest("request target must be a path")
    path, _, query_string = target.partition("?")
    return unquote(path), query_string


def wants_keep_alive(version, headers):
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


async def read_body(reader, headers):
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await read_chunked_body(reader)
    length = headers.get("content-length")
    if length is None:
        return b""
    if not length.isdigit():
        raise BadRequest("invalid Content-Length")
    size = int(length)
    if size > MAX_BODY_BYTES:
        raise BadRequest("request body too large", 413)
    return await reader.readexactly(size) if size else b""


async def read_chunked_body(reader):
    chunks = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            raise BadRequest("invalid chunk size") from None
        if size == 0:
            await _skip_trailers(reader)
            return b"".join(chunks)
        total += size
        if total > MAX_BODY_BYTES:
            raise BadRequest("request body too large", 413)
        chunks.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise BadRequest("chunk not terminated by CRLF")


async def _skip_trailers(reader):
    while await reader.readuntil(b"\r\n") != b"\r\n":
        pass


def parse_json_body(request):
    """Parse a JSON body once, for the handler and the request log alike."""
    body = request.body
    if not body:
        return
    declared = "json" in request.headers.get("content-type", "")
    if not declared and body.lstrip()[:1] not in (b"{", b"["):
        return
    try:
        request.json = json.loads(body)
    except (ValueError, RecursionError):
        request.json_error = True

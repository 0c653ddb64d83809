"""HTTP transports of the Graph API client: pooled ``requests`` sessions (uploads, streamed downloads,
proxies) and a lean keep-alive ``http.client`` transport for the send queue's hot path.

Odoo's test mode blocks external calls by patching ``requests`` only, which the lean transport escapes:
``refuse_external_in_tests`` applies the same rule to every call of the client (loopback only while tests
run), as ``iap_jsonrpc`` refuses calls during tests. Reading Odoo's flag through ``sys.modules`` keeps this
module free of Odoo imports.
"""
import functools
import hashlib
import http.client
import select
import socket
import ssl
import sys
import threading
import urllib.request
from collections import OrderedDict
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from .graph_errors import OutcomeUnknownError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ExternalCallInTestsError(RuntimeError):
    """A real network call attempted while Odoo runs tests: tests talk to the local simulators only."""


def _odoo_test_running():
    module = sys.modules.get("odoo.modules.module")
    return bool(getattr(module, "current_test", False)) or bool(getattr(threading.current_thread(), "testing", False))


def refuse_external_in_tests(url):
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK_HOSTS and _odoo_test_running():
        raise ExternalCallInTestsError(f"External requests are refused during tests (was {host})")


# ---------------------------------------------------------------------------
# Keep-alive sessions, shared by all clients of the process
# ---------------------------------------------------------------------------
_SESSIONS_MAX = 32
_sessions = OrderedDict()
_sessions_lock = threading.Lock()


def pooled_session(api_url, phone_number_id, token):
    # Only a hash of the token is kept in the key, so a dump of the pool shows no secret.
    key = (api_url, phone_number_id, hashlib.sha256(token.encode()).hexdigest())
    with _sessions_lock:
        session = _sessions.get(key)
        if session is not None:
            _sessions.move_to_end(key)
            return session
        session = _sessions[key] = _new_session()
        if len(_sessions) > _SESSIONS_MAX:
            _sessions.popitem(last=False)[1].close()
        return session


def _new_session():
    session = requests.Session()
    # No transparent retries: the send queue decides, and a silently repeated POST could
    # deliver a message twice.
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.headers["User-Agent"] = "strato_whatsapp (Odoo)"
    return session


def close_sessions():
    """Close every pooled session (tests, worker shutdown)."""
    with _sessions_lock:
        while _sessions:
            _sessions.popitem()[1].close()


# ---------------------------------------------------------------------------
# Lean keep-alive transport for plain JSON calls (sends, status reads): the queue's hot path.
# ``requests`` costs about 3x more CPU per call here; uploads, streamed downloads and hosts reached
# through a proxy keep using it.
# ---------------------------------------------------------------------------
_connections = threading.local()


def proxied(url):
    parts = urlsplit(url)
    return _proxied_host(parts.scheme, parts.hostname or "")


@functools.lru_cache(maxsize=64)
def _proxied_host(scheme, hostname):
    # Proxy settings come from the environment, which does not change under a running server; reading
    # and matching them costs more than the rest of a send, so it is done once per host.
    proxies = urllib.request.getproxies()
    return scheme in proxies and not urllib.request.proxy_bypass(hostname)


def _tls_context():
    try:
        import certifi  # noqa: PLC0415 - the CA bundle requests uses, when present
        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        return ssl.create_default_context()


def _connection(scheme, netloc, timeout):
    """This thread's open connection to ``netloc``, reused while the server keeps it alive."""
    pool = getattr(_connections, "pool", None)
    if pool is None:
        pool = _connections.pool = {}
    key = (scheme, netloc)
    connection = pool.get(key)
    if connection is not None and connection.sock is not None and _dropped(connection.sock):
        connection.close()
        connection = None
    connect_timeout, read_timeout = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    if connection is None or connection.sock is None:
        if scheme == "https":
            connection = http.client.HTTPSConnection(netloc, timeout=connect_timeout, context=_tls_context())
        else:
            connection = http.client.HTTPConnection(netloc, timeout=connect_timeout)
        connection.connect()
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pool[key] = connection
    connection.sock.settimeout(read_timeout)  # each client's own, on a shared connection
    return connection


def _dropped(sock):
    # An idle keep-alive socket that is readable was closed by the server (or sent garbage).
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def plain_request(method, url, body, headers, timeout):
    """One request on a pooled connection -> (status, headers, body bytes). Never retried."""
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    connection = _connection(parts.scheme, parts.netloc, timeout)
    try:
        connection.request(method, target, body=body, headers=headers)
    except BaseException:
        connection.close()
        raise
    try:
        response = connection.getresponse()
        content = response.read()
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        kind = type(exc).__name__
        text = ("Timed out waiting for the Graph API's answer" if isinstance(exc, (socket.timeout, TimeoutError))
                else "The connection dropped before the Graph API answered")
        raise OutcomeUnknownError(text, details=kind) from exc
    except BaseException:
        connection.close()
        raise
    if response.will_close:
        connection.close()
    return response.status, dict(response.getheaders()), content


def close_connections():
    """Close this thread's lean connections (tests, worker shutdown)."""
    for connection in (getattr(_connections, "pool", None) or {}).values():
        connection.close()
    _connections.pool = {}


def without_token_param(url):
    # Meta's paging "next" URLs embed access_token; we send it as a header instead.
    parts = urlsplit(url)
    query = [(k, v) for k, values in parse_qs(parts.query, keep_blank_values=True).items()
             for v in values if k != "access_token"]
    return urlunsplit(parts._replace(query=urlencode(query)))

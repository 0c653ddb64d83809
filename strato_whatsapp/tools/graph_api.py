"""Client for Meta's WhatsApp Cloud API (Graph API).

Pure Python on top of ``requests``: no ORM, no Odoo import, so it can be used and tested
without a database. Every HTTP call goes through ``GraphApiClient._request``, the one seam
tests replace. Graph errors become typed exceptions whose ``category`` (see ``const``) tells
the caller what to do: retry, fail the message, or stop the account.

Module-level ``build_*_payload`` functions return the exact JSON Meta expects, so the Odoo
layer can build a payload, store it on the message and send it later with ``send_message``.
"""
import functools
import hashlib
import http.client
import json as jsonlib
import logging
import re
import select
import socket
import ssl
import threading
import time
import urllib.request
from collections import OrderedDict
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from .. import const
from .phone import digits

_logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
class GraphApiError(Exception):
    """An error answered by the Graph API (or met on the way to it).

    ``category`` is one of ``const.ERROR_*``; ``retryable`` says whether the send queue may
    try again; ``retry_after`` is Meta's Retry-After in seconds, or None.
    """

    category = const.ERROR_UNKNOWN

    def __init__(self, message, *, http_status=None, code=None, subcode=None, title=None,
                 details=None, fbtrace_id=None, retry_after=None, category=None, retryable=None):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code
        self.subcode = subcode
        self.title = title
        self.details = details
        self.fbtrace_id = fbtrace_id
        self.retry_after = retry_after
        if category:
            self.category = category
        self.retryable = self.category in const.RETRY_CATEGORIES if retryable is None else retryable

    @property
    def blocks_account(self):
        """True when sending must stop for the whole account until an admin acts."""
        return self.category in const.ACCOUNT_BLOCKING_CATEGORIES

    def __str__(self):
        text = self.message
        if self.details and self.details not in text:
            text = f"{text}: {self.details}"
        where = []
        if self.http_status:
            where.append(f"HTTP {self.http_status}")
        if self.code is not None:
            where.append(f"code {self.code}" + (f"/{self.subcode}" if self.subcode else ""))
        if self.fbtrace_id:
            where.append(f"fbtrace_id {self.fbtrace_id}")
        return f"{text} ({', '.join(where)})" if where else text

    def redact(self, secret):
        """Remove ``secret`` from every text attribute; returns self."""
        if secret:
            for attr in ("message", "title", "details"):
                value = getattr(self, attr)
                if isinstance(value, str) and secret in value:
                    setattr(self, attr, value.replace(secret, "***"))
            self.args = (self.message,)
        return self


class RetryableError(GraphApiError):
    """Rate limits, Meta-side transient errors, timeouts, dropped connections."""
    category = const.ERROR_RETRYABLE


class OutcomeUnknownError(RetryableError):
    """The request went out but no answer came back (timeout, dropped connection): Meta may or may not
    have acted on it. Safe to retry for reads; a message send must not be repeated blindly."""


class WindowClosedError(GraphApiError):
    """131047: outside the 24 h customer-service window; only a template can go."""
    category = const.ERROR_WINDOW_CLOSED


class RecipientError(GraphApiError):
    """The recipient cannot receive this message (not on WhatsApp, BSUID not allowed...)."""
    category = const.ERROR_RECIPIENT


class InvalidParameterError(GraphApiError):
    category = const.ERROR_INVALID_PARAMETER


class TemplateError(GraphApiError):
    category = const.ERROR_TEMPLATE


class AuthError(GraphApiError):
    """Access token invalid or expired."""
    category = const.ERROR_AUTH


class GraphPermissionError(GraphApiError):
    """The token lacks a permission on the phone number / WABA / app."""
    category = const.ERROR_PERMISSION


class AccountRestrictedError(GraphApiError):
    category = const.ERROR_ACCOUNT_RESTRICTED


class MarketingOptOutError(GraphApiError):
    """131050: the user stopped marketing messages from this business."""
    category = const.ERROR_MARKETING_OPT_OUT


class WithheldError(GraphApiError):
    """131049: Meta withheld a marketing message (per-user frequency cap)."""
    category = const.ERROR_WITHHELD


class MediaError(GraphApiError):
    category = const.ERROR_MEDIA


_CATEGORY_ERRORS = {cls.category: cls for cls in (
    RetryableError, WindowClosedError, RecipientError, InvalidParameterError, TemplateError,
    AuthError, GraphPermissionError, AccountRestrictedError, MarketingOptOutError,
    WithheldError, MediaError,
)}

# Code 100 is a generic "invalid parameter"; it is the recipient's fault only when it says so.
_RECIPIENT_HINT = re.compile(
    r"""\bparam(?:eter)?\s*[:'"]?\s*['"]?(?:to|recipient)\b(?!\s+(?:be|the|a|an)\b)"""
    r"""|\brecipient\b|\bwa_id\b|['"]to['"]|\bphone number\b(?!\s*id)""",
    re.IGNORECASE,
)
_TAG = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.IGNORECASE | re.DOTALL)
_SNIPPET_LENGTH = 300


def error_from_response(status, headers=None, body=None):
    """Map any Graph API error answer to a typed ``GraphApiError``.

    ``body`` may be bytes, text, an already parsed dict or None; HTML error pages and
    other non-JSON bodies map on the HTTP status alone.
    """
    data = _parse_json_or_none(body)
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return error_from_payload(error, http_status=status, retry_after=_retry_after(headers))
    category = _category(status, None, "")
    return _CATEGORY_ERRORS.get(category, GraphApiError)(
        _status_text(status), http_status=status, details=_snippet(body),
        retry_after=_retry_after(headers), category=category,
    )


def error_from_payload(error, http_status=None, retry_after=None):
    """Typed error from a Meta error object.

    Works both for the ``error`` of an API answer (``message``, ``code``, ``error_subcode``,
    ``error_data.details``, ``fbtrace_id``) and for an entry of ``errors`` in a failed
    status webhook (``code``, ``title``, ``message``, ``error_data.details``).
    """
    code = _to_int(error.get("code"))
    message = error.get("message") or error.get("title") or _status_text(http_status)
    details = _error_details(error)
    category = _category(http_status, code, f"{message} {details or ''}")
    return _CATEGORY_ERRORS.get(category, GraphApiError)(
        message, http_status=http_status, code=code, subcode=_to_int(error.get("error_subcode")),
        title=error.get("error_user_title") or error.get("title"), details=details,
        fbtrace_id=error.get("fbtrace_id"), retry_after=retry_after, category=category,
    )


def _error_details(error):
    error_data = error.get("error_data")
    if isinstance(error_data, dict):
        details = error_data.get("details")
    else:
        details = error_data
    return (details if isinstance(details, str) else None) or error.get("error_user_msg")


def _category(status, code, text):
    if status == 401:
        return const.ERROR_AUTH
    if code == 100 and _RECIPIENT_HINT.search(text or ""):
        return const.ERROR_RECIPIENT
    if code in const.ERROR_CODE_CATEGORY:
        return const.ERROR_CODE_CATEGORY[code]
    if status == 403:
        return const.ERROR_PERMISSION
    if status in (408, 429) or (status or 0) >= 500:
        return const.ERROR_RETRYABLE
    return const.ERROR_UNKNOWN


def _network_error(exc):
    """requests / socket exception -> GraphApiError; the text names the failure, never the URL."""
    kind = type(exc).__name__
    if isinstance(exc, (requests.Timeout, socket.timeout, TimeoutError)):
        return RetryableError("Timed out waiting for the Graph API", details=kind)
    if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                        ConnectionError, http.client.HTTPException, OSError)):
        return RetryableError("Connection to the Graph API failed or was dropped", details=kind)
    return GraphApiError("Could not call the Graph API", details=kind)


def _parse_json_or_none(body):
    if body is None or isinstance(body, (dict, list)):
        return body
    try:
        return jsonlib.loads(body)
    except ValueError:
        return None


def _parse_success_body(status, body):
    if not body:
        return {}
    data = _parse_json_or_none(body)
    if data is None:
        raise GraphApiError("The Graph API answered with invalid JSON", http_status=status,
                            details=_snippet(body), category=const.ERROR_BAD_RESPONSE)
    return data


def _snippet(body):
    if not body:
        return None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    text = " ".join(_TAG.sub(" ", text).split())
    return text[:_SNIPPET_LENGTH] or None


def _status_text(status):
    try:
        return f"HTTP {status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"HTTP {status}" if status else "Graph API error"


def _retry_after(headers):
    value = _header(headers, "Retry-After")
    if value in (None, ""):
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _header(headers, name):
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def _to_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def retry_delay(attempt, retry_after=None):
    """Seconds to wait before retry number ``attempt`` (1-based): exponential backoff
    from const, but never sooner than Meta's Retry-After."""
    backoff = const.RETRY_BACKOFF_BASE * const.RETRY_BACKOFF_FACTOR ** max(attempt - 1, 0)
    return max(min(backoff, const.RETRY_BACKOFF_MAX), retry_after or 0)


# ---------------------------------------------------------------------------
# API versions
# ---------------------------------------------------------------------------
def parse_api_version(version):
    """"v25.0", "25.0" or "v25" -> (25, 0); ValueError otherwise."""
    match = re.match(const.GRAPH_API_VERSION_PATTERN, str(version or "").strip())
    if not match:
        raise ValueError(f"Not a Graph API version: {version!r}")
    return int(match[1]), int(match[2] or 0)


def normalize_api_version(version):
    major, minor = parse_api_version(version)
    return f"v{major}.{minor}"


def api_version_status(version):
    """One of const.API_VERSION_SUPPORTED / _EXPIRING / _EXPIRED / _INVALID."""
    try:
        parsed = parse_api_version(version)
    except ValueError:
        return const.API_VERSION_INVALID
    if parsed < const.EXPIRED_BEFORE_GRAPH_API_VERSION:
        return const.API_VERSION_EXPIRED
    if parsed < const.MIN_GRAPH_API_VERSION:
        return const.API_VERSION_EXPIRING
    return const.API_VERSION_SUPPORTED


# ---------------------------------------------------------------------------
# Payload builders (pure)
# ---------------------------------------------------------------------------
def recipient_fields(to=None, bsuid=None):
    """``{"to": digits}`` for a phone number, else ``{"recipient": bsuid}``.

    Meta recommends phone numbers when known (webhooks then keep carrying them), and
    itself gives ``to`` precedence when both are sent.
    """
    phone_digits = digits(str(to or ""))
    if phone_digits:
        return {"to": phone_digits}
    if bsuid and str(bsuid).strip():
        return {"recipient": str(bsuid).strip()}
    raise ValueError("A WhatsApp message needs a phone number or a BSUID")


def _message_payload(msg_type, content, to, bsuid=None, reply_to=None, callback_data=None):
    payload = {
        "messaging_product": const.MESSAGING_PRODUCT,
        "recipient_type": "individual",
        **recipient_fields(to, bsuid),
        "type": msg_type,
        msg_type: content,
    }
    if reply_to:
        payload["context"] = {"message_id": reply_to}
    if callback_data not in (None, ""):
        # Meta echoes it in every status webhook of this message (max 512 characters).
        payload["biz_opaque_callback_data"] = str(callback_data)[:512]
    return payload


def build_text_payload(to, body, preview_url=False, reply_to=None, bsuid=None, callback_data=None):
    if not body:
        raise ValueError("A text message needs a body")
    return _message_payload("text", {"preview_url": bool(preview_url), "body": body},
                            to, bsuid, reply_to, callback_data)


def build_template_payload(to, name, language, components=None, reply_to=None, bsuid=None,
                           callback_data=None):
    """``language`` is a code ("es", "en_US") or a ready ``{"code": ...}`` dict;
    ``components`` is Meta's list of header/body/button parameter blocks."""
    template = {"name": name, "language": language if isinstance(language, dict) else {"code": language}}
    if components:
        template["components"] = list(components)
    return _message_payload("template", template, to, bsuid, reply_to, callback_data)


def build_media_payload(to, media_type, media_id=None, link=None, caption=None, filename=None,
                        reply_to=None, bsuid=None, callback_data=None):
    """Media by uploaded ``media_id`` or public ``link`` (exactly one). Captions only for
    image, video and document; ``filename`` only for documents."""
    if media_type not in const.MEDIA_TYPES:
        raise ValueError(f"Unknown media type {media_type!r}")
    if bool(media_id) == bool(link):
        raise ValueError("Give exactly one of media_id and link")
    media = {"id": media_id} if media_id else {"link": link}
    if caption:
        if media_type not in const.MEDIA_CAPTION_TYPES:
            raise ValueError(f"A {media_type} message cannot have a caption")
        media["caption"] = caption
    if filename and media_type == "document":
        media["filename"] = filename
    return _message_payload(media_type, media, to, bsuid, reply_to, callback_data)


def build_location_payload(to, latitude, longitude, name=None, address=None, reply_to=None,
                           bsuid=None, callback_data=None):
    location = {"latitude": float(latitude), "longitude": float(longitude)}
    if name:
        location["name"] = name
    if address:
        location["address"] = address
    return _message_payload("location", location, to, bsuid, reply_to, callback_data)


def build_contacts_payload(to, contacts, reply_to=None, bsuid=None, callback_data=None):
    """``contacts`` are Meta contact cards (``name.formatted_name``, ``phones``...)."""
    if not contacts:
        raise ValueError("A contacts message needs at least one contact")
    return _message_payload("contacts", list(contacts), to, bsuid, reply_to, callback_data)


def build_reaction_payload(to, message_id, emoji, bsuid=None, callback_data=None):
    """React to ``message_id``; an empty ``emoji`` removes our reaction."""
    reaction = {"message_id": message_id, "emoji": emoji or ""}
    return _message_payload("reaction", reaction, to, bsuid, None, callback_data)


def build_interactive_buttons_payload(to, body, buttons, header=None, footer=None, reply_to=None,
                                      bsuid=None, callback_data=None):
    """Reply buttons: ``buttons`` is up to 3 ``(id, title)`` pairs, titles up to 20
    characters. ``header`` is a text or a ready Meta header dict (image, video...)."""
    buttons = list(buttons or ())
    if not 1 <= len(buttons) <= const.INTERACTIVE_MAX_BUTTONS:
        raise ValueError(f"Reply buttons: 1 to {const.INTERACTIVE_MAX_BUTTONS} buttons")
    _check_unique_ids(button_id for button_id, _title in buttons)
    limit = const.INTERACTIVE_BUTTON_TITLE_MAX
    action = {"buttons": [
        {"type": "reply", "reply": {"id": str(button_id), "title": _limited(title, limit)}}
        for button_id, title in buttons
    ]}
    interactive = _interactive("button", body, action, header, footer)
    return _message_payload("interactive", interactive, to, bsuid, reply_to, callback_data)


def build_interactive_list_payload(to, body, button, sections, header=None, footer=None,
                                   reply_to=None, bsuid=None, callback_data=None):
    """List message: ``button`` opens the list; ``sections`` are dicts with an optional
    ``title`` and ``rows``, each row a dict (id, title, description?) or a tuple
    ``(id, title[, description])``. At most 10 rows in total."""
    sections = [_list_section(section) for section in sections or ()]
    rows = [row for section in sections for row in section["rows"]]
    if not sections or len(sections) > const.INTERACTIVE_LIST_MAX_SECTIONS:
        raise ValueError(f"A list needs 1 to {const.INTERACTIVE_LIST_MAX_SECTIONS} sections")
    if not rows or len(rows) > const.INTERACTIVE_LIST_MAX_ROWS:
        raise ValueError(f"A list needs 1 to {const.INTERACTIVE_LIST_MAX_ROWS} rows in total")
    if len(sections) > 1 and not all(section.get("title") for section in sections):
        raise ValueError("Every section needs a title when there are several")
    _check_unique_ids(row["id"] for row in rows)
    action = {"button": _limited(button, const.INTERACTIVE_BUTTON_TITLE_MAX), "sections": sections}
    interactive = _interactive("list", body, action, header, footer)
    return _message_payload("interactive", interactive, to, bsuid, reply_to, callback_data)


def build_read_payload(message_id, typing_indicator=False):
    """Mark an inbound message read; with ``typing_indicator`` also show "typing…" (Meta
    clears it on our reply or after 25 s)."""
    payload = {"messaging_product": const.MESSAGING_PRODUCT, "status": "read", "message_id": message_id}
    if typing_indicator:
        payload["typing_indicator"] = {"type": "text"}
    return payload


def _interactive(kind, body, action, header, footer):
    if not body:
        raise ValueError("An interactive message needs a body")
    interactive = {"type": kind}
    if header:
        interactive["header"] = header if isinstance(header, dict) else {"type": "text", "text": header}
    interactive["body"] = {"text": body}
    if footer:
        interactive["footer"] = {"text": footer}
    interactive["action"] = action
    return interactive


def _list_section(section):
    rows = []
    for row in section.get("rows") or ():
        if not isinstance(row, dict):
            row = dict(zip(("id", "title", "description"), row))
        clean = {"id": str(row["id"]), "title": _limited(row["title"], const.INTERACTIVE_LIST_ROW_TITLE_MAX)}
        if row.get("description"):
            clean["description"] = _limited(row["description"], const.INTERACTIVE_LIST_ROW_DESCRIPTION_MAX)
        rows.append(clean)
    return {"title": section["title"], "rows": rows} if section.get("title") else {"rows": rows}


def _limited(text, limit):
    if not text or len(text) > limit:
        raise ValueError(f"{text!r}: needs 1 to {limit} characters")
    return text


def _check_unique_ids(ids):
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids) or not all(ids):
        raise ValueError("Button and row ids must be non-empty and unique")


def extract_wamid(result):
    """The wamid of an accepted send (``messages[0].id``), or None."""
    try:
        return result["messages"][0]["id"] or None
    except (KeyError, IndexError, TypeError):
        return None


# ---------------------------------------------------------------------------
# Keep-alive sessions, shared by all clients of the process
# ---------------------------------------------------------------------------
_SESSIONS_MAX = 32
_sessions = OrderedDict()
_sessions_lock = threading.Lock()


def _pooled_session(api_url, phone_number_id, token):
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


def _proxied(url):
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


def _plain_request(method, url, body, headers, timeout):
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


def _without_token_param(url):
    # Meta's paging "next" URLs embed access_token; we send it as a header instead.
    parts = urlsplit(url)
    query = [(k, v) for k, values in parse_qs(parts.query, keep_blank_values=True).items()
             for v in values if k != "access_token"]
    return urlunsplit(parts._replace(query=urlencode(query)))


# ---------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------
class GraphApiClient:
    """WhatsApp Cloud API calls for one business phone number.

    Methods return Meta's parsed JSON answer and raise ``GraphApiError`` subclasses.
    """

    PHONE_NUMBER_FIELDS = ("id", "display_phone_number", "verified_name", "quality_rating",
                           "code_verification_status", "platform_type", "throughput",
                           "messaging_limit_tier", "name_status")

    def __init__(self, phone_number_id, access_token, api_url=const.DEFAULT_GRAPH_API_URL,
                 api_version=const.DEFAULT_GRAPH_API_VERSION, waba_id=None, app_id=None,
                 timeout=(5, 30)):
        if not phone_number_id or not access_token:
            raise ValueError("A phone number id and an access token are required")
        self.phone_number_id = str(phone_number_id)
        self._token = access_token
        self.api_url = (api_url or const.DEFAULT_GRAPH_API_URL).rstrip("/")
        self.api_version = normalize_api_version(api_version or const.DEFAULT_GRAPH_API_VERSION)
        self.waba_id = waba_id and str(waba_id)
        self.app_id = app_id and str(app_id)
        self.timeout = timeout

    def __repr__(self):
        return f"<GraphApiClient {self.phone_number_id} @ {self.api_url}/{self.api_version}>"

    # -- transport -----------------------------------------------------------
    def _request(self, method, path, *, json=None, params=None, data=None, files=None,
                 headers=None, stream=False, absolute_url=False):
        """The only network call. ``path`` is relative to ``{api_url}/{api_version}/``
        unless ``absolute_url``. Sends the bearer token (``headers`` may override it).

        Returns the parsed JSON body; with ``stream=True`` the open ``requests.Response``
        (the caller closes it). Raises a ``GraphApiError`` subclass on any failure.
        """
        if absolute_url:
            url = _without_token_param(path)
        else:
            url = f"{self.api_url}/{self.api_version}/{path.lstrip('/')}"
        headers = {"Authorization": f"Bearer {self._token}", **(headers or {})}
        if stream or files or data is not None or _proxied(url):
            status, response_headers, body = self._requests_call(method, url, json, params, data, files,
                                                                 headers, stream)
            if stream and status < 300:
                return body  # the open response
        else:
            status, response_headers, body = self._plain_call(method, url, json, params, headers)
        _logger.debug("Graph API %s %s -> %s", method, urlsplit(url).path, status)
        if status >= 300:
            raise error_from_response(status, response_headers, body).redact(self._token)
        try:
            return _parse_success_body(status, body)
        except GraphApiError as err:
            raise err.redact(self._token) from None

    def _plain_call(self, method, url, json, params, headers):
        if params:
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
        body = None
        headers = {"User-Agent": "strato_whatsapp (Odoo)", "Accept": "application/json", **headers}
        if json is not None:
            body = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        try:
            return _plain_request(method, url, body, headers, self.timeout)
        except OutcomeUnknownError as err:
            raise err.redact(self._token) from None
        except (OSError, http.client.HTTPException) as exc:
            raise _network_error(exc).redact(self._token) from exc

    def _requests_call(self, method, url, json, params, data, files, headers, stream):
        session = _pooled_session(self.api_url, self.phone_number_id, self._token)
        try:
            response = session.request(method, url, json=json, params=params, data=data, files=files,
                                       headers=headers, timeout=self.timeout, stream=stream)
            if stream and response.status_code < 300:
                return response.status_code, response.headers, response
            return response.status_code, response.headers, response.content
        except requests.ReadTimeout as exc:
            raise OutcomeUnknownError("Timed out waiting for the Graph API's answer",
                                      details=type(exc).__name__).redact(self._token) from exc
        except requests.RequestException as exc:
            raise _network_error(exc).redact(self._token) from exc

    # -- phone number ----------------------------------------------------------
    def get_phone_number_info(self):
        """Meta answers ``{"id", "display_phone_number", "verified_name", "quality_rating",
        "code_verification_status", "platform_type", "throughput": {"level"}, ...}``."""
        return self._request("GET", self.phone_number_id,
                             params={"fields": ",".join(self.PHONE_NUMBER_FIELDS)})

    # -- messages --------------------------------------------------------------
    def send_message(self, payload):
        """POST a message payload (from a ``build_*_payload``) as is.

        Meta answers ``{"messaging_product": "whatsapp", "contacts": [{"input", "wa_id"}],
        "messages": [{"id": "wamid...", "message_status"?}]}``; use ``extract_wamid``.
        """
        payload = {"messaging_product": const.MESSAGING_PRODUCT, "recipient_type": "individual", **payload}
        result = self._request("POST", f"{self.phone_number_id}/messages", json=payload)
        if not extract_wamid(result):
            raise GraphApiError("The Graph API accepted the message but returned no message id",
                                details=_snippet(jsonlib.dumps(result)), category=const.ERROR_BAD_RESPONSE)
        return result

    def send_text(self, to, body, preview_url=False, reply_to=None, bsuid=None, callback_data=None):
        """Free-form text (24 h window only). Returns the answer of ``send_message``."""
        return self.send_message(build_text_payload(to, body, preview_url, reply_to, bsuid, callback_data))

    def send_template(self, to, name, language, components=None, reply_to=None, bsuid=None,
                      callback_data=None):
        """An approved template (allowed outside the window). Meta adds
        ``"message_status": "accepted"`` to ``messages[0]``."""
        return self.send_message(build_template_payload(
            to, name, language, components, reply_to, bsuid, callback_data))

    def send_media(self, to, media_type, media_id=None, link=None, caption=None, filename=None,
                   reply_to=None, bsuid=None, callback_data=None):
        """Image, video, audio, document or sticker. Returns the answer of ``send_message``."""
        return self.send_message(build_media_payload(
            to, media_type, media_id, link, caption, filename, reply_to, bsuid, callback_data))

    def send_location(self, to, latitude, longitude, name=None, address=None, reply_to=None,
                      bsuid=None, callback_data=None):
        return self.send_message(build_location_payload(
            to, latitude, longitude, name, address, reply_to, bsuid, callback_data))

    def send_contacts(self, to, contacts, reply_to=None, bsuid=None, callback_data=None):
        return self.send_message(build_contacts_payload(to, contacts, reply_to, bsuid, callback_data))

    def send_reaction(self, to, message_id, emoji, bsuid=None, callback_data=None):
        return self.send_message(build_reaction_payload(to, message_id, emoji, bsuid, callback_data))

    def send_interactive_buttons(self, to, body, buttons, header=None, footer=None, reply_to=None,
                                 bsuid=None, callback_data=None):
        """Up to 3 reply buttons (24 h window only); the tap comes back as an
        ``interactive.button_reply`` inbound message."""
        return self.send_message(build_interactive_buttons_payload(
            to, body, buttons, header, footer, reply_to, bsuid, callback_data))

    def send_interactive_list(self, to, body, button, sections, header=None, footer=None,
                              reply_to=None, bsuid=None, callback_data=None):
        """A list of up to 10 rows (24 h window only); the pick comes back as
        ``interactive.list_reply``."""
        return self.send_message(build_interactive_list_payload(
            to, body, button, sections, header, footer, reply_to, bsuid, callback_data))

    def mark_as_read(self, message_id, typing_indicator=False):
        """Blue ticks on an inbound message (and optionally "typing…"). Meta answers
        ``{"success": true}``."""
        return self._request("POST", f"{self.phone_number_id}/messages",
                             json=build_read_payload(message_id, typing_indicator))

    # -- media -----------------------------------------------------------------
    def upload_media(self, content, mime_type, filename):
        """Upload bytes for sending. Meta answers ``{"id": media_id}`` (valid 30 days)."""
        if len(content) > const.MEDIA_MAX_BYTES:
            raise MediaError("The file is larger than WhatsApp accepts", retryable=False,
                             details=f"{len(content)} bytes")
        return self._request(
            "POST", f"{self.phone_number_id}/media",
            data={"messaging_product": const.MESSAGING_PRODUCT, "type": mime_type},
            files={"file": (filename, content, mime_type)},
        )

    def get_media_url(self, media_id):
        """Meta answers ``{"messaging_product", "url", "mime_type", "sha256", "file_size",
        "id"}``; the url lives about 5 minutes and needs the bearer token (``download_media``)."""
        info = self._request("GET", str(media_id))
        if not info.get("url"):
            raise MediaError("The Graph API returned no download URL for this media", retryable=False)
        if info.get("file_size") is not None:
            info["file_size"] = _to_int(info["file_size"])
        return info

    def download_media(self, url, max_bytes=const.MEDIA_MAX_BYTES, sha256=None):
        """Download a media URL from ``get_media_url`` and return its bytes.

        Streams, and aborts with a non-retryable ``MediaError`` as soon as the file is larger
        than ``max_bytes``. With ``sha256`` (from ``get_media_url``) the content is checked.
        """
        self._check_download_url(url)
        response = self._request("GET", url, stream=True, absolute_url=True)
        try:
            content = self._read_capped(response, max_bytes)
        finally:
            response.close()
        if sha256 and hashlib.sha256(content).hexdigest() != sha256.lower():
            raise MediaError("The downloaded media does not match its checksum")
        return content

    def _read_capped(self, response, max_bytes):
        too_large = MediaError("The media file is larger than allowed", retryable=False,
                               details=f"limit {max_bytes} bytes")
        if (_to_int(response.headers.get("Content-Length")) or 0) > max_bytes:
            raise too_large
        chunks, size = [], 0
        try:
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise too_large
                chunks.append(chunk)
        except requests.ReadTimeout as exc:
            raise OutcomeUnknownError("Timed out waiting for the Graph API's answer",
                                      details=type(exc).__name__).redact(self._token) from exc
        except requests.RequestException as exc:
            raise _network_error(exc).redact(self._token) from exc
        return b"".join(chunks)

    def _check_download_url(self, url):
        # The bearer token goes with the download: only over TLS, or to our own API host
        # (a local simulator or proxy configured as api_url).
        parts, api = urlsplit(url), urlsplit(self.api_url)
        if parts.scheme == "https" or (parts.scheme, parts.netloc) == (api.scheme, api.netloc):
            return
        raise MediaError("Refusing to download media over an insecure URL", retryable=False)

    # -- templates -------------------------------------------------------------
    def iter_templates(self, waba_id=None, limit=100, fields=None, **filters):
        """Yield every template of the WABA, following ``paging.cursors.after`` while Meta
        gives a ``paging.next``. Each is Meta's template object (``id``, ``name``,
        ``language``, ``status``, ``category``, ``parameter_format``, ``components``,
        ``quality_score``, ``rejected_reason``). ``filters``: Meta's ``name``, ``status``..."""
        path = f"{self._waba(waba_id)}/message_templates"
        params = {"limit": limit, **filters}
        if fields:
            params["fields"] = fields if isinstance(fields, str) else ",".join(fields)
        seen = set()
        while True:
            page = self._request("GET", path, params=params)
            yield from page.get("data") or ()
            after = _next_cursor(page)
            if not after or after in seen:
                return
            seen.add(after)
            params = {**params, "after": after}

    def list_templates(self, waba_id=None, limit=100, fields=None, **filters):
        """All templates of the WABA as one list (see ``iter_templates``)."""
        return list(self.iter_templates(waba_id, limit, fields, **filters))

    def create_template(self, payload, waba_id=None):
        """``payload``: name, language, category, components, parameter_format?. Meta answers
        ``{"id", "status": "PENDING"|"APPROVED"|"REJECTED", "category"}``."""
        return self._request("POST", f"{self._waba(waba_id)}/message_templates", json=payload)

    def edit_template(self, template_id, payload):
        """Edit components and/or category. Meta answers ``{"success": true}``."""
        return self._request("POST", str(template_id), json=payload)

    def resumable_upload(self, app_id, content, mime_type, filename):
        """Upload a template header sample with the resumable upload API; returns the file
        handle (``h``) to put in the template's ``example.header_handle``."""
        app_id = app_id or self.app_id
        if not app_id:
            raise ValueError("The resumable upload API needs the Meta app id")
        upload = self._request("POST", f"{app_id}/uploads", params={
            "file_name": filename, "file_length": len(content), "file_type": mime_type,
        })
        result = self._request("POST", _required(upload, "id"), data=content, headers={
            "Authorization": f"OAuth {self._token}", "file_offset": "0",
        })
        return _required(result, "h")

    def _waba(self, waba_id):
        waba_id = waba_id or self.waba_id
        if not waba_id:
            raise ValueError("This call needs the WhatsApp Business Account id")
        return str(waba_id)


def _next_cursor(page):
    paging = page.get("paging") or {}
    if not paging.get("next"):
        return None
    after = (paging.get("cursors") or {}).get("after")
    if after:
        return after
    return (parse_qs(urlsplit(paging["next"]).query).get("after") or [None])[0]


def _required(result, key):
    value = (result or {}).get(key) if isinstance(result, dict) else None
    if not value:
        raise GraphApiError(f"The Graph API answer lacks {key!r}", category=const.ERROR_BAD_RESPONSE,
                            details=_snippet(jsonlib.dumps(result)))
    return value

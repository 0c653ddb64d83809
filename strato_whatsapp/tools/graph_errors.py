"""Graph API errors: Meta's error answers (and network failures) as typed exceptions whose ``category``
(see ``const``) tells the caller what to do: retry, fail the message, or stop the account. Pure Python."""
import http.client
import json as jsonlib
import re
import socket
import time
from email.utils import parsedate_to_datetime
from http import HTTPStatus

import requests

from .. import const


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
        _status_text(status), http_status=status, details=snippet(body),
        retry_after=_retry_after(headers), category=category,
    )


def error_from_payload(error, http_status=None, retry_after=None):
    """Typed error from a Meta error object.

    Works both for the ``error`` of an API answer (``message``, ``code``, ``error_subcode``,
    ``error_data.details``, ``fbtrace_id``) and for an entry of ``errors`` in a failed
    status webhook (``code``, ``title``, ``message``, ``error_data.details``).
    """
    code = to_int(error.get("code"))
    message = error.get("message") or error.get("title") or _status_text(http_status)
    details = _error_details(error)
    category = _category(http_status, code, f"{message} {details or ''}")
    return _CATEGORY_ERRORS.get(category, GraphApiError)(
        message, http_status=http_status, code=code, subcode=to_int(error.get("error_subcode")),
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


def network_error(exc):
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


def parse_success_body(status, body):
    if not body:
        return {}
    data = _parse_json_or_none(body)
    if data is None:
        raise GraphApiError("The Graph API answered with invalid JSON", http_status=status,
                            details=snippet(body), category=const.ERROR_BAD_RESPONSE)
    return data


def snippet(body):
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


def to_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def retry_delay(attempt, retry_after=None):
    """Seconds to wait before retry number ``attempt`` (1-based): exponential backoff
    from const, but never sooner than Meta's Retry-After."""
    backoff = const.RETRY_BACKOFF_BASE * const.RETRY_BACKOFF_FACTOR ** max(attempt - 1, 0)
    return max(min(backoff, const.RETRY_BACKOFF_MAX), retry_after or 0)

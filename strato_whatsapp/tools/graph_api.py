"""Client for Meta's WhatsApp Cloud API (Graph API), and its version policy.

Pure Python: no ORM, no Odoo import, so it can be used and tested without a database. Every HTTP call
goes through ``GraphApiClient._request``. Errors are in ``graph_errors``, the /messages bodies in
``graph_payloads``, the HTTP transports in ``graph_transport``.
"""
import hashlib
import http.client
import json as jsonlib
import logging
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from .. import const
from .graph_errors import (GraphApiError, MediaError, OutcomeUnknownError, error_from_response, network_error,
                           parse_success_body, snippet, to_int)
from .graph_payloads import (build_contacts_payload, build_interactive_buttons_payload,
                             build_interactive_list_payload, build_location_payload, build_media_payload,
                             build_reaction_payload, build_read_payload, build_template_payload,
                             build_text_payload, extract_wamid)
from .graph_transport import plain_request, pooled_session, proxied, refuse_external_in_tests, without_token_param

_logger = logging.getLogger(__name__)


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
            url = without_token_param(path)
        else:
            url = f"{self.api_url}/{self.api_version}/{path.lstrip('/')}"
        refuse_external_in_tests(url)
        headers = {"Authorization": f"Bearer {self._token}", **(headers or {})}
        if stream or files or data is not None or proxied(url):
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
            return parse_success_body(status, body)
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
            return plain_request(method, url, body, headers, self.timeout)
        except OutcomeUnknownError as err:
            raise err.redact(self._token) from None
        except (OSError, http.client.HTTPException) as exc:
            raise network_error(exc).redact(self._token) from exc

    def _requests_call(self, method, url, json, params, data, files, headers, stream):
        session = pooled_session(self.api_url, self.phone_number_id, self._token)
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
            raise network_error(exc).redact(self._token) from exc

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
                                details=snippet(jsonlib.dumps(result)), category=const.ERROR_BAD_RESPONSE)
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
            info["file_size"] = to_int(info["file_size"])
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
        if (to_int(response.headers.get("Content-Length")) or 0) > max_bytes:
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
            raise network_error(exc).redact(self._token) from exc
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
                            details=snippet(jsonlib.dumps(result)))
    return value

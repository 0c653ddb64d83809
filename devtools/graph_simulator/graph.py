"""The Graph API routes: /{version}/{object-id}[/{edge}], bearer-authenticated like Meta's."""
import base64
import re
import secrets
import time
from urllib.parse import quote, urlencode

from . import messages
from .errors import (GraphError, forbidden, invalid_parameter, unauthorized, unknown_edge,
                     unknown_path, unsupported_request)
from .multipart import parse_multipart
from .templates import encode_cursor
from .wire import Response, json_response

SUCCESS = {"success": True}
MIME_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+(?:\s*;\s*[\w.+-]+=[\w.+\-\"]+)*")


class GraphApi:
    def __init__(self, state, server):
        self.state = state
        self.server = server  # gives the public URL and hears about accepted sends
        self.routes = {
            ("phone", "GET", None): self.phone_number,
            ("phone", "POST", "messages"): self.messages,
            ("phone", "POST", "media"): self.upload_media,
            ("media", "GET", None): self.media_info,
            ("media", "DELETE", None): self.delete_media,
            ("waba", "GET", None): self.business_account,
            ("waba", "GET", "phone_numbers"): self.phone_numbers,
            ("waba", "GET", "subscribed_apps"): self.subscribed_apps,
            ("waba", "POST", "subscribed_apps"): self.subscribe_app,
            ("waba", "GET", "message_templates"): self.list_templates,
            ("waba", "POST", "message_templates"): self.create_template,
            ("waba", "DELETE", "message_templates"): self.delete_templates,
            ("template", "GET", None): self.template,
            ("template", "POST", None): self.edit_template,
            ("app", "POST", "uploads"): self.start_upload,
            ("upload", "POST", None): self.upload_bytes,
            ("upload", "GET", None): self.upload_status,
        }

    def handle(self, request, version, segments):
        try:
            return self._dispatch(request, version, segments)
        except GraphError as err:
            return err.to_response()

    def _dispatch(self, request, version, segments):
        if not 1 <= len(segments) <= 2:
            raise unknown_path(request.path)
        object_id, edge = segments[0], (segments[1] if len(segments) == 2 else None)
        grants = self.state.grants.get(access_token(request))
        if grants is None:
            raise unauthorized()
        kind, owner = self._resolve(object_id)
        if kind is None:
            raise unsupported_request(request.method, object_id)
        if owner is not None and owner not in grants:
            raise forbidden(object_id)
        handler = self.routes.get((kind, request.method, edge))
        if handler is None:
            raise unknown_edge(object_id, edge) if edge else unsupported_request(request.method, object_id)
        return handler(request, object_id, version)

    def _resolve(self, object_id):
        """(kind of object, id of the phone/WABA/app that owns it) or (None, None)."""
        state = self.state
        for kind, registry in (("phone", state.phones), ("waba", state.wabas), ("app", state.apps)):
            if object_id in registry:
                return kind, object_id
        if object_id in state.media:
            return "media", state.media[object_id]["owner"]
        if object_id in state.templates.by_id:
            return "template", state.templates.owner[object_id]
        if object_id in state.uploads:
            return "upload", state.uploads[object_id]["app_id"]
        return None, None

    # phone numbers and WABAs --------------------------------------------------------------
    def phone_number(self, request, phone_number_id, _version):
        account = self.state.phones[phone_number_id]
        return json_response(select_fields(phone_number_info(account), request.query.get("fields")))

    def business_account(self, request, waba_id, _version):
        account = self.state.wabas[waba_id][0]
        info = {"id": waba_id, "name": account["verified_name"], "currency": "EUR",
                "timezone_id": "1", "message_template_namespace": f"sim_{waba_id}"}
        return json_response(select_fields(info, request.query.get("fields")))

    def phone_numbers(self, _request, waba_id, _version):
        return json_response({"data": [phone_number_info(account) for account in self.state.wabas[waba_id]]})

    def subscribed_apps(self, _request, waba_id, _version):
        apps = {account["app_id"] for account in self.state.wabas[waba_id]}
        return json_response({"data": [{"whatsapp_business_api_data": {"id": app_id, "name": "Simulated App"}}
                                       for app_id in sorted(apps)]})

    def subscribe_app(self, _request, _waba_id, _version):
        return json_response(SUCCESS)

    # messages -----------------------------------------------------------------------------
    def messages(self, request, phone_number_id, version):
        payload = request.json
        messages.check_payload(payload, request.json_error)
        if messages.is_mark_as_read(payload):
            messages.check_mark_as_read(payload)
            return json_response(SUCCESS)
        msg_type = messages.check_send(payload)
        record = {
            "wamid": self.state.new_wamid(), "phone_number_id": phone_number_id,
            "to": payload.get("to"), "recipient": payload.get("recipient"), "type": msg_type,
            "payload": payload, "biz_opaque_callback_data": payload.get("biz_opaque_callback_data"),
            "timestamp": time.time(), "version": version,
        }
        self.state.record_send(record)
        self.server.message_accepted(record)
        return json_response(send_answer(payload, record["wamid"], msg_type))

    # media --------------------------------------------------------------------------------
    def upload_media(self, request, phone_number_id, _version):
        try:
            parts = parse_multipart(request.body, request.headers.get("content-type", ""))
        except ValueError as err:
            raise invalid_parameter(str(err)) from None
        if "messaging_product" not in parts or parts["messaging_product"].data != b"whatsapp":
            raise invalid_parameter("messaging_product: the parameter is required and must be 'whatsapp'")
        if "file" not in parts:
            raise invalid_parameter("file: the parameter is required")
        upload = parts["file"]
        mime_type = parts["type"].data.decode("latin-1") if "type" in parts else upload.content_type
        if not is_mime_type(mime_type):
            raise invalid_parameter("type: a MIME type such as image/jpeg is required")
        media_id = self.state.add_media(upload.data, mime_type, upload.filename, owner=phone_number_id)
        return json_response({"id": media_id})

    def media_info(self, _request, media_id, _version):
        media = self.state.media[media_id]
        return json_response({
            "messaging_product": "whatsapp",
            "url": f"{self.server.url}/_media/{media_id}?sig={media['sig']}",
            "mime_type": media["mime_type"], "sha256": media["sha256"],
            "file_size": len(media["content"]), "id": media_id,
        })

    def delete_media(self, _request, media_id, _version):
        del self.state.media[media_id]
        return json_response(SUCCESS)

    def download(self, request, segments):
        """GET /_media/<id>?sig=..: the bytes behind a media URL, for holders of a valid token."""
        try:
            if access_token(request) not in self.state.grants:
                raise unauthorized()
            media = self.state.media.get(segments[1]) if len(segments) == 2 else None
            if media is None or request.query.get("sig") != media["sig"]:
                raise GraphError(404, 100, details="The media URL is unknown or has expired.")
        except GraphError as err:
            return err.to_response()
        headers = ((("Content-Disposition", content_disposition(media["filename"])),)
                   if media["filename"] else ())
        return Response(200, media["content"], media["mime_type"], headers)

    # templates ----------------------------------------------------------------------------
    def list_templates(self, request, waba_id, version):
        templates = self.state.templates
        items, start, end, total = templates.page(waba_id, request.query)
        fields = request.query.get("fields")
        answer = {"data": [select_fields(template, fields) for template in items]}
        if items:
            answer["paging"] = self._paging(request, version, waba_id, start, end, total)
        return json_response(answer)

    def _paging(self, request, version, waba_id, start, end, total):
        paging = {"cursors": {"before": encode_cursor(start), "after": encode_cursor(end)}}
        if end < total:
            paging["next"] = self._page_url(request, version, waba_id, after=encode_cursor(end))
        if start > 0:
            paging["previous"] = self._page_url(request, version, waba_id, before=encode_cursor(start))
        return paging

    def _page_url(self, request, version, waba_id, **cursor):
        query = {key: value for key, value in request.query.items() if key not in ("after", "before")}
        query.update(cursor)
        prefix = f"/{version}" if version else ""
        return f"{self.server.url}{prefix}/{waba_id}/message_templates?{urlencode(query)}"

    def create_template(self, request, waba_id, _version):
        if request.json_error:
            raise invalid_parameter("The request body must be a JSON object")
        template = self.state.templates.create(waba_id, request.json)
        return json_response({"id": template["id"], "status": template["status"],
                              "category": template["category"]})

    def delete_templates(self, request, waba_id, _version):
        name = request.query.get("name")
        if not name:
            raise invalid_parameter("name: the parameter is required")
        if not self.state.templates.delete_named(waba_id, name, request.query.get("hsm_id")):
            raise invalid_parameter(f"Message template \"{name}\" was not found")
        return json_response(SUCCESS)

    def template(self, request, template_id, _version):
        template = self.state.templates.by_id[template_id]
        return json_response(select_fields(template, request.query.get("fields")))

    def edit_template(self, request, template_id, _version):
        if request.json_error or not isinstance(request.json, dict):
            raise invalid_parameter("The request body must be a JSON object")
        self.state.templates.edit(template_id, request.json)
        return json_response(SUCCESS)

    # resumable uploads (template header samples) ------------------------------------------
    def start_upload(self, request, app_id, _version):
        query = request.query
        if not query.get("file_length", "").isdigit():
            raise invalid_parameter("file_length: a byte count is required")
        if not query.get("file_type"):
            raise invalid_parameter("file_type: the parameter is required")
        upload_id = self.state.new_upload(app_id, query.get("file_name"), int(query["file_length"]),
                                          query["file_type"])
        return json_response({"id": upload_id})

    def upload_bytes(self, request, upload_id, _version):
        upload = self.state.uploads[upload_id]
        offset = request.headers.get("file_offset", "0")
        if offset != str(len(upload["data"])):
            raise invalid_parameter(f"file_offset: expected {len(upload['data'])}, got {offset}")
        upload["data"].extend(request.body)
        if upload["handle"] is None:
            file_type = base64.b64encode(upload["file_type"].encode()).decode()
            upload["handle"] = f"4::{file_type}:{secrets.token_urlsafe(24)}"
        return json_response({"h": upload["handle"]})

    def upload_status(self, _request, upload_id, _version):
        return json_response({"id": upload_id, "file_offset": len(self.state.uploads[upload_id]["data"])})


def is_mime_type(value):
    """A MIME type safe to echo back as a Content-Type header."""
    return isinstance(value, str) and MIME_TYPE.fullmatch(value) is not None


def access_token(request):
    """The token from `Authorization: Bearer|OAuth <token>`, or the access_token parameter."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() in ("bearer", "oauth") else None
    return request.query.get("access_token") if request.query_string else None


def phone_number_info(account):
    return {
        "id": account["phone_number_id"],
        "display_phone_number": account["display_phone_number"],
        "verified_name": account["verified_name"],
        "quality_rating": "GREEN",
        "code_verification_status": "VERIFIED",
        "platform_type": "CLOUD_API",
        "throughput": {"level": "STANDARD"},
    }


def send_answer(payload, wamid, msg_type):
    to, recipient = payload.get("to"), payload.get("recipient")
    contact = {"input": to or recipient}
    if to:
        contact["wa_id"] = to.lstrip("+")
    if recipient:
        contact["user_id"] = recipient
    sent = {"id": wamid}
    if msg_type == "template":
        sent["message_status"] = "accepted"
    return {"messaging_product": "whatsapp", "contacts": [contact], "messages": [sent]}


def content_disposition(filename):
    """RFC 6266 value; non-Latin-1 names go in filename* so the header stays encodable."""
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def select_fields(obj, fields):
    """Only the requested fields (Graph's `fields=a,b{c}`), id always included."""
    if not fields:
        return obj
    wanted = {field.split("{")[0].strip() for field in fields.split(",")} | {"id"}
    return {key: value for key, value in obj.items() if key in wanted}

"""multipart/form-data, enough for the media upload (RFC 7578)."""
from collections import namedtuple
from email.message import Message
from email.utils import collapse_rfc2231_value

Part = namedtuple("Part", "data filename content_type")


def header_params(value):
    """(main value, {param: value}) of a header such as Content-Disposition."""
    message = Message()
    message["x"] = value
    params = message.get_params(header="x") or [("", "")]
    return params[0][0].lower(), {name.lower(): collapse_rfc2231_value(val) for name, val in params[1:]}


def parse_multipart(body, content_type):
    """{field name: Part}; raises ValueError when the body is not well-formed multipart."""
    kind, params = header_params(content_type)
    boundary = params.get("boundary")
    if kind != "multipart/form-data" or not boundary:
        raise ValueError("Content-Type must be multipart/form-data with a boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    sections = body.split(delimiter)
    if len(sections) < 3 or not sections[-1].startswith(b"--"):
        raise ValueError("multipart body is not terminated by the closing boundary")
    parts = {}
    for section in sections[1:-1]:
        name, part = _parse_section(section)
        parts[name] = part
    return parts


def _parse_section(section):
    if not section.startswith(b"\r\n") or not section.endswith(b"\r\n"):
        raise ValueError("multipart section not delimited by CRLF")
    head, separator, data = section[2:-2].partition(b"\r\n\r\n")
    if not separator:
        head, data = section[2:-2].removesuffix(b"\r\n"), b""
    headers = _section_headers(head)
    disposition, params = header_params(headers.get("content-disposition", ""))
    if disposition != "form-data" or "name" not in params:
        raise ValueError("multipart section without a form-data name")
    return params["name"], Part(data, params.get("filename"), headers.get("content-type"))


def _section_headers(head):
    headers = {}
    for line in head.decode("utf-8", "replace").split("\r\n"):
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    return headers

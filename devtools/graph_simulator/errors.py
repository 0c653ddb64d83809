"""Graph API error answers, in the shape Meta uses for every failure."""
import itertools
import secrets

from .wire import json_response

_TRACE_PREFIX = "Sim" + secrets.token_hex(3)
_trace_numbers = itertools.count(1)

GRAPH_DOCS = "Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api"
DEFAULT_MESSAGES = {
    4: "(#4) Application request limit reached",
    100: "(#100) Invalid parameter",
    130429: "(#130429) Rate limit hit",
    131000: "Something went wrong",
    131016: "Service unavailable",
    131047: "Re-engagement message",
    131056: "(#131056) (Business Account, Consumer Account) pair rate limit hit",
    190: "Invalid OAuth access token - Cannot parse access token",
    200: "(#200) Permissions error",
}


class GraphError(Exception):
    """A Graph API failure; raised anywhere in a handler, answered in Meta's error shape."""

    def __init__(self, status, code, message=None, details=None, subcode=None, headers=()):
        message = message or DEFAULT_MESSAGES.get(code, "An unknown error occurred")
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or message
        self.subcode = subcode
        self.headers = headers

    def to_response(self):
        error = {"message": self.message, "type": "OAuthException", "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["error_data"] = {"messaging_product": "whatsapp", "details": self.details}
        error["fbtrace_id"] = f"{_TRACE_PREFIX}{next(_trace_numbers):08d}"
        return json_response({"error": error}, self.status, self.headers)


def invalid_parameter(details, subcode=None):
    return GraphError(400, 100, details=details, subcode=subcode)


def unauthorized():
    return GraphError(401, 190, details="The access token is missing, malformed or unknown.")


def forbidden(object_id):
    return GraphError(403, 200, details=f"The access token has no permission on object {object_id}.")


def unsupported_request(method, object_id):
    message = (f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, "
               f"cannot be loaded due to missing permissions, or does not support this operation. "
               f"{GRAPH_DOCS}")
    return GraphError(400, 100, message=message, subcode=33)


def unknown_edge(object_id, edge):
    return GraphError(400, 100, message=f"(#100) Tried accessing nonexisting field ({edge}) "
                                        f"on node {object_id}")


def unknown_path(path):
    return GraphError(400, 100, message=f"Unknown path components: {path}")

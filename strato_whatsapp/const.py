"""Codes, keys and defaults for the WhatsApp Cloud API (Graph API).

No Odoo import here: the API client imports this module and must stay testable without a
database. User-facing text lives in the Odoo layer, keyed by the codes below.
"""

# ---------------------------------------------------------------------------
# Graph API endpoint and versions
# ---------------------------------------------------------------------------
DEFAULT_GRAPH_API_URL = "https://graph.facebook.com"
DEFAULT_GRAPH_API_VERSION = "v25.0"

GRAPH_API_VERSION_PATTERN = r"^v?(\d{1,3})(?:\.(\d{1,2}))?$"
# Meta keeps a version for about two years. We refuse versions that stop working within
# the life of a deployment: below MIN they are expiring, below EXPIRED_BEFORE already gone.
MIN_GRAPH_API_VERSION = (23, 0)
EXPIRED_BEFORE_GRAPH_API_VERSION = (21, 0)
API_VERSION_SUPPORTED = "supported"
API_VERSION_EXPIRING = "expiring"
API_VERSION_EXPIRED = "expired"
API_VERSION_INVALID = "invalid"

# ---------------------------------------------------------------------------
# Message states
# ---------------------------------------------------------------------------
# The one vocabulary of message states: the model's selection, the send queue, the status webhooks, the
# chat and the inbox all use these names (labels live in the Odoo layer, where they are translated).
STATE_QUEUED = "queued"
STATE_SENDING = "sending"
STATE_SENT = "sent"
STATE_DELIVERED = "delivered"
STATE_READ = "read"
STATE_FAILED = "failed"
STATE_RECEIVED = "received"  # every inbound message
# The send may or may not have reached Meta (the connection broke after the request left); any status
# proves it did. Never re-sent by the queue on its own: only a person's Retry sends it again.
STATE_UNKNOWN = "unknown"
STATE_CANCELLED = "cancelled"  # stopped by a person while it waited in the queue; never sent
MESSAGE_STATES = (STATE_QUEUED, STATE_SENDING, STATE_SENT, STATE_DELIVERED, STATE_READ, STATE_FAILED,
                  STATE_RECEIVED, STATE_UNKNOWN, STATE_CANCELLED)
# What a person may retry, what the inbox counts as failed.
FAILED_STATES = (STATE_FAILED, STATE_UNKNOWN)

# Meta status webhook value -> our message state.
META_STATUS_TO_STATE = {
    "sent": STATE_SENT,
    "delivered": STATE_DELIVERED,
    "read": STATE_READ,
    "failed": STATE_FAILED,
}

# Status webhooks arrive out of order ("read" before "delivered" is normal), so a state
# only moves to a higher rank. An unknown outcome ranks as "sending": any status moves it on.
STATE_RANK = {
    STATE_QUEUED: 0,
    STATE_SENDING: 1,
    STATE_UNKNOWN: 1,
    STATE_SENT: 2,
    STATE_DELIVERED: 3,
    STATE_READ: 4,
}
# "failed" has no rank: it is accepted only while the message has not reached the phone.
# A late "failed" after "delivered"/"read" describes nothing the user did not already get.
FAILED_ALLOWED_FROM = frozenset({STATE_QUEUED, STATE_SENDING, STATE_SENT, STATE_UNKNOWN})

# ---------------------------------------------------------------------------
# Error categories (what to do about a Graph API error)
# ---------------------------------------------------------------------------
ERROR_RETRYABLE = "retryable"
ERROR_WINDOW_CLOSED = "window_closed"
ERROR_RECIPIENT = "recipient"
ERROR_INVALID_PARAMETER = "invalid_parameter"
ERROR_TEMPLATE = "template"
ERROR_AUTH = "auth"
ERROR_PERMISSION = "permission"
ERROR_ACCOUNT_RESTRICTED = "account_restricted"
ERROR_MARKETING_OPT_OUT = "marketing_opt_out"
ERROR_WITHHELD = "withheld"
ERROR_MEDIA = "media"
ERROR_BAD_RESPONSE = "bad_response"
ERROR_UNKNOWN = "unknown"

RATE_LIMIT_ERROR_CODES = frozenset({4, 80007, 130429, 131056})
PAIR_RATE_LIMIT_ERROR_CODE = 131056
# 1, 2 and 133004 are Meta's "API unknown / service unavailable" codes: transient.
TRANSIENT_ERROR_CODES = frozenset({1, 2, 131000, 131016, 131057, 133004})
RETRYABLE_ERROR_CODES = RATE_LIMIT_ERROR_CODES | TRANSIENT_ERROR_CODES
WINDOW_CLOSED_ERROR_CODES = frozenset({131047})
BSUID_NOT_ALLOWED_ERROR_CODE = 131062
RECIPIENT_ERROR_CODES = frozenset({131026, BSUID_NOT_ALLOWED_ERROR_CODE})
# 100 is also a recipient error when it names the recipient (decided from its details).
INVALID_PARAMETER_ERROR_CODES = frozenset({100, 131008, 131009})
TEMPLATE_ERROR_CODES = frozenset({132000, 132001, 132005, 132007, 132012, 132015, 132016})
AUTH_ERROR_CODES = frozenset({190})
PERMISSION_ERROR_CODES = frozenset({10, *range(200, 300)})
ACCOUNT_RESTRICTED_ERROR_CODES = frozenset({368, 131031})
MARKETING_OPT_OUT_ERROR_CODES = frozenset({131050})
WITHHELD_ERROR_CODES = frozenset({131049})
MEDIA_ERROR_CODES = frozenset({131052, 131053})

ERROR_CODE_CATEGORY = {
    code: category
    for codes, category in (
        (RETRYABLE_ERROR_CODES, ERROR_RETRYABLE),
        (WINDOW_CLOSED_ERROR_CODES, ERROR_WINDOW_CLOSED),
        (RECIPIENT_ERROR_CODES, ERROR_RECIPIENT),
        (INVALID_PARAMETER_ERROR_CODES, ERROR_INVALID_PARAMETER),
        (TEMPLATE_ERROR_CODES, ERROR_TEMPLATE),
        (AUTH_ERROR_CODES, ERROR_AUTH),
        (PERMISSION_ERROR_CODES, ERROR_PERMISSION),
        (ACCOUNT_RESTRICTED_ERROR_CODES, ERROR_ACCOUNT_RESTRICTED),
        (MARKETING_OPT_OUT_ERROR_CODES, ERROR_MARKETING_OPT_OUT),
        (WITHHELD_ERROR_CODES, ERROR_WITHHELD),
        (MEDIA_ERROR_CODES, ERROR_MEDIA),
    )
    for code in codes
}

# Categories the send queue retries by itself (media only MEDIA_RETRY_MAX_ATTEMPTS times).
RETRY_CATEGORIES = frozenset({ERROR_RETRYABLE, ERROR_MEDIA})
# Categories that concern the whole account: stop sending and tell an administrator.
ACCOUNT_BLOCKING_CATEGORIES = frozenset({ERROR_AUTH, ERROR_PERMISSION, ERROR_ACCOUNT_RESTRICTED})

# ---------------------------------------------------------------------------
# Retries and throughput
# ---------------------------------------------------------------------------
RETRY_BACKOFF_BASE = 5  # seconds before the first retry
RETRY_BACKOFF_FACTOR = 2
RETRY_BACKOFF_MAX = 900  # seconds
RETRY_MAX_ATTEMPTS = 6
MEDIA_RETRY_MAX_ATTEMPTS = 3

DEFAULT_THROUGHPUT_MPS = 80  # messages per second per phone number (Meta's default tier)
PAIR_RATE_LIMIT_SECONDS = 6  # one message every ~6 s to the same user (else 131056)
# Meta lets a burst of up to 45 messages go to one user, borrowed from the time to come; we keep well
# under it (an agent's handful of photos, a template and its follow-up), and wait for the rest.
PAIR_BURST = 10

# ---------------------------------------------------------------------------
# Messages, media and templates
# ---------------------------------------------------------------------------
MESSAGING_PRODUCT = "whatsapp"
MESSAGE_TYPES = (
    "text", "template", "image", "video", "audio", "document", "sticker",
    "location", "contacts", "interactive", "reaction",
)
MEDIA_TYPES = ("image", "video", "audio", "document", "sticker")
MEDIA_CAPTION_TYPES = frozenset({"image", "video", "document"})
MEDIA_MAX_BYTES = 100 * 1024 * 1024
INTERACTIVE_MAX_BUTTONS = 3
INTERACTIVE_BUTTON_TITLE_MAX = 20
INTERACTIVE_LIST_MAX_ROWS = 10
INTERACTIVE_LIST_MAX_SECTIONS = 10
INTERACTIVE_LIST_ROW_TITLE_MAX = 24
INTERACTIVE_LIST_ROW_DESCRIPTION_MAX = 72

TEMPLATE_CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
TEMPLATE_STATUSES = (
    "APPROVED", "PENDING", "REJECTED", "PAUSED", "DISABLED", "IN_APPEAL",
    "PENDING_DELETION", "DELETED", "LIMIT_EXCEEDED", "ARCHIVED",
)

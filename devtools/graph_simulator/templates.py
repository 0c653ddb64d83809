"""Message templates per WABA: seeding, creation, edits and cursor paging like Meta's."""
import base64
import re

from .errors import invalid_parameter

CATEGORIES = ("MARKETING", "UTILITY", "AUTHENTICATION")
PARAMETER_FORMATS = ("POSITIONAL", "NAMED")
TEMPLATE_NAME = re.compile(r"[a-z0-9_]{1,512}")
DUPLICATE_SUBCODE = 2388024
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 1000
LIST_FILTERS = ("name", "status", "category", "language")


class TemplateStore:
    def __init__(self, new_id):
        self._new_id = new_id
        self.by_waba = {}
        self.by_id = {}
        self.owner = {}
        self._by_key = {}

    def clear(self):
        self.by_waba.clear()
        self.by_id.clear()
        self.owner.clear()
        self._by_key.clear()

    def seed(self, waba_id, raw_templates):
        """Store ready-made templates (APPROVED unless said otherwise); same name+language replaces."""
        ids = []
        for raw in raw_templates:
            raw = dict(raw)
            if not isinstance(raw.get("name"), str) or not raw["name"]:
                raise ValueError("every seeded template needs a name")
            target_waba = str(raw.pop("waba_id", None) or waba_id)
            existing = self._by_key.get((target_waba, raw.get("name"), raw.get("language", "en_US")))
            if existing:
                self.delete(existing["id"])
            ids.append(self._store(target_waba, self._complete(raw)))
        return ids

    def create(self, waba_id, fields):
        """A template submitted through the API: validated, then PENDING review."""
        _check_new_template(fields)
        if (waba_id, fields["name"], fields["language"]) in self._by_key:
            raise invalid_parameter(
                f'Message template "{fields["name"]}" already exists in language "{fields["language"]}"',
                subcode=DUPLICATE_SUBCODE)
        template = self._complete(dict(fields, status="PENDING"))
        self._store(waba_id, template)
        return template

    def edit(self, template_id, fields):
        editable = {key: fields[key] for key in ("components", "category") if key in fields}
        if not editable:
            raise invalid_parameter("components or category is required to edit a template")
        if "category" in editable and editable["category"] not in CATEGORIES:
            raise invalid_parameter(f"category must be one of {', '.join(CATEGORIES)}")
        if "components" in editable:
            _check_components(editable["components"])
        self.by_id[template_id].update(editable)

    def set_status(self, template_id, status, reason=None):
        template = self.by_id[template_id]
        template["status"] = status
        template["rejected_reason"] = reason or "NONE"
        return template

    def delete(self, template_id):
        template = self.by_id.pop(template_id)
        waba_id = self.owner.pop(template_id)
        self._by_key.pop((waba_id, template["name"], template["language"]), None)
        self.by_waba[waba_id].remove(template)

    def delete_named(self, waba_id, name, template_id=None):
        doomed = [template["id"] for template in self.by_waba.get(waba_id, ())
                  if template["name"] == name and template_id in (None, template["id"])]
        for doomed_id in doomed:
            self.delete(doomed_id)
        return len(doomed)

    def find(self, waba_id, name, language=None):
        for template in self.by_waba.get(waba_id, ()):
            if template["name"] == name and language in (None, template["language"]):
                return template
        return None

    def page(self, waba_id, query):
        """One page of the WABA's templates: (items, start, end, total) after filtering."""
        matching = [template for template in self.by_waba.get(waba_id, ())
                    if _matches_filters(template, query)]
        limit = _page_size(query.get("limit"))
        start = decode_cursor(query["after"]) if query.get("after") else 0
        if query.get("before") and not query.get("after"):
            start = max(0, decode_cursor(query["before"]) - limit)
        end = min(start + limit, len(matching))
        return matching[start:end], start, end, len(matching)

    def _complete(self, raw):
        template = {
            "id": str(raw.get("id") or self._new_id()),
            "name": raw.get("name"),
            "language": raw.get("language", "en_US"),
            "status": raw.get("status", "APPROVED"),
            "category": raw.get("category", "UTILITY"),
            "parameter_format": raw.get("parameter_format", "POSITIONAL"),
            "components": raw.get("components") or [{"type": "BODY", "text": "Hello"}],
            "quality_score": raw.get("quality_score", {"score": "UNKNOWN"}),
            "rejected_reason": raw.get("rejected_reason", "NONE"),
        }
        extra = {key: value for key, value in raw.items() if key not in template}
        return dict(template, **extra)

    def _store(self, waba_id, template):
        self.by_waba.setdefault(waba_id, []).append(template)
        self.by_id[template["id"]] = template
        self.owner[template["id"]] = waba_id
        self._by_key[(waba_id, template["name"], template["language"])] = template
        return template["id"]


def encode_cursor(offset):
    return base64.urlsafe_b64encode(f"sim-offset:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor):
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, offset = text.partition(":")
        if prefix != "sim-offset":
            raise ValueError(cursor)
        return max(0, int(offset))
    except ValueError:
        raise invalid_parameter(f"Invalid cursor: {cursor}") from None


def _page_size(raw_limit):
    if raw_limit in (None, ""):
        return DEFAULT_PAGE_SIZE
    if not str(raw_limit).isdigit() or int(raw_limit) < 1:
        raise invalid_parameter("limit must be a positive integer")
    return min(int(raw_limit), MAX_PAGE_SIZE)


def _matches_filters(template, query):
    for key in LIST_FILTERS:
        wanted = query.get(key)
        if not wanted:
            continue
        if key == "name" and wanted not in template["name"]:
            return False
        if key != "name" and template.get(key) != wanted:
            return False
    return True


def _check_new_template(fields):
    if not isinstance(fields, dict):
        raise invalid_parameter("the request body must be a JSON object")
    if not TEMPLATE_NAME.fullmatch(str(fields.get("name", ""))):
        raise invalid_parameter("name: lowercase letters, digits and underscores only")
    if not fields.get("language") or not isinstance(fields["language"], str):
        raise invalid_parameter("language is required")
    if fields.get("category") not in CATEGORIES:
        raise invalid_parameter(f"category must be one of {', '.join(CATEGORIES)}")
    if fields.get("parameter_format", "POSITIONAL") not in PARAMETER_FORMATS:
        raise invalid_parameter(f"parameter_format must be one of {', '.join(PARAMETER_FORMATS)}")
    _check_components(fields.get("components"))


def _check_components(components):
    if not isinstance(components, list) or not components:
        raise invalid_parameter("components must be a non-empty list")
    for component in components:
        if not isinstance(component, dict) or not component.get("type"):
            raise invalid_parameter("each component needs a type")


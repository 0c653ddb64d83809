"""Fault injection: rules that turn matching requests into errors, delays or dead connections."""
import math
import random

FAULT_KINDS = ("http", "delay", "drop", "timeout")
DEFAULT_CODES = {400: 100, 401: 190, 403: 200, 429: 130429}
DEFAULT_TIMEOUT_SECONDS = 30.0


class FaultRule:
    __slots__ = ("path_contains", "method", "probability", "remaining", "kind", "status", "code",
                 "subcode", "message", "details", "retry_after", "delay", "to")

    def __init__(self, raw):
        if not isinstance(raw, dict):
            raise ValueError("each fault rule must be an object")
        self.kind = raw.get("kind", "http")
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        self.path_contains = raw.get("path_contains")
        self.method = raw["method"].upper() if raw.get("method") else None
        self.probability = float(raw.get("probability", 1))
        self.remaining = int(raw["count"]) if raw.get("count") is not None else None
        self.status = int(raw.get("status", 500))
        self.code = int(raw.get("code", DEFAULT_CODES.get(self.status, 131000)))
        self.subcode = raw.get("error_subcode")
        self.message = raw.get("message")
        self.details = raw.get("details")
        # Retry-After carries whole seconds.
        self.retry_after = math.ceil(float(raw["retry_after"])) if raw.get("retry_after") is not None else None
        default_delay = DEFAULT_TIMEOUT_SECONDS if self.kind == "timeout" else 0.0
        self.delay = float(raw.get("delay", default_delay))
        self.to = _digits_or_id(raw["to"]) if raw.get("to") else None

    def matches(self, request):
        if self.remaining == 0:
            return False
        if self.method and request.method != self.method:
            return False
        if self.path_contains and self.path_contains not in request.path:
            return False
        return self.to is None or self.to in _recipients(request.json)

    def describe(self):
        return {"kind": self.kind, "path_contains": self.path_contains, "method": self.method,
                "probability": self.probability, "remaining": self.remaining, "status": self.status,
                "code": self.code, "to": self.to}


class FaultBook:
    """The active rules; the first matching rule whose dice roll hits is applied."""

    def __init__(self):
        self.rules = []
        self.rng = random.Random()

    def replace(self, raw_rules, seed=None):
        rules = [FaultRule(raw) for raw in raw_rules]
        self.rules = rules
        self.rng = random.Random(seed)

    def pick(self, request):
        for rule in self.rules:
            if not rule.matches(request):
                continue
            if rule.probability < 1 and self.rng.random() >= rule.probability:
                continue
            if rule.remaining is not None:
                rule.remaining -= 1
            return rule
        return None

    def describe(self):
        return [rule.describe() for rule in self.rules]


def _digits_or_id(value):
    return str(value).lstrip("+")


def _recipients(payload):
    if not isinstance(payload, dict):
        return ()
    return {_digits_or_id(payload[key]) for key in ("to", "recipient") if payload.get(key)}

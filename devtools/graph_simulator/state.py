"""Everything the simulator remembers. Only the event loop thread touches it."""
import base64
import hashlib
import hmac
import itertools
import secrets
from collections import deque

from .faults import FaultBook
from .templates import TemplateStore

DEFAULT_ACCOUNT = {
    "phone_number_id": "100000000000001",
    "waba_id": "200000000000001",
    "access_token": "sim-token",
    "app_secret": "sim-app-secret",
    "display_phone_number": "+34 600 000 000",
    "verified_name": "Strato Inmobiliaria",
    "app_id": "300000000000001",
}
REQUEST_LOG_SIZE = 10_000


def normalized_account(raw):
    account = dict(DEFAULT_ACCOUNT, **raw)
    return {key: str(value) for key, value in account.items()}


class SimState:
    def __init__(self, accounts=None):
        self.accounts = [normalized_account(raw) for raw in accounts or [{}]]
        self.phones = {account["phone_number_id"]: account for account in self.accounts}
        self.wabas = self._group_by("waba_id")
        self.apps = {account["app_id"]: account for account in self.accounts}
        self.grants = self._grants_by_token()
        self._numbers = itertools.count(1)
        # The run tag keeps wamids unique across simulator restarts against one database.
        self.run_tag = secrets.token_hex(4).upper()
        self._url_key = secrets.token_bytes(16)
        self.templates = TemplateStore(self.new_numeric_id)
        self.media = {}
        self.uploads = {}
        self.faults = FaultBook()
        self.clear_traffic()

    def _group_by(self, key):
        groups = {}
        for account in self.accounts:
            groups.setdefault(account[key], []).append(account)
        return groups

    def _grants_by_token(self):
        grants = {}
        for account in self.accounts:
            owned = grants.setdefault(account["access_token"], set())
            owned.update((account["phone_number_id"], account["waba_id"], account["app_id"]))
        return grants

    def clear_traffic(self):
        self.request_log = deque(maxlen=REQUEST_LOG_SIZE)
        self.sent_messages = []
        self.by_callback = {}
        self.by_status = {}
        self.counters = {"requests": 0, "sends_accepted": 0, "faults_injected": 0,
                         "webhooks_posted": 0, "webhooks_failed": 0}
        self.faults.replace([])

    def reset(self, templates=False, media=False):
        self.clear_traffic()
        if templates:
            self.templates.clear()
        if media:
            self.media.clear()
            self.uploads.clear()

    # ids ------------------------------------------------------------------------------------
    def new_numeric_id(self, base=700_000_000_000_000):
        return str(base + next(self._numbers))

    def new_wamid(self):
        return f"wamid.HBgL{self.run_tag}{next(self._numbers):012d}"

    # accounts -------------------------------------------------------------------------------
    def account_for_phone(self, phone_number_id):
        return self.phones.get(phone_number_id) or self.accounts[0]

    def account_for_waba(self, waba_id):
        owners = self.wabas.get(waba_id)
        return owners[0] if owners else self.accounts[0]

    # traffic --------------------------------------------------------------------------------
    def record_request(self, request, version, status, fault=None):
        self.counters["requests"] += 1
        key = str(status) if status is not None else fault
        self.by_status[key] = self.by_status.get(key, 0) + 1
        entry = {"method": request.method, "path": request.path, "query": request.query_string,
                 "version": version, "headers": request.headers, "json": request.json,
                 "status": status}
        if fault:
            entry["fault"] = fault
        self.request_log.append(entry)

    def record_send(self, record):
        self.sent_messages.append(record)
        self.counters["sends_accepted"] += 1
        callback = record.get("biz_opaque_callback_data")
        if callback is not None:
            self.by_callback[callback] = self.by_callback.get(callback, 0) + 1

    def requests(self, path_contains=None):
        return [entry for entry in self.request_log
                if path_contains is None or path_contains in entry["path"]]

    def sent(self):
        return {"messages": list(self.sent_messages), "by_callback": dict(self.by_callback)}

    def stats(self):
        return dict(self.counters, by_status=dict(self.by_status), faults=self.faults.describe())

    # media ----------------------------------------------------------------------------------
    def add_media(self, content, mime_type, filename=None, owner=None):
        media_id = self.new_numeric_id(base=900_000_000_000_000)
        self.media[media_id] = {
            "id": media_id, "content": bytes(content), "mime_type": mime_type,
            "filename": filename, "owner": owner,
            "sha256": hashlib.sha256(content).hexdigest(), "sig": self._url_signature(media_id),
        }
        return media_id

    def _url_signature(self, media_id):
        return hmac.new(self._url_key, media_id.encode(), hashlib.sha256).hexdigest()[:24]

    # resumable uploads ----------------------------------------------------------------------
    def new_upload(self, app_id, file_name, file_length, file_type):
        upload_id = "upload:" + base64.urlsafe_b64encode(secrets.token_bytes(12)).decode()
        self.uploads[upload_id] = {"id": upload_id, "app_id": app_id, "file_name": file_name,
                                   "file_length": file_length, "file_type": file_type,
                                   "data": bytearray(), "handle": None}
        return upload_id


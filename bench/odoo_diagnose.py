# Runs inside `odoo-bin shell` (variable `env` given); called by bench/webhook_load.py --profile.
# Where the webhook's time and SQL go, without load and without touching the addon's code: stores the
# bodies of BENCH_SINGLE_BODIES (one message each) and BENCH_BATCH_BODIES (50 each) as events the way
# the controller does, runs the processing cron method on them, and measures each step with a wrapper
# put around the addon's methods in this process only. Writes JSON to BENCH_DIAG_OUT.
import collections
import json
import os
import re
import threading
import time

THREAD = threading.current_thread()
STEPS = {
    "strato.whatsapp.webhook.event": ["_store", "_cron_process", "_claim_batch", "_apply", "_commit_progress",
                                      "_accounts_by_phone_number_id", "_log_unhandled", "write"],
    "strato.whatsapp.message": ["_receive", "_new_events_only", "_inbound_values", "create",
                                "_touch_conversations", "_apply_reactions", "_post_inbound_to_chatter",
                                "_apply_opt_keywords", "_notify_chat"],
    "strato.whatsapp.conversation": ["_for_senders"],
    "crm.lead": ["_whatsapp_assign_leads", "_whatsapp_open_leads_by_key", "create", "message_post"],
    "ir.cron": ["_trigger", "_notify_progress"],
}


def shape(query):
    """A query with its literals and placeholder lists folded, to count queries of the same kind."""
    query = query.decode() if isinstance(query, bytes) else str(query)
    query = re.sub(r"\s+", " ", query).strip()
    query = re.sub(r"'(?:[^']|'')*'", "?", query)
    query = re.sub(r"\b\d+\b", "?", query)
    query = re.sub(r"%s(?:\s*,\s*%s)+", "%s...", query)
    query = re.sub(r"\(\s*\?(?:\s*,\s*\?)+\s*\)", "(?...)", query)
    return query[:180]


class Recorder:
    def __init__(self):
        self.reset()

    def reset(self):
        self.queries = collections.Counter()
        self.query_time = collections.Counter()
        self.steps = collections.defaultdict(lambda: [0, 0.0, 0])  # calls, seconds, queries
        self.count = 0
        self.sql_seconds = 0.0

    def hook(self, _cursor, query, _params, _start, delay):
        key = shape(query)
        self.queries[key] += 1
        self.query_time[key] += delay
        self.count += 1
        self.sql_seconds += delay

    def wrap(self, model, name):
        cls = type(env[model])  # noqa: F821 - the registry class: patched in this process only
        original = getattr(cls, name)
        recorder = self

        def wrapper(self, *args, **kwargs):
            started, queries = time.perf_counter(), recorder.count
            try:
                return original(self, *args, **kwargs)
            finally:
                step = recorder.steps[f"{model}.{name}"]
                step[0] += 1
                step[1] += time.perf_counter() - started
                step[2] += recorder.count - queries
        setattr(cls, name, wrapper)

    def report(self, units, label):
        return {
            "unit": label, "units": units, "queries": self.count,
            "queries_per_unit": round(self.count / units, 1),
            "sql_ms_per_unit": round(1000 * self.sql_seconds / units, 2),
            "steps": {name: {"calls": calls, "ms_per_unit": round(1000 * seconds / units, 2),
                             "queries_per_unit": round(queries / units, 2)}
                      for name, (calls, seconds, queries) in sorted(self.steps.items(), key=lambda i: -i[1][1])},
            "top_queries": [{"per_unit": round(count / units, 2), "ms_per_unit": round(1000 * self.query_time[q] / units, 3),
                             "query": q} for q, count in self.queries.most_common(30)],
        }


recorder = Recorder()
THREAD.query_hooks = [recorder.hook]
for model, names in STEPS.items():
    for name in names:
        recorder.wrap(model, name)

# As in the cron: superuser, and e-mail notifications queued rather than sent at commit (the cron runs
# through a server action, which sets mail_notify_force_send=False).
env = env(su=True, context=dict(env.context, mail_notify_force_send=False))  # noqa: F821
Event = env["strato.whatsapp.webhook.event"]
account = env["strato.whatsapp.account"].search([], limit=1)
out = {}


def read(path):
    with open(path, "rb") as bodies:
        return [line.rstrip(b"\n").split(b"\t", 2)[2] for line in bodies if line.strip()]


# Start from an empty queue: chatter posts left over by the measured phases would be counted otherwise.
env.cr.execute("UPDATE strato_whatsapp_webhook_event SET state = 'failed', next_attempt_at = NULL"
               " WHERE state = 'pending'")
if "chatter_pending" in env["strato.whatsapp.message"]._fields:
    env.cr.execute("UPDATE strato_whatsapp_message SET chatter_pending = NULL WHERE chatter_pending")
env.cr.commit()

for label, path, per_post in (("single", os.environ["BENCH_SINGLE_BODIES"], 1),
                              ("batch", os.environ["BENCH_BATCH_BODIES"], 50)):
    bodies = read(path)
    env.cr.commit()
    recorder.reset()
    started = time.perf_counter()
    for raw in bodies:
        Event._store(account, raw)
    env.cr.commit()
    store = recorder.report(len(bodies), "POST (model part only: _store)")
    store["ms_per_unit_wall"] = round(1000 * (time.perf_counter() - started) / len(bodies), 2)
    recorder.reset()
    started = time.perf_counter()
    Event._cron_process()
    env.cr.commit()
    messages = len(bodies) * per_post
    process = recorder.report(messages, "message")
    process["ms_per_unit_wall"] = round(1000 * (time.perf_counter() - started) / messages, 2)
    out[label] = {"store": store, "process": process}

THREAD.query_hooks = []
with open(os.environ["BENCH_DIAG_OUT"], "w") as out_file:
    json.dump(out, out_file, indent=1)
print("BENCH-DIAGNOSED")

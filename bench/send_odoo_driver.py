# Runs inside `odoo-bin shell` (variables `env`, `odoo` given); called by bench/send_throughput.py.
# BENCH_SEND_CONFIG names a JSON file: {"action": "prepare" | "enqueue" | "drain", ...}; the result is
# written as JSON to the file named by its "result" key.
#
# drain runs the send cron exactly as Odoo's cron thread does (ir.cron._run_job: a fresh cursor as the
# cron's user, _add_progress, _callback -> server action -> model._cron_send(), commit), again and again
# until no outbound message is queued or sending; only the job-acquisition query of the cron thread is
# skipped. The database cursor, the Graph API client's transport and the throttle are wrapped to count
# and time every SQL statement, HTTP call and throttle sleep.
import cProfile
import json
import os
import sys
import time

from odoo.addons.strato_whatsapp.tools import graph_api, throttle

CONFIG = json.load(open(os.environ["BENCH_SEND_CONFIG"], encoding="utf-8"))  # noqa: SIM115
MARKER_KEY = "strato_bench_send.prepared"
LEAD_PREFIX = "Send bench lead "
ACCOUNT_PREFIX = "Send bench account "
env = env(context=dict(env.context, tracking_disable=True))  # noqa: F821
sys.path.insert(0, CONFIG["bench_dir"])
from send_meter import Meter, profile_summary  # noqa: E402


def write_result(result):
    with open(CONFIG["result"], "w", encoding="utf-8") as result_file:
        json.dump(result, result_file, indent=1, default=str)


# ------------------------------------------------------------------------------------------------
# prepare: accounts, leads with distinct valid mobiles, one conversation per lead and account
# ------------------------------------------------------------------------------------------------
def prepare():
    started = time.perf_counter()
    company = env.ref("base.main_company")
    company.country_id = env.ref("base.es")
    # No other Odoo server's cron thread may drain this database behind the benchmark's back;
    # _run_job runs a cron whatever its active flag.
    env["ir.cron"].search([]).write({"active": False})
    accounts = env["strato.whatsapp.account"].create([{
        "name": f"{ACCOUNT_PREFIX}{index}", "phone_number_id": spec["phone_number_id"],
        "business_account_id": spec["waba_id"], "access_token": spec["access_token"],
        "app_secret": spec["app_secret"], "graph_api_url": "http://127.0.0.1:9",
        "messages_per_second": 1000,
    } for index, spec in enumerate(CONFIG["accounts"])])
    leads = create_leads(CONFIG["leads"])
    conversations = env["strato.whatsapp.conversation"]
    for account in accounts:
        for start in range(0, len(leads), 2000):
            conversations._for_leads(leads[start:start + 2000], account)
        env.cr.commit()
    env.cr.execute("SELECT count(*) FROM strato_whatsapp_conversation WHERE lead_id IS NOT NULL")
    count = env.cr.fetchone()[0]
    assert count == len(leads) * len(accounts), f"{count} conversations for {len(leads)} leads"
    env["ir.config_parameter"].sudo().set_param(MARKER_KEY, CONFIG["marker"])
    env.cr.commit()
    write_result({"leads": len(leads), "accounts": len(accounts), "seconds": time.perf_counter() - started})


def create_leads(count):
    context = dict(env.context, mail_create_nolog=True, mail_create_nosubscribe=True, mail_notrack=True)
    Lead = env["crm.lead"].with_context(context)
    spain = env.ref("base.es").id
    leads = Lead
    for start in range(0, count, 1000):
        leads |= Lead.create([{
            "name": f"{LEAD_PREFIX}{index:06d}", "contact_name": f"Contacto {index}", "type": "opportunity",
            "mobile": f"+34 6{10_000_000 + index:08d}", "country_id": spain,
        } for index in range(start, min(count, start + 1000))])
        env.cr.commit()
    valid = leads.filtered(lambda lead: lead.whatsapp_number_state == "valid")
    assert len(valid) == count, f"only {len(valid)} of {count} bench leads have a valid WhatsApp number"
    return leads


# ------------------------------------------------------------------------------------------------
# enqueue: point the accounts at this run's simulator, open the windows, queue one text per lead
# ------------------------------------------------------------------------------------------------
def enqueue():
    accounts = env["strato.whatsapp.account"].search([("name", "like", ACCOUNT_PREFIX)], order="name")
    for account, spec in zip(accounts, CONFIG["accounts"]):
        account.write({"graph_api_url": CONFIG["simulator_url"], "messages_per_second": min(CONFIG["mps"], 1000),
                       "token_invalid": False, "active": True})
        if CONFIG["mps"] > 1000:
            # Capacity scenario only: above Meta's highest tier, which the form does not allow, so that the
            # throttle is not what gets measured.
            account.flush_recordset()
            env.cr.execute("UPDATE strato_whatsapp_account SET messages_per_second = %s WHERE id = %s",
                           [CONFIG["mps"], account.id])
            account.invalidate_recordset(["messages_per_second"])
    env.cr.execute("UPDATE strato_whatsapp_conversation SET last_inbound_at = now() at time zone 'utc' - interval '1 minute'")
    leads = env["crm.lead"].search([("name", "like", LEAD_PREFIX)], order="id", limit=CONFIG["messages"])
    assert len(leads) == CONFIG["messages"], f"{len(leads)} leads prepared, {CONFIG['messages']} wanted"
    env.cr.commit()
    used = accounts[:CONFIG["accounts_used"]]
    started = time.perf_counter()
    Message = env["strato.whatsapp.message"]
    queued = 0
    for start in range(0, len(leads), 1000):
        chunk = leads[start:start + 1000]
        for index, account in enumerate(used):  # leads split evenly between the accounts used
            part = chunk.filtered(lambda lead, i=index: lead.id % len(used) == i)
            messages, skipped = Message._enqueue_for_leads(part, body=CONFIG["body"], account=account)
            assert not skipped, f"{len(skipped)} leads skipped: {next(iter(skipped.values()))}"
            queued += len(messages)
        env.cr.commit()
    seconds = time.perf_counter() - started
    write_result({"queued": queued, "seconds": seconds, "per_second": queued / seconds,
                  "accounts": used.ids})


# ------------------------------------------------------------------------------------------------
# drain: the cron, run the way the cron thread runs it, instrumented
# ------------------------------------------------------------------------------------------------
def outbound_counts(cursor):
    cursor.execute("""SELECT count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'sending')
                        FROM strato_whatsapp_message WHERE direction = 'outbound'""")
    return cursor.fetchone()


def cron_job():
    cron = env.ref("strato_whatsapp.ir_cron_whatsapp_send")
    return {"id": cron.id, "cron_name": cron.cron_name, "ir_actions_server_id": cron.ir_actions_server_id.id,
            "user_id": cron.user_id.id, "lastcall": cron.lastcall, "timed_out_counter": 0, "active": True}


def drain():
    job = cron_job()
    env.cr.commit()
    Cron = type(env["ir.cron"])
    registry = env.registry
    meter = Meter()
    meter.install_sql()
    graph_api.GraphApiClient._request = meter.timed_http(
        graph_api.GraphApiClient._request, label=lambda args, _kw: f"{args[1]} {args[2].rsplit('/', 1)[-1]}",
        is_send=lambda args, _kw: args[2].endswith("/messages"))
    throttle.Throttle.wait = meter.timed_sleep(throttle.Throttle.wait)
    if CONFIG.get("start_at"):  # concurrent workers start together
        time.sleep(max(0.0, CONFIG["start_at"] - time.time()))
    profiler = cProfile.Profile() if CONFIG.get("profile") else None
    runs, idle_runs, deadline = 0, 0, time.monotonic() + CONFIG["timeout"]
    started, cpu_started = time.perf_counter(), time.process_time()
    meter.enabled = True
    if profiler:
        profiler.enable()
    while time.monotonic() < deadline:
        before = meter.sends_ok
        Cron._run_job(job)
        runs += 1
        meter.enabled = False
        with registry.cursor() as cursor:
            if CONFIG.get("retries_due_now"):
                # Benchmark only: production backoff (5 s, 10 s, ... 900 s) would make a 20 % fault run
                # last hours, so requeued messages are made due again between two cron runs.
                cursor.execute("""UPDATE strato_whatsapp_message SET next_attempt_at = now() at time zone 'utc'
                                   WHERE state = 'queued' AND direction = 'outbound'""")
            queued, sending = outbound_counts(cursor)
        meter.enabled = True
        if not queued and not sending:
            break
        if meter.sends_ok == before:  # another worker holds the account lock, or only retries wait
            idle_runs += 1
            time.sleep(0.05)
    wall = time.perf_counter() - started
    meter.enabled = False
    if profiler:
        profiler.disable()
    result = meter.report(meter.sends_ok, wall)
    result.update(cron_runs=runs, idle_runs=idle_runs, timed_out=time.monotonic() >= deadline,
                  worker_cpu_seconds=time.process_time() - cpu_started)
    if profiler:
        result["profile"] = profile_summary(profiler, CONFIG["result"])
    write_result(result)


{"prepare": prepare, "enqueue": enqueue, "drain": drain}[CONFIG["action"]]()

# Runs inside `odoo-bin shell` on the OCA database (variables `env`, `odoo` given); called by
# bench/send_throughput.py. BENCH_SEND_CONFIG names a JSON file: {"action": "prepare" | "send", ...}.
#
# OCA mail_gateway_whatsapp 18.0 has no queue: a message posted on a gateway discuss.channel creates a
# mail.notification and calls send_gateway() at once, which POSTs to Meta with `requests.post` (a new
# connection per call) to the hard-coded https://graph.facebook.com/. The benchmark rewrites that URL
# prefix to the simulator in `requests.post` and changes nothing else.
#   variant "post":   channel.message_post(...) per message, its normal path (message + notification + send)
#   variant "notify": the messages and notifications are created beforehand (not timed); only
#                     mail.notification.send_gateway() is timed, 50 per transaction: the most favourable
#                     way to drive it, and the counterpart of our drain.
import cProfile
import json
import os
import sys
import time

import requests

CONFIG = json.load(open(os.environ["BENCH_SEND_CONFIG"], encoding="utf-8"))  # noqa: SIM115
sys.path.insert(0, CONFIG["bench_dir"])
from send_meter import Meter, profile_summary  # noqa: E402

MARKER_KEY = "strato_bench_send.prepared"
GRAPH = "https://graph.facebook.com/"
BATCH = 50
env = env(context=dict(env.context, tracking_disable=True))  # noqa: F821


def write_result(result):
    with open(CONFIG["result"], "w", encoding="utf-8") as result_file:
        json.dump(result, result_file, indent=1, default=str)


def prepare():
    started = time.perf_counter()
    env["ir.cron"].search([]).write({"active": False})
    account = CONFIG["accounts"][0]
    gateway = env["mail.gateway"].create({
        "name": "Send bench", "gateway_type": "whatsapp", "token": account["access_token"],
        "webhook_key": "sendbench", "webhook_secret": account["app_secret"], "whatsapp_security_key": "sendbench",
        "whatsapp_from_phone": account["phone_number_id"], "whatsapp_account_id": account["waba_id"],
    })
    Channel = env["discuss.channel"]
    for start in range(0, CONFIG["leads"], 500):
        Channel.create([{
            "name": f"Contacto {index}", "gateway_channel_token": f"346{10_000_000 + index:08d}",
            "gateway_id": gateway.id, "channel_type": "gateway",
        } for index in range(start, min(CONFIG["leads"], start + 500))])
        env.cr.commit()
    env["ir.config_parameter"].sudo().set_param(MARKER_KEY, CONFIG["marker"])
    env.cr.commit()
    write_result({"channels": CONFIG["leads"], "seconds": time.perf_counter() - started})


def channels():
    gateway = env["mail.gateway"].search([("name", "=", "Send bench")])
    found = env["discuss.channel"].search([("gateway_id", "=", gateway.id)], order="id", limit=CONFIG["messages"])
    assert len(found) == CONFIG["messages"], f"{len(found)} channels prepared, {CONFIG['messages']} wanted"
    return found


def redirect_graph_to_simulator(meter):
    post = requests.post
    simulator = CONFIG["simulator_url"].rstrip("/") + "/"

    def to_simulator(url, *args, **kwargs):
        return post(url.replace(GRAPH, simulator, 1), *args, **kwargs)
    requests.post = meter.timed_http(to_simulator, label=lambda args, _kw: "POST " + args[0].rsplit("/", 1)[-1],
                                     is_send=lambda args, _kw: args[0].endswith("/messages"))


def send():
    targets = channels()
    meter = Meter()
    meter.install_sql()
    redirect_graph_to_simulator(meter)
    notifications = prepare_notifications(targets) if CONFIG["variant"] == "notify" else None
    env.cr.commit()
    profiler = cProfile.Profile() if CONFIG.get("profile") else None
    started, cpu_started = time.perf_counter(), time.process_time()
    meter.enabled = True
    if profiler:
        profiler.enable()
    if notifications is not None:
        for start in range(0, len(notifications), BATCH):
            notifications[start:start + BATCH].send_gateway()
            env.cr.commit()
    else:
        for index, channel in enumerate(targets):
            channel.message_post(body=CONFIG["body"], message_type="comment", subtype_xmlid="mail.mt_comment")
            if index % BATCH == BATCH - 1:
                env.cr.commit()
        env.cr.commit()
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - started
    meter.enabled = False
    result = meter.report(meter.sends_ok, wall)
    result["worker_cpu_seconds"] = time.process_time() - cpu_started
    env.cr.execute("""SELECT notification_status, count(*) FROM mail_notification
                       WHERE notification_type = 'gateway' GROUP BY 1""")
    result["notification_states"] = dict(env.cr.fetchall())
    if profiler:
        result["profile"] = profile_summary(profiler, CONFIG["result"])
    write_result(result)


def prepare_notifications(targets):
    """The messages and their gateway notifications, as message_post makes them, without sending."""
    started = time.perf_counter()
    quiet = targets.with_context(no_gateway_notification=True)
    values = []
    for channel in quiet:
        message = channel.message_post(body=CONFIG["body"], message_type="comment", subtype_xmlid="mail.mt_comment")
        values.append({"mail_message_id": message.id, "gateway_channel_id": channel.id,
                       "notification_type": "gateway", "gateway_type": "whatsapp"})
    notifications = env["mail.notification"].create(values)
    print(f"prepared {len(notifications)} notifications in {time.perf_counter() - started:.1f}s", flush=True)
    return notifications


def reset():
    env.cr.execute("DELETE FROM mail_notification WHERE notification_type = 'gateway'")
    env.cr.execute("DELETE FROM mail_message WHERE model = 'discuss.channel'")
    env.cr.commit()
    write_result({"reset": True})


{"prepare": prepare, "send": send, "reset": reset}[CONFIG["action"]]()

"""--profile for bench/webhook_load.py: where the webhook's time goes.

1. py-spy (wall clock, --idle) on the cron worker and both HTTP workers while wrk saturates the webhook.
2. SQL per request, from Odoo's own werkzeug log line (query count, SQL time, other time), for
   GET /web/health and the webhook POST, sent one at a time.
3. SQL and time per message in the processing cron, step by step (bench/odoo_diagnose.py in an Odoo shell).
"""
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time

import webhook_load as wl


def py_spy():
    found = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(found):
        raise SystemExit("py-spy is missing: pip install py-spy (bench/run_webhook_bench --profile does it)")
    return found


def profile_run(bench, db):
    result = {"pyspy": profile_under_load(bench, db), "per_request_sql": per_request_sql(bench, db),
              "per_message": per_message(bench, db)}
    result["summary"] = summary(result)
    return result


# ------------------------------------------------------------------------------------------------
def profile_under_load(bench, db):
    args, env = bench.args, bench.env
    seconds = args.profile_duration
    server = bench.start_server(db)
    bench.warm_up(server, db, wl.STRATO_PATH)
    bodies, _ = bench.bodies(db, "profile", int(max(300, 2 * bench.ceiling_rate) * (seconds + 10)), 1)
    wl.log(f"[profile] py-spy on the cron and HTTP workers for {seconds} s while wrk saturates the webhook")
    wrk = subprocess.Popen(
        ["wrk", "-t1", f"-c{args.connections}", f"-d{seconds + 6}s", "--timeout", "10s", "-s",
         os.path.join(wl.HERE, "wrk_post.lua"), f"http://127.0.0.1:{server.port}{wl.STRATO_PATH}", "--", bodies,
         os.path.join(env.work, "profile-send-"), "1", wl.STRATO_PATH],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(3)
    spies = {}
    http_index = 0
    for pid, role in server.processes().items():
        if role not in ("odoo_cron", "odoo_http"):
            continue
        name = "cron" if role == "odoo_cron" else f"http{http_index}"
        http_index += role == "odoo_http"
        output = os.path.join(env.work, f"pyspy-{name}.txt")
        spies[name] = (output, subprocess.Popen(
            [py_spy(), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "100", "--format", "raw",
             "--nolineno", "--idle", "--output", output], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for _, spy in spies.values():
        spy.wait()
    wrk_output = wrk.communicate()[0]
    match = re.search(r"WRK-JSON (\{.*\})", wrk_output)
    load = wl.wrk_summary(json.loads(match.group(1))) if match else {}
    backlog = bench.pending_events(db)
    server.stop()
    env.sql(db, "UPDATE strato_whatsapp_webhook_event SET state = 'failed', next_attempt_at = NULL,"
                " error = 'discarded by the benchmark (profile)' WHERE state = 'pending'", fetch=False)
    profiles = {"load": load, "backlog_events_after": backlog}
    for name, (output, _) in spies.items():
        root = "_cron_process" if name == "cron" else "process_request"
        profiles[name] = analyze(output, root)
    return profiles


def analyze(path, root):
    """Shares of the worker thread's wall time (py-spy --idle): busy under `root`, by function
    (inclusive), by leaf, and by the deepest strato_whatsapp / request-phase frame (who asked for it)."""
    stacks = []
    try:
        with open(path) as collapsed:
            for line in collapsed:
                frames, _, count = line.rstrip("\n").rpartition(" ")
                if frames:
                    stacks.append(([clean(frame) for frame in frames.split(";")], int(count)))
    except FileNotFoundError:
        return {"error": "py-spy wrote nothing (is ptrace allowed?)"}
    worker = [(frames, count) for frames, count in stacks if any("_runloop" in frame for frame in frames)]
    wall = sum(count for _, count in worker)
    rooted = [(frames, count) for frames, count in worker if any(is_root(frame, root) for frame in frames)]
    busy = sum(count for _, count in rooted)
    inclusive, leaf, owner, sql_owner = (collections.Counter() for _ in range(4))
    for frames, count in rooted:
        for frame in set(frames):
            inclusive[frame] += count
        leaf[frames[-1]] += count
        addon = [i for i, frame in enumerate(frames) if "strato_whatsapp" in frame]
        phase = [i for i, frame in enumerate(frames) if any(p in frame for p in PHASES)]
        parts = []
        if addon:
            parts.append(short(frames[addon[-1]]))
        if phase and (not addon or phase[-1] > addon[-1]):
            parts.append(short(frames[phase[-1]]))
        key = " > ".join(parts) or "(other)"
        owner[key] += count
        if any(frame.startswith(("Cursor.execute", "Cursor.commit", "Cursor.rollback", "connect (")) for frame in frames):
            sql_owner[key] += count
    interesting = [(frame, count) for frame, count in inclusive.most_common()
                   if "strato_whatsapp" in frame or any(word in frame for word in KEY_FRAMES)]

    def pct(counter, limit):
        return {frame: round(100 * count / busy, 1) for frame, count in counter.most_common(limit)} if busy else {}
    return {
        "samples_worker_thread": wall, "under_root": busy, "root": root,
        "root_share_of_wall_pct": round(100 * busy / wall, 1) if wall else None,
        "inclusive_pct_of_root": {frame: round(100 * count / busy, 1) for frame, count in interesting[:45]} if busy else {},
        "self_pct_of_root": pct(leaf, 15),
        "by_deepest_owner_pct_of_root": pct(owner, 25),
        "sql_wait_by_owner_pct_of_root": pct(sql_owner, 25),
    }


# Request phases named in the HTTP workers' attribution (the deepest one on the stack owns the sample).
PHASES = ("Request._post_init", "Request._open_registry", "Request._get_session_and_dbname", "IrHttp._authenticate", "IrHttp._match",
          "Request._transactioning", "HttpDispatcher.dispatch", "Cursor.commit", "Cursor.rollback",
          "ir_cron._trigger", "ir_cron._notifydb", "Registry.check_signaling", "MailThread.message_post",
          "MailThread._notify_thread", "MailThread._message_create", "Environment.flush_all",
          "BaseModel._compute_field_value", "Lead.create", "BaseModel.create", "Request._save_session",
          "Application.__call__", "Worker.process_limit", "Registry.signal_changes", "Lead._compute_probabilities",
          "BaseModel.search", "BaseModel.write", "BaseModel._read_group", "Bus._sendone",
          "MailThread._notify_thread_by_email", "MailThread._notify_thread_by_inbox", "MailThread._message_subscribe")


KEY_FRAMES = ("execute (odoo/sql_db.py)", "commit (odoo/sql_db.py)", "message_post", "_notify_thread",
              "_notify_thread_by_email", "_notify_thread_by_inbox", "_message_create", "_notify_",
              "flush_all", "_compute_", "_trigger", "create (odoo/models.py)", "_store", "_serve_db",
              "_open_registry", "_transactioning", "_authenticate", "_match", "check_signaling",
              "_sendone", "_render", "render", "search", "_search", "dispatch", "__call__ (odoo/http.py)",
              "signature_is_valid", "parse_body", "_webhook_candidates", "get_data", "process_limit",
              "memory_info", "_get_default_team_id", "_whatsapp_", "_compute_probabilities", "_post_")


def short(frame):
    name, _, path = frame.partition(" (")
    module = path.split("/")[0] if "/" in path else ""
    return f"{name} [{module}]" if module and module not in ("odoo", "strato_whatsapp") else name


def is_root(frame, root):
    name = frame.split(" (")[0]
    return name == root or name.endswith("." + root)


def clean(frame):
    """'name (/abs/path/odoo/addons/x.py)' -> 'name (odoo/addons/x.py)'."""
    match = re.match(r"^(.*) \((.*)\)$", frame)
    if not match:
        return frame
    name, path = match.groups()
    for marker in ("/odoo/", "/strato_whatsapp/", "/site-packages/", "/lib/python"):
        if marker in path:
            path = path[path.index(marker) + 1:]
            break
    return f"{name} ({path})"


# ------------------------------------------------------------------------------------------------
def per_request_sql(bench, db):
    """Odoo logs each request with its query count, SQL seconds and other seconds (werkzeug INFO)."""
    server = bench.start_server(db, extra=["--log-handler=werkzeug:INFO"])
    bench.warm_up(server, db, wl.STRATO_PATH)
    bodies, _ = bench.bodies(db, "sqlcount", 100, 1)
    for _ in range(100):
        wl.http_request(server.port, "GET", wl.HEALTH_PATH)
    for signature, raw in wl.read_bodies(bodies):
        wl.http_request(server.port, "POST", wl.STRATO_PATH, raw, wl.post_headers(signature))
    deadline = time.time() + 60
    while time.time() < deadline and bench.pending_events(db):
        time.sleep(0.2)
    server.stop()
    bench.env.sql(db, "UPDATE strato_whatsapp_webhook_event SET state = 'failed', next_attempt_at = NULL,"
                      " error = 'discarded by the benchmark (profile)' WHERE state = 'pending'", fetch=False)
    figures = {}
    pattern = re.compile(r'"(GET|POST) (\S+) HTTP/[\d.]+" (\d+) - (\d+) ([\d.]+) ([\d.]+)')
    with open(server.logfile, errors="replace") as logfile:
        for line in logfile:
            match = pattern.search(line)
            if match:
                method, path, _status, queries, sql_time, other_time = match.groups()
                path = path.split("?")[0]
                figures.setdefault(f"{method} {path}", []).append((int(queries), float(sql_time), float(other_time)))
    result = {}
    for key, rows in figures.items():
        rows = rows[-100:]
        result[key] = {"requests": len(rows), "queries_median": sorted(r[0] for r in rows)[len(rows) // 2],
                       "sql_ms_median": round(1000 * sorted(r[1] for r in rows)[len(rows) // 2], 2),
                       "other_ms_median": round(1000 * sorted(r[2] for r in rows)[len(rows) // 2], 2)}
    return result


def per_message(bench, db):
    single, _ = bench.bodies(db, "diag-single", 200, 1)
    batch, _ = bench.bodies(db, "diag-batch", 4, wl.BATCH_SIZE)
    output = os.path.join(bench.env.work, "diagnose.json")
    wl.log("[profile] SQL and time per message, step by step (odoo shell, no load)")
    with open(os.path.join(wl.HERE, "odoo_diagnose.py")) as script:
        bench.env.run_odoo(db, ["shell", "--log-level=warn", "--no-http"], stdin=script.read(), label="diagnose",
                           env={"BENCH_SINGLE_BODIES": single, "BENCH_BATCH_BODIES": batch, "BENCH_DIAG_OUT": output})
    with open(output) as diagnosis:
        return json.load(diagnosis)


# ------------------------------------------------------------------------------------------------
def per_message_lines(label, diag, steps):
    store, process = diag["store"], diag["process"]
    lines = [f"  {label}: _store {store['queries_per_unit']} queries/POST {store['ms_per_unit_wall']} ms; "
             f"cron {process['queries_per_unit']} queries/message, {process['ms_per_unit_wall']} ms/message "
             f"(SQL {process['sql_ms_per_unit']} ms) -> at most {1000 / process['ms_per_unit_wall']:.0f} msg/s "
             "for one cron worker"]
    for name, step in list(process["steps"].items())[:steps]:
        lines.append(f"      {name:<58} {step['ms_per_unit']:>7} ms/msg {step['queries_per_unit']:>6} q/msg")
    return lines


def summary(result):
    lines = ["PROFILE"]
    for key, value in result["per_request_sql"].items():
        lines.append(f"  {key}: {value['queries_median']} queries, SQL {value['sql_ms_median']} ms, "
                     f"other {value['other_ms_median']} ms (median, one request at a time)")
    per_message_runs = [("", result["per_message"])]
    if result.get("per_message_million"):
        per_message_runs.append(("1M leads ", result["per_message_million"]))
    for prefix, runs in per_message_runs:
        for label, diag in runs.items():
            lines.extend(per_message_lines(prefix + label, diag, 12 if not prefix else 6))
    for name in ("cron", "http0", "http1"):
        profile = result["pyspy"].get(name)
        if profile and profile.get("under_root"):
            lines.append(f"  py-spy {name}: {profile['root_share_of_wall_pct']}% of wall time in {profile['root']}; "
                         "top inclusive: " + ", ".join(f"{frame.split(' (')[0]} {pct}%" for frame, pct in
                                                       list(profile["inclusive_pct_of_root"].items())[:10]))
    return "\n".join(lines)

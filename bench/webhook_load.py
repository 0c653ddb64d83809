#!/usr/bin/env python3
"""Webhook load benchmark for strato_whatsapp (issue 3, "Measured, not asserted in timed tests").

One run, one set of server settings (prefork: --workers 2 --max-cron-threads 1, log level warn):
  ceiling    Odoo's own ceiling: a trivial public route (bench probe GET /strato_bench/ping, auth='public',
             the webhook's route options, no database work) at saturation, with wrk; GET /web/health
             (auth='none') is measured too, for reference.
  single     single-message signed POSTs at saturation (wrk): acknowledged POSTs/s, ack latency, and
             end to end (POST sent -> its strato_whatsapp_message row committed), polled every 50 ms.
  fixed      the same at a fixed rate (default 80% of the ceiling), open-loop Python client.
  batch      POSTs of 50 messages, closed loop on end-to-end completion: messages/s end to end.
  dedup      the same payload posted twice: how many messages are stored.
  million    (--million-leads) 1,000,000 more leads in the database, single + fixed again.
  oca        OCA mail_gateway_whatsapp 18.0 from PyPI in its own database: same payloads, same settings.
  profile    (--profile) py-spy on the cron and HTTP workers under load, SQL per request and per message.

Run with Odoo's Python (bench/run_webhook_bench finds it). Results: bench/results/*.json + a summary.
"""
import argparse
import collections
import datetime
import hashlib
import http.client
import importlib.util
import json
import multiprocessing
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
import zlib

import psutil
import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

PHONE_NUMBER_ID = "100000000000001"
WABA_ID = "200000000000001"
DISPLAY_NUMBER = "34600000000"
APP_SECRET = "sim-app-secret"
STRATO_PATH = "/api/webhooks/whatsapp"
OCA_PATH = "/gateway/whatsapp/benchkey/update"
HEALTH_PATH = "/web/health"
CEILING_PATH = "/strato_bench/ping"
MARKER = "strato-bench-v2"  # bump when what the templates hold changes: they are rebuilt
LEAD_PREFIX = "WA bench lead"
BATCH_SIZE = 50

TPL_STRATO = "strato_bench_tpl"
TPL_MILLION = "strato_bench_1m_tpl"
TPL_OCA = "strato_bench_oca_tpl"

_spec = importlib.util.spec_from_file_location(
    "bench_payloads", os.path.join(REPO, "devtools", "graph_simulator", "payloads.py"))
payloads = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(payloads)


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values, pct):
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, int(round(pct / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def ms(seconds):
    return None if seconds is None else round(seconds * 1000.0, 1)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ------------------------------------------------------------------------------------------------
# Environment: Odoo, PostgreSQL, the OCA addons
# ------------------------------------------------------------------------------------------------
class Env:
    def __init__(self, args):
        self.args = args
        self.python = sys.executable
        odoo_spec = importlib.util.find_spec("odoo")
        if odoo_spec is None:
            raise SystemExit("run this with Odoo 18's Python (bench/run_webhook_bench finds it)")
        self.odoo_home = os.path.dirname(os.path.dirname(os.path.abspath(odoo_spec.origin)))
        self.odoo_bin = os.path.join(self.odoo_home, "odoo-bin")
        self.work = os.path.abspath(args.workdir)
        self.data_dir = os.path.join(self.work, "data")
        self.logs = os.path.join(self.work, "logs")
        for folder in (self.work, self.data_dir, self.logs):
            os.makedirs(folder, exist_ok=True)
        self.db = dict(host=args.db_host, port=args.db_port, user=args.db_user)
        self.addon_source, self.addon_version, self.addon_commit = self.snapshot(args.worktree)
        self.addons = ",".join([os.path.join(self.odoo_home, "addons"), os.path.join(self.odoo_home, "odoo", "addons"),
                                self.addon_source, os.path.join(HERE, "probe")])
        self.oca_addons = os.path.join(self.work, "oca_addons")

    def snapshot(self, worktree):
        """The strato_whatsapp measured: the committed HEAD, exported with git archive (so that a work tree
        being edited meanwhile never breaks or skews a run), or the work tree itself with --worktree."""
        if worktree:
            digest = hashlib.sha1()
            for folder, _dirs, files in sorted(os.walk(os.path.join(REPO, "strato_whatsapp"))):
                for name in sorted(files):
                    if not name.endswith(".pyc"):
                        with open(os.path.join(folder, name), "rb") as source:
                            digest.update(name.encode() + source.read())
            return REPO, "worktree-" + digest.hexdigest()[:12], None
        commit = subprocess.check_output(["git", "-C", REPO, "rev-parse", "HEAD"], text=True).strip()
        tree = subprocess.check_output(["git", "-C", REPO, "rev-parse", "HEAD:strato_whatsapp"], text=True).strip()
        target = os.path.join(self.work, "src", commit[:12])
        if not os.path.isdir(os.path.join(target, "strato_whatsapp")):
            os.makedirs(target, exist_ok=True)
            archive = subprocess.run(["git", "-C", REPO, "archive", "HEAD", "strato_whatsapp"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", target], input=archive, check=True)
        return target, tree, commit

    def addon_marker(self, dbname):
        rows = self.sql(dbname, "SELECT value FROM ir_config_parameter WHERE key = 'strato_bench.addon'")
        return rows[0][0] if rows else None

    def ensure_addon(self, dbname):
        """Bring a prepared template to the addon version measured (-u strato_whatsapp) when it changed."""
        if self.addon_marker(dbname) == self.addon_version:
            return
        log(f"template {dbname}: updating strato_whatsapp to {self.addon_version} (-u)")
        self.run_odoo(dbname, ["-u", "strato_whatsapp", "--stop-after-init", "--log-level=warn", "--workers=0",
                               "--max-cron-threads=0"], label="update")
        self.record_addon(dbname)

    def ensure_probe(self, dbname):
        """bench/probe/strato_bench_probe: the minimal writing routes the webhook is compared with."""
        rows = self.sql(dbname, "SELECT state FROM ir_module_module WHERE name = 'strato_bench_probe'")
        if rows and rows[0][0] == "installed":
            return
        log(f"template {dbname}: installing the bench probe routes (bench/probe/strato_bench_probe)")
        self.run_odoo(dbname, ["-i", "strato_bench_probe", "--stop-after-init", "--log-level=warn", "--workers=0",
                               "--max-cron-threads=0"], label="probe")

    def record_addon(self, dbname):
        self.sql(dbname, "INSERT INTO ir_config_parameter (key, value) VALUES ('strato_bench.addon', %s)"
                         " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", [self.addon_version], fetch=False)

    def odoo_args(self, db):
        return [self.python, self.odoo_bin, f"--addons-path={self.addons_for(db)}", "-d", db,
                f"--db_host={self.db['host']}", f"--db_port={self.db['port']}", f"--db_user={self.db['user']}",
                f"--data-dir={self.data_dir}"]

    def addons_for(self, db):
        return self.addons + ("," + self.oca_addons if "oca" in db else "")

    def connect(self, dbname="postgres"):
        connection = psycopg2.connect(dbname=dbname, **self.db)
        connection.autocommit = True
        return connection

    def sql(self, dbname, query, params=None, fetch=True):
        connection = self.connect(dbname)
        try:
            with connection.cursor() as cursor:
                cursor.execute(query, params)
                return cursor.fetchall() if fetch and cursor.description else None
        finally:
            connection.close()

    def db_exists(self, dbname):
        return bool(self.sql("postgres", "SELECT 1 FROM pg_database WHERE datname = %s", [dbname]))

    def marker(self, dbname):
        if not self.db_exists(dbname):
            return None
        try:
            rows = self.sql(dbname, "SELECT value FROM ir_config_parameter WHERE key = 'strato_bench.prepared'")
        except psycopg2.Error:
            return None
        return rows[0][0] if rows else None

    def drop_db(self, dbname):
        self.sql("postgres", f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)', fetch=False)
        shutil.rmtree(self.filestore(dbname), ignore_errors=True)

    def clone_db(self, template, dbname):
        self.drop_db(dbname)
        self.sql("postgres", f'CREATE DATABASE "{dbname}" TEMPLATE "{template}"', fetch=False)
        if os.path.isdir(self.filestore(template)):
            shutil.copytree(self.filestore(template), self.filestore(dbname))

    def filestore(self, dbname):
        return os.path.join(self.data_dir, "filestore", dbname)

    def run_odoo(self, db, extra, stdin=None, env=None, label="odoo"):
        logfile = os.path.join(self.logs, f"{label}-{db}.log")
        command = self.odoo_args(db) + extra
        if extra and extra[0] == "shell":
            command = [self.python, self.odoo_bin, "shell"] + self.odoo_args(db)[2:] + extra[1:]
        with open(logfile, "w") as out:
            result = subprocess.run(command, input=stdin, stdout=out, stderr=subprocess.STDOUT, text=True,
                                    env={**os.environ, **(env or {})})
        if result.returncode != 0:
            with open(logfile) as out:
                sys.stderr.write(out.read()[-4000:])
            raise SystemExit(f"{label} on {db} failed (exit {result.returncode}); log: {logfile}")
        return logfile


# ------------------------------------------------------------------------------------------------
# Databases
# ------------------------------------------------------------------------------------------------
ES_NAMES = ["Lucía", "Martín", "Sofía", "Hugo", "Valentina", "Mateo", "Carmen", "Javier", "Paula", "Diego",
            "Martina", "Tomás", "Elena", "Santiago", "Julieta", "Pablo", "Camila", "Álvaro", "Florencia", "Nicolás"]
ES_SURNAMES = ["García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez",
               "Gómez", "Díaz", "Romero", "Sosa", "Álvarez", "Torres", "Ruiz", "Benítez"]


def lead_specs(count, seed=42):
    """Leads with Spanish and Argentine mobiles typed the way agents type them."""
    rng = random.Random(seed)
    specs = []
    for index in range(count):
        name = f"{rng.choice(ES_NAMES)} {rng.choice(ES_SURNAMES)}"
        if index % 5 < 3:
            number = 611_000_000 + index
            text = str(number)
            mobile = rng.choice([f"{text[:3]} {text[3:6]} {text[6:]}", f"+34 {text}",
                                 f"{text[:3]}-{text[3:5]}-{text[5:7]}-{text[7:]}"])
            country = "ES"
        else:
            subscriber = f"{40_000_000 + index:08d}"
            mobile = rng.choice([f"011 15 {subscriber[:4]}-{subscriber[4:]}", f"+54 9 11 {subscriber[:4]}-{subscriber[4:]}",
                                 f"+54911{subscriber}"])
            country = "AR"
        specs.append({"name": f"{LEAD_PREFIX} {index:05d} - {name}", "contact_name": name, "mobile": mobile,
                      "country": country, "type": "opportunity" if index % 3 == 0 else "lead"})
    return specs


def prepare_strato(env, args):
    if not args.rebuild and env.marker(TPL_STRATO) == MARKER:
        log(f"template {TPL_STRATO}: ready (reused; --rebuild to make it again)")
        env.ensure_addon(TPL_STRATO)
        env.ensure_probe(TPL_STRATO)
        return
    log(f"template {TPL_STRATO}: installing strato_whatsapp without demo data (a few minutes)")
    env.drop_db(TPL_MILLION)
    env.drop_db(TPL_STRATO)
    env.run_odoo(TPL_STRATO, ["-i", "strato_whatsapp", "--without-demo=all", "--stop-after-init",
                              "--log-level=warn", "--workers=0", "--max-cron-threads=0"], label="install")
    leads_file = os.path.join(env.work, "leads.json")
    with open(leads_file, "w") as out:
        json.dump(lead_specs(args.leads), out)
    log(f"template {TPL_STRATO}: account, salespeople, {args.leads} leads")
    with open(os.path.join(HERE, "odoo_prepare.py")) as script:
        env.run_odoo(TPL_STRATO, ["shell", "--log-level=warn", "--no-http"], stdin=script.read(), label="prepare",
                     env=bench_env("strato", BENCH_LEADS=leads_file))
    env.record_addon(TPL_STRATO)
    env.ensure_probe(TPL_STRATO)


def bench_env(kind, **extra):
    return {"BENCH_KIND": kind, "BENCH_MARKER": MARKER, "BENCH_APP_SECRET": APP_SECRET,
            "BENCH_PHONE_NUMBER_ID": PHONE_NUMBER_ID, "BENCH_WABA_ID": WABA_ID, **extra}


MILLION_SQL = """
INSERT INTO crm_lead (
    name, contact_name, type, active, company_id, team_id, stage_id, user_id, country_id,
    mobile, phone_sanitized, whatsapp_number, whatsapp_number_state, whatsapp_mobile_key,
    priority, probability, automated_probability, color, message_bounce, expected_revenue, prorated_revenue,
    recurring_revenue, recurring_revenue_monthly, recurring_revenue_monthly_prorated, recurring_revenue_prorated,
    day_open, day_close, date_open, date_last_stage_update, date_closed, create_date, write_date, create_uid, write_uid)
SELECT
    'Lead ' || n || ' - ' || 'Contacto ' || n, 'Contacto ' || n, CASE WHEN n %% 3 = 0 THEN 'opportunity' ELSE 'lead' END,
    n %% 10 <> 0, %(company)s, %(team)s, CASE WHEN n %% 20 = 0 THEN %(won_stage)s ELSE %(first_stage)s END,
    (%(users)s)[1 + n %% 2], %(country)s,
    '+34650' || lpad(n::text, 6, '0'), '+34650' || lpad(n::text, 6, '0'),
    '+34650' || lpad(n::text, 6, '0'), 'valid', '34650' || lpad(n::text, 6, '0'),
    '0', CASE WHEN n %% 20 = 0 THEN 100 WHEN n %% 10 = 0 THEN 0 ELSE 10 END, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ts, ts, CASE WHEN n %% 20 = 0 THEN ts END, ts, ts, 1, 1
FROM generate_series(0, %(count)s - 1) AS n, LATERAL (SELECT now() at time zone 'UTC' - (n %% 20000) * interval '1 hour' AS ts) AS t
"""


def prepare_million(env, args):
    if not args.rebuild and env.marker(TPL_MILLION) == MARKER + "-1m":
        log(f"template {TPL_MILLION}: ready (reused)")
        env.ensure_addon(TPL_MILLION)
        env.ensure_probe(TPL_MILLION)
        return
    log(f"template {TPL_MILLION}: copy of {TPL_STRATO} + {args.million_count:,} leads by SQL")
    env.clone_db(TPL_STRATO, TPL_MILLION)
    connection = env.connect(TPL_MILLION)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM res_users WHERE login IN ('bench.sales1', 'bench.sales2') ORDER BY id")
            users = [row[0] for row in cursor.fetchall()]
            cursor.execute("SELECT res_id FROM ir_model_data WHERE module = 'sales_team' AND name = 'team_sales_department'")
            team = cursor.fetchone()[0]
            cursor.execute("SELECT id FROM crm_stage WHERE is_won IS NOT TRUE ORDER BY sequence, id LIMIT 1")
            first_stage = cursor.fetchone()[0]
            cursor.execute("SELECT id FROM crm_stage WHERE is_won ORDER BY sequence, id LIMIT 1")
            won_stage = cursor.fetchone()[0]
            cursor.execute("SELECT id FROM res_country WHERE code = 'ES'")
            country = cursor.fetchone()[0]
            started = time.time()
            cursor.execute("BEGIN")
            cursor.execute(MILLION_SQL, {"company": 1, "team": team, "first_stage": first_stage,
                                         "won_stage": won_stage, "users": users, "country": country,
                                         "count": args.million_count})
            # Each lead followed by its salesperson, as when created in the UI.
            cursor.execute("""
                INSERT INTO mail_followers (res_model, res_id, partner_id)
                SELECT 'crm.lead', lead.id, users.partner_id FROM crm_lead lead JOIN res_users users ON users.id = lead.user_id
                 WHERE lead.name LIKE 'Lead %%' ON CONFLICT DO NOTHING""")
            cursor.execute("UPDATE ir_config_parameter SET value = %s WHERE key = 'strato_bench.prepared'",
                           [MARKER + "-1m"])
            cursor.execute("COMMIT")
            log(f"  inserted in {time.time() - started:.0f} s; ANALYZE")
            cursor.execute("ANALYZE")
    finally:
        connection.close()


def prepare_oca(env, args):
    fetch_oca_addons(env)
    if not args.rebuild and env.marker(TPL_OCA) == MARKER:
        log(f"template {TPL_OCA}: ready (reused)")
        return
    log(f"template {TPL_OCA}: installing crm + OCA mail_gateway_whatsapp without demo data")
    env.drop_db(TPL_OCA)
    env.run_odoo(TPL_OCA, ["-i", "crm,phone_validation,mail_gateway_whatsapp", "--without-demo=all",
                           "--stop-after-init", "--log-level=warn", "--workers=0", "--max-cron-threads=0"],
                 label="install")
    with open(os.path.join(HERE, "odoo_prepare.py")) as script:
        env.run_odoo(TPL_OCA, ["shell", "--log-level=warn", "--no-http"], stdin=script.read(), label="prepare",
                     env=bench_env("oca"))


def fetch_oca_addons(env):
    """The 18.0 wheels from PyPI, unpacked as plain addons: pip never touches the Odoo install."""
    wanted = {"mail_gateway": "odoo-addon-mail_gateway", "mail_gateway_whatsapp": "odoo-addon-mail_gateway_whatsapp"}
    if all(os.path.isfile(os.path.join(env.oca_addons, name, "__manifest__.py")) for name in wanted):
        return
    wheels = os.path.join(env.work, "oca_wheels")
    os.makedirs(wheels, exist_ok=True)
    log("downloading OCA mail_gateway + mail_gateway_whatsapp 18.0 wheels (pip download --no-deps)")
    subprocess.run([env.python, "-m", "pip", "download", "-q", "--no-deps", "-d", wheels,
                    "odoo-addon-mail_gateway>=18.0,<18.1", "odoo-addon-mail_gateway_whatsapp>=18.0,<18.1"],
                   check=True)
    os.makedirs(env.oca_addons, exist_ok=True)
    for wheel in os.listdir(wheels):
        if not wheel.endswith(".whl"):
            continue
        with zipfile.ZipFile(os.path.join(wheels, wheel)) as archive:
            for member in archive.namelist():
                if member.startswith("odoo/addons/"):
                    archive.extract(member, env.work)
    for name in wanted:
        source = os.path.join(env.work, "odoo", "addons", name)
        shutil.rmtree(os.path.join(env.oca_addons, name), ignore_errors=True)
        shutil.move(source, os.path.join(env.oca_addons, name))
    shutil.rmtree(os.path.join(env.work, "odoo"), ignore_errors=True)
    try:
        import requests_toolbelt  # noqa: F401  (mail_gateway_whatsapp's external dependency)
    except ImportError:
        subprocess.run([env.python, "-m", "pip", "install", "-q", "requests-toolbelt"], check=True)


def oca_versions(env):
    versions = {}
    for name in ("mail_gateway", "mail_gateway_whatsapp"):
        path = os.path.join(env.oca_addons, name, "__manifest__.py")
        if os.path.isfile(path):
            with open(path) as manifest:
                versions[name] = eval(manifest.read(), {}).get("version")  # noqa: S307 - an OCA manifest dict
    return versions


# ------------------------------------------------------------------------------------------------
# The Odoo server under test
# ------------------------------------------------------------------------------------------------
class OdooServer:
    """odoo-bin in prefork mode, in its own process group so that nothing outlives the benchmark."""

    def __init__(self, env, db, args, extra=()):
        self.env, self.db, self.args, self.extra = env, db, args, list(extra)
        self.process = None
        self.port = None

    def start(self):
        self.port, gevent_port = free_port(), free_port()
        self.logfile = os.path.join(self.env.logs, f"server-{self.db}-{time.strftime('%H%M%S')}.log")
        command = self.env.odoo_args(self.db) + [
            # -d without --db-filter: Odoo then serves that database without listing databases, which
            # costs a new PostgreSQL connection to 'postgres' on every request otherwise.
            "--workers=2", "--max-cron-threads=1", "--http-interface=127.0.0.1",
            f"--http-port={self.port}", f"--gevent-port={gevent_port}", "--log-level=warn",
            f"--logfile={self.logfile}"] + self.extra
        log(f"starting Odoo on 127.0.0.1:{self.port} ({self.db}): --workers=2 --max-cron-threads=1 --log-level=warn")
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"Odoo exited with {self.process.returncode}; log: {self.logfile}")
            if http_request(self.port, "GET", HEALTH_PATH, timeout=5)[0] == 200:
                break
            time.sleep(0.5)
        else:
            raise SystemExit(f"Odoo did not answer in 180 s; log: {self.logfile}")
        for _ in range(40):  # both HTTP workers warm
            http_request(self.port, "GET", HEALTH_PATH)
        self.check_gevent()
        return self

    def check_gevent(self):
        """A gevent process that cannot start is respawned for ever and eats CPU: refuse to measure then."""
        first = {pid for pid, role in self.processes().items() if role == "odoo_gevent"}
        time.sleep(3)
        second = {pid for pid, role in self.processes().items() if role == "odoo_gevent"}
        if not first or first != second:
            self.stop()
            raise SystemExit("Odoo's gevent process keeps restarting (is gevent importable in Odoo's venv? "
                             "bench/run_webhook_bench installs Odoo's pins); the figures would be skewed.")

    def processes(self):
        """{pid: role} of the server's processes: master, http, cron, gevent."""
        roles = {}
        try:
            master = psutil.Process(self.process.pid)
            roles[master.pid] = "odoo_master"
            for child in master.children(recursive=True):
                try:
                    if "gevent" in child.cmdline()[1:3]:  # odoo-bin gevent ... (workers share the master's argv)
                        roles[child.pid] = "odoo_gevent"
                    elif child.nice() >= 10:
                        roles[child.pid] = "odoo_cron"  # WorkerCron renices itself to 10
                    else:
                        roles[child.pid] = "odoo_http"
                except psutil.Error:
                    continue
        except psutil.Error:
            pass
        return roles

    def stop(self):
        if not self.process or self.process.poll() is not None:
            return
        pgid = os.getpgid(self.process.pid)
        self.process.send_signal(signal.SIGTERM)  # prefork master stops its workers and gevent process
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        time.sleep(1)
        try:
            os.killpg(pgid, signal.SIGKILL)  # only our own group: whatever the master left behind
        except ProcessLookupError:
            pass
        self.process.wait()
        log(f"Odoo on port {self.port} stopped")

    def worker_restarts(self):
        """Lines in the server log that tell a worker was killed (limits) or crashed."""
        if not os.path.exists(self.logfile):
            return []
        with open(self.logfile, errors="replace") as logfile:
            return [line.strip()[:300] for line in logfile
                    if re.search(r"limit|killed|Traceback|ERROR|CRITICAL", line)]


def http_request(port, method, path, body=None, headers=None, timeout=30):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as error:
        return -1, str(error).encode()
    finally:
        connection.close()


def post_headers(signature):
    return {"Content-Type": "application/json", "User-Agent": "facebookexternalua",
            "X-Hub-Signature-256": signature}


# ------------------------------------------------------------------------------------------------
# Traffic: realistic senders and message types, signed bodies
# ------------------------------------------------------------------------------------------------
TEXTS = ["Hola, me interesa el piso", "¿Sigue disponible el departamento?", "¿Cuál es el precio final?",
         "¿Se puede visitar el sábado por la mañana?", "Gracias, lo hablo con mi pareja y te digo",
         "¿Aceptan mascotas?", "¿Tiene cochera?", "Buenas tardes, vi el anuncio en Idealista",
         "¿Cuántos metros tiene el salón?", "Perfecto, nos vemos el jueves a las 18 h",
         "¿Hay gastos de comunidad?", "Hola! Quería consultar por el PH de Palermo"]
PLACES = [("Calle de Alcalá 100", 40.4214, -3.6814), ("Av. Santa Fe 3200, Palermo", -34.5875, -58.4104),
          ("Carrer de Balmes 150", 41.3936, 2.1531), ("Av. Corrientes 1500", -34.6037, -58.3866)]


class Traffic:
    """A stream of messages: most from leads we have (by number), some from new numbers; text mostly,
    and the media-less interactive, button and location types."""

    TYPES = (("text", 70), ("interactive", 10), ("button", 10), ("location", 10))

    def __init__(self, known_wa_ids, new_share, seed):
        self.rng = random.Random(seed)
        self.known = known_wa_ids
        self.new_share = new_share
        self.new_counter = 0
        self.names = {}

    def sender(self):
        if not self.known or self.rng.random() < self.new_share:
            self.new_counter += 1
            wa_id = f"34{690_000_000 + self.new_counter}"  # +34 69x: a range no lead has
        else:
            wa_id = self.rng.choice(self.known)
        name = self.names.setdefault(wa_id, f"{self.rng.choice(ES_NAMES)} {self.rng.choice(ES_SURNAMES)}")
        return wa_id, name

    def message(self, wa_id):
        kind = self.rng.choices([kind for kind, _ in self.TYPES], [weight for _, weight in self.TYPES])[0]
        if kind == "interactive":
            choice = self.rng.choice([("visit_yes", "Sí, quiero visitarlo"), ("call_me", "Llamadme"),
                                      ("not_now", "Ahora no")])
            return payloads.message_item(wa_id, "interactive", body=choice[1], reply_id=choice[0],
                                         interactive_type=self.rng.choice(["button_reply", "list_reply"]))
        if kind == "button":
            return payloads.message_item(wa_id, "button", body="Quiero más información", payload="MORE_INFO")
        if kind == "location":
            address, latitude, longitude = self.rng.choice(PLACES)
            return payloads.message_item(wa_id, "location", latitude=latitude, longitude=longitude,
                                         name="Mi ubicación", address=address)
        return payloads.message_item(wa_id, "text", body=self.rng.choice(TEXTS))

    def body(self, count):
        """(raw body, signature, [wamids]) of one POST carrying `count` messages, as Meta sends them."""
        contacts, messages, seen = [], [], set()
        for _ in range(count):
            wa_id, name = self.sender()
            if wa_id not in seen:
                seen.add(wa_id)
                contacts.append(payloads.contact_item(wa_id, name))
            messages.append(self.message(wa_id))
        value = payloads.messages_value(PHONE_NUMBER_ID, DISPLAY_NUMBER, contacts=contacts, messages=messages)
        raw = payloads.dumps(payloads.envelope(WABA_ID, [payloads.change(value)]))
        return raw, payloads.sign(raw, APP_SECRET), [message["id"] for message in messages]

    def write(self, path, posts, per_post):
        """Write `posts` signed bodies to `path` (one a line); return the wamids of each line."""
        wamids = []
        with open(path, "wb") as out:
            for _ in range(posts):
                raw, signature, ids = self.body(per_post)
                out.write(signature.encode() + b"\t" + str(len(ids)).encode() + b"\t" + raw + b"\n")
                wamids.append(ids)
        return wamids


def read_bodies(path):
    rows = []
    with open(path, "rb") as bodies:
        for line in bodies:
            signature, _label, raw = line.rstrip(b"\n").split(b"\t", 2)
            rows.append((signature.decode(), raw))
    return rows


# ------------------------------------------------------------------------------------------------
# Measurement helpers: DB poller, CPU meter
# ------------------------------------------------------------------------------------------------
def _poll_loop(db_kwargs, dbname, stop, seen_count, out_path, interval):
    """Record when each message row becomes visible (committed): the time of the snapshot that sees it."""
    connection = psycopg2.connect(dbname=dbname, **db_kwargs)
    connection.autocommit = True
    cursor = connection.cursor()
    cursor.execute("SELECT coalesce(max(id), 0) FROM strato_whatsapp_message")
    last_id = cursor.fetchone()[0]
    seen = {}
    while True:
        started = time.time()
        # Rows are inserted by the single cron worker only, so ids become visible in order.
        cursor.execute("SELECT id, wamid FROM strato_whatsapp_message WHERE id > %s ORDER BY id", [last_id])
        for row_id, wamid in cursor.fetchall():
            seen.setdefault(wamid, started)
            last_id = row_id
        seen_count.value = len(seen)
        if stop.is_set():
            break
        time.sleep(max(0.0, interval - (time.time() - started)))
    connection.close()
    with open(out_path, "w") as out:
        json.dump(seen, out)


class Poller:
    def __init__(self, env, dbname, interval=0.05):
        self.env, self.dbname, self.interval = env, dbname, interval
        self.stop_event = multiprocessing.Event()
        self.seen_count = multiprocessing.Value("l", 0)
        self.out_path = os.path.join(env.work, f"seen-{dbname}-{time.time():.0f}.json")

    def start(self):
        self.process = multiprocessing.Process(target=_poll_loop, args=(
            self.env.db, self.dbname, self.stop_event, self.seen_count, self.out_path, self.interval), daemon=True)
        self.process.start()
        time.sleep(0.3)
        return self

    def stop(self):
        self.stop_event.set()
        self.process.join(30)
        with open(self.out_path) as seen_file:
            seen = json.load(seen_file)
        os.unlink(self.out_path)
        return seen


class CpuMeter:
    """Cores used during a phase, per role: Odoo HTTP workers, cron worker, PostgreSQL, load generator,
    and what else ran on the machine (other sessions' test suites would show up there)."""

    def __init__(self, server):
        self.server = server

    def _snapshot(self):
        times = {}
        for pid, role in self.server.processes().items():
            try:
                cpu = psutil.Process(pid).cpu_times()
                times[pid] = (role, cpu.user + cpu.system)
            except psutil.Error:
                pass
        for process in psutil.process_iter(["name"]):
            if process.info["name"] == "postgres":
                try:
                    cpu = process.cpu_times()
                    times[process.pid] = ("postgres", cpu.user + cpu.system)
                except psutil.Error:
                    pass
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        system = psutil.cpu_times()
        busy = system.user + system.nice + system.system + system.irq + system.softirq + getattr(system, "steal", 0)
        return {"pids": times, "loadgen": children.ru_utime + children.ru_stime + me.ru_utime + me.ru_stime,
                "busy": busy, "time": time.time()}

    def start(self):
        self.before = self._snapshot()
        return self

    def stop(self):
        after = self._snapshot()
        elapsed = after["time"] - self.before["time"]
        roles = collections.Counter()
        for pid, (role, total) in after["pids"].items():
            start = self.before["pids"].get(pid)
            roles[role] += total - (start[1] if start else 0)
        result = {role: round(value / elapsed, 2) for role, value in sorted(roles.items())}
        result["loadgen"] = round((after["loadgen"] - self.before["loadgen"]) / elapsed, 2)
        result["machine_busy"] = round((after["busy"] - self.before["busy"]) / elapsed, 2)
        result["other"] = round(result["machine_busy"] - sum(
            value for key, value in result.items() if key != "machine_busy"), 2)
        result["unit"] = f"cores (of {psutil.cpu_count()})"
        return result


def cpu_per_unit(cpu, units_per_s):
    """CPU milliseconds each role spent per request (or message): cores / rate."""
    if not units_per_s:
        return {}
    return {role: round(1000 * cores / units_per_s, 2) for role, cores in cpu.items()
            if role in ("odoo_http", "odoo_cron", "postgres")}


# ------------------------------------------------------------------------------------------------
# Load generators
# ------------------------------------------------------------------------------------------------
def run_wrk(env, port, path, duration, connections, threads, bodies=None, label="wrk"):
    """wrk at saturation. With bodies: POSTs each line once (see wrk_post.lua), logging send times."""
    url = f"http://127.0.0.1:{port}{path}"
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s"]
    log_prefix = os.path.join(env.work, f"{label}-send-")
    if bodies:
        for name in os.listdir(env.work):
            if name.startswith(f"{label}-send-"):
                os.unlink(os.path.join(env.work, name))
        command += ["-s", os.path.join(HERE, "wrk_post.lua"), url, "--", bodies, log_prefix, str(threads), path]
    else:
        command += ["-s", os.path.join(HERE, "wrk_get.lua"), url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"WRK-JSON (\{.*\})", output)
    if not match:
        raise SystemExit(f"wrk printed no figures:\n{output}")
    figures = json.loads(match.group(1))
    sends = {}
    if bodies:
        for tid in range(threads):
            try:
                with open(f"{log_prefix}{tid}.log") as send_log:
                    for line in send_log:
                        parts = line.split()
                        if len(parts) == 2:
                            sends.setdefault(int(parts[0]), []).append(float(parts[1]))
            except FileNotFoundError:
                pass
    return figures, sends


def wrk_summary(figures):
    seconds = figures["duration_us"] / 1e6
    return {
        "requests": figures["requests"], "duration_s": round(seconds, 2),
        "requests_per_s": round(figures["requests"] / seconds, 1),
        "non_2xx": figures["status_errors"], "socket_errors": figures["connect_errors"] + figures["read_errors"]
        + figures["write_errors"], "timeouts": figures["timeouts"],
        "ack_p50_ms": round(figures["lat_p50_us"] / 1000, 1), "ack_p90_ms": round(figures["lat_p90_us"] / 1000, 1),
        "ack_p99_ms": round(figures["lat_p99_us"] / 1000, 1), "ack_max_ms": round(figures["lat_max_us"] / 1000, 1),
    }


def _fixed_rate_process(port, path, bodies_path, slots, first_slot, rate, total, start_at, give_up_at, queue):
    bodies = read_bodies(bodies_path)
    records = []
    lock = threading.Lock()

    def sender(slot):
        index = slot
        while index < total:
            scheduled = start_at + index / rate
            delay = scheduled - time.time()
            if delay > 0:
                time.sleep(delay)
            if time.time() > give_up_at:  # the server fell far behind: stop rather than run for ever
                with lock:
                    records.append((index, scheduled, None, None, 0))
                index += slots
                continue
            signature, raw = bodies[index % len(bodies)]
            sent = time.time()
            status, _ = http_request(port, "POST", path, raw, post_headers(signature))
            done = time.time()
            with lock:
                records.append((index, scheduled, sent, done, status))
            index += slots

    threads = [threading.Thread(target=sender, args=(first_slot + k * (slots // THREADS_PER_PROCESS),))
               for k in range(THREADS_PER_PROCESS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(records)


THREADS_PER_PROCESS = 16
CLIENT_PROCESSES = 2
FIXED_RATE_GRACE = 10  # seconds after the last due time; requests not sent by then are counted, not sent


def run_fixed_rate(port, path, bodies_path, rate, duration):
    """Open loop: request i is due at start + i/rate whatever happened before; 2 processes x 16 threads,
    a new connection per request (Odoo's werkzeug server closes it after each answer anyway).
    Latency is measured from the actual send and, to expose queueing in the client, from the due time."""
    total = int(rate * duration)
    slots = CLIENT_PROCESSES * THREADS_PER_PROCESS
    queue = multiprocessing.Queue()
    start_at = time.time() + 1.0
    give_up_at = start_at + duration + FIXED_RATE_GRACE
    processes = [multiprocessing.Process(target=_fixed_rate_process, args=(
        port, path, bodies_path, slots, p, rate, total, start_at, give_up_at, queue)) for p in range(CLIENT_PROCESSES)]
    for process in processes:
        process.start()
    records = []
    for _ in processes:
        records.extend(queue.get())
    for process in processes:
        process.join()
    return start_at, records


def _batch_process(port, path, bodies_path, per_post, end_at, window, seen_count, threads_count, queue):
    bodies = read_bodies(bodies_path)
    records = []
    lock = threading.Lock()
    state = {"next": 0, "sent": 0}

    def sender():
        while time.time() < end_at:
            with lock:
                if state["sent"] - seen_count.value >= window or state["next"] >= len(bodies):
                    wait = True
                else:
                    wait = False
                    index = state["next"]
                    state["next"] += 1
                    state["sent"] += per_post
            if wait:
                time.sleep(0.005)
                continue
            signature, raw = bodies[index]
            sent = time.time()
            status, _ = http_request(port, "POST", path, raw, post_headers(signature))
            with lock:
                records.append((index, sent, sent, time.time(), status))

    threads = [threading.Thread(target=sender) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(records)


def run_batched(port, path, bodies_path, per_post, duration, window, seen_count):
    """Closed loop on end-to-end completion: at most `window` messages posted but not yet committed,
    so the figure is what the whole pipeline (HTTP + cron) sustains, not how fast events pile up."""
    queue = multiprocessing.Queue()
    start_at = time.time()
    process = multiprocessing.Process(target=_batch_process, args=(
        port, path, bodies_path, per_post, start_at + duration, window, seen_count, 2, queue))
    process.start()
    records = queue.get()
    process.join()
    return start_at, records


# ------------------------------------------------------------------------------------------------
# Phases
# ------------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, env, args):
        self.env, self.args = env, args
        self.results = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "phases": {},
                        "settings": {}}
        self.servers = []

    # -- helpers ----------------------------------------------------------------------------------
    def start_server(self, db, extra=()):
        self.wait_quiet()
        server = OdooServer(self.env, db, self.args, extra)
        self.servers.append(server)
        return server.start()

    def wait_quiet(self):
        """Other work on this 2-core machine skews every figure: optionally wait for a calm moment."""
        if not self.args.wait_quiet:
            return
        started = time.time()
        while os.getloadavg()[0] > self.args.wait_quiet and time.time() - started < self.args.wait_quiet_max:
            time.sleep(5)
        waited = round(time.time() - started)
        self.results.setdefault("quiet_waits", []).append({"waited_s": waited, "loadavg": os.getloadavg()})
        if waited:
            log(f"waited {waited} s for the 1-minute load average to fall under {self.args.wait_quiet} "
                f"(now {os.getloadavg()[0]:.2f})")

    def stop_all(self):
        for server in self.servers:
            try:
                server.stop()
            except Exception as error:  # noqa: BLE001 - keep stopping the others
                log(f"could not stop a server: {error}")

    def known_wa_ids(self, db):
        rows = self.env.sql(db, "SELECT whatsapp_number FROM crm_lead WHERE name LIKE %s AND whatsapp_number IS NOT NULL",
                            [LEAD_PREFIX + " %"])
        return sorted(row[0].lstrip("+") for row in rows)

    def pending_events(self, db):
        """Events not processed yet, plus messages whose chatter post the cron still owes (the addon may
        commit message rows first and post them to the chatter in a second pass)."""
        pending = self.env.sql(db, "SELECT count(*) FROM strato_whatsapp_webhook_event WHERE state = 'pending'")[0][0]
        if self.has_chatter_pending(db):
            pending += self.env.sql(db, "SELECT count(*) FROM strato_whatsapp_message WHERE chatter_pending")[0][0]
        return pending

    def has_chatter_pending(self, db):
        return bool(self.env.sql(db, "SELECT 1 FROM information_schema.columns WHERE table_name = "
                                     "'strato_whatsapp_message' AND column_name = 'chatter_pending'"))

    def drain(self, db, poller, expected_wamids, timeout):
        """Wait until every message is committed (or the timeout); then discard what is left so the
        next phase starts with an empty queue. Returns (seconds waited, events discarded, their wamids)."""
        started = time.time()
        while time.time() - started < timeout:
            if poller.seen_count.value >= expected_wamids and self.pending_events(db) == 0:
                break
            time.sleep(0.25)
        waited = time.time() - started
        rows = self.env.sql(db, """
            UPDATE strato_whatsapp_webhook_event SET state = 'failed', next_attempt_at = NULL,
                   error = 'discarded by the benchmark (drain timeout)'
             WHERE state = 'pending' RETURNING payload""")
        wamids = {message["id"] for (payload,) in rows for entry in json.loads(payload)["entry"]
                  for change in entry["changes"] for message in change["value"].get("messages", [])}
        if self.has_chatter_pending(db):  # chatter posts still owed: dropped too, so the next phase starts clean
            self.env.sql(db, "UPDATE strato_whatsapp_message SET chatter_pending = NULL WHERE chatter_pending", fetch=False)
        return round(waited, 1), len(rows), wamids

    def e2e(self, sends, seen, window_start, window_end, discarded=frozenset()):
        """sends: {wamid: send time}. End-to-end latencies and the commit rate inside the load window.
        Lost: sent, not committed, and not in an event the benchmark discarded after the drain timeout."""
        latencies = [seen[wamid] - sent for wamid, sent in sends.items() if wamid in seen]
        not_processed = sum(1 for wamid in sends if wamid not in seen and wamid in discarded)
        committed = sum(1 for wamid in sends if wamid in seen and window_start <= seen[wamid] <= window_end)
        span = window_end - window_start
        return {
            "messages_sent": len(sends), "messages_committed": len(latencies),
            "messages_unprocessed_at_drain_timeout": not_processed,
            "messages_lost": len(sends) - len(latencies) - not_processed,
            "committed_in_window_per_s": round(committed / span, 1) if span > 0 else None,
            "e2e_p50_ms": ms(percentile(latencies, 50)), "e2e_p90_ms": ms(percentile(latencies, 90)),
            "e2e_p99_ms": ms(percentile(latencies, 99)), "e2e_max_ms": ms(max(latencies) if latencies else None),
        }

    def bodies(self, db, name, posts, per_post, new_share=None):
        traffic = Traffic(self.known, self.args.new_share if new_share is None else new_share,
                          seed=zlib.crc32(f"{name}-{self.args.seed}".encode()))
        traffic.new_counter = self.new_numbers  # new numbers stay new across phases
        path = os.path.join(self.env.work, f"bodies-{name}.txt")
        wamids = traffic.write(path, posts, per_post)
        self.new_numbers = traffic.new_counter
        return path, wamids

    # -- phases -----------------------------------------------------------------------------------
    def ceiling(self, server, key, path=CEILING_PATH):
        log(f"[{key}] Odoo's ceiling: wrk GET {path} for {self.args.ceiling_duration} s")
        cpu = CpuMeter(server).start()
        figures, _ = run_wrk(self.env, server.port, path, self.args.ceiling_duration,
                             self.args.connections, self.args.wrk_threads)
        result = wrk_summary(figures)
        result["cpu"] = cpu.stop()
        result["cpu_ms_per_request"] = cpu_per_unit(result["cpu"], result["requests_per_s"])
        result["path"] = path
        self.results["phases"][key] = result
        log(f"[{key}] {result['requests_per_s']} requests/s, p50 {result['ack_p50_ms']} ms, p99 {result['ack_p99_ms']} ms")
        return result

    def floor(self, server, db, key, path):
        """A minimal public route that writes (bench probe): what any persisting webhook costs in Odoo."""
        duration = self.args.floor_duration
        bodies_path, _ = self.bodies(db, key, int(max(300, 2 * self.ceiling_rate) * duration), 1)
        log(f"[{key}] write floor: wrk POST {path} for {duration} s")
        cpu = CpuMeter(server).start()
        figures, _ = run_wrk(self.env, server.port, path, duration, self.args.connections, self.args.wrk_threads,
                             bodies=bodies_path, label=key)
        result = wrk_summary(figures)
        result["cpu"] = cpu.stop()
        result["cpu_ms_per_request"] = cpu_per_unit(result["cpu"], result["requests_per_s"])
        self.results["phases"][key] = result
        log(f"[{key}] {result['requests_per_s']} requests/s, p50 {result['ack_p50_ms']} ms, p99 {result['ack_p99_ms']} ms")
        return result

    def single_saturation(self, server, db, key, path=STRATO_PATH, oca=False):
        duration = self.args.duration
        estimate = max(300, 2 * self.ceiling_rate)
        bodies_path, wamids = self.bodies(db, key, int(estimate * duration), 1)
        log(f"[{key}] single-message POSTs at saturation: wrk -c{self.args.connections} for {duration} s")
        before = self.stored_count(db, oca)
        poller = None if oca else Poller(self.env, db).start()
        cpu = CpuMeter(server).start()
        window_start = time.time()
        figures, sends = run_wrk(self.env, server.port, path, duration, self.args.connections,
                                 self.args.wrk_threads, bodies=bodies_path, label=key)
        window_end = time.time()
        result = wrk_summary(figures)
        result["cpu"] = cpu.stop()
        result["bodies_reused"] = sum(len(times) - 1 for times in sends.values()) + max(0, figures["requests"] - sum(
            len(times) for times in sends.values()))
        if oca:
            stored = self.stored_count(db, oca) - before
            result["stored_messages"] = stored
            result["stored_per_s"] = round(stored / result["duration_s"], 1)
        else:
            send_times = {wamids[line][0]: times[0] for line, times in sends.items()}
            backlog = self.pending_events(db)
            result["backlog_events_at_end"] = backlog
            # wrk stops with up to one request per connection in flight: sent, never acknowledged.
            in_flight = max(0, sum(len(times) for times in sends.values()) - figures["requests"])
            result["sent_not_acknowledged"] = in_flight
            result["drain_s"], result["discarded_events"], discarded = self.drain(
                db, poller, len(send_times) - in_flight, self.args.drain_timeout)
            result.update(self.e2e(send_times, poller.stop(), window_start, window_end, discarded))
            result["messages_lost"] = max(0, result["messages_lost"] - in_flight)
            result["sustained_msgs_per_s"] = min(result["requests_per_s"], result["committed_in_window_per_s"])
        result["cpu_ms_per_request"] = cpu_per_unit(result["cpu"], result["requests_per_s"])
        result["server_log_warnings"] = server.worker_restarts()[-10:]
        self.results["phases"][key] = result
        log(f"[{key}] {json.dumps({k: v for k, v in result.items() if k not in ('cpu', 'server_log_warnings')})}")
        return result

    def fixed_rate(self, server, db, key, rate, path=STRATO_PATH, oca=False, duration=None):
        duration = duration or self.args.duration
        bodies_path, wamids = self.bodies(db, key, int(rate * duration) + 1, 1)
        log(f"[{key}] single-message POSTs at a fixed {rate:.0f}/s for {duration} s (Python open-loop client)")
        before = self.stored_count(db, oca)
        poller = None if oca else Poller(self.env, db).start()
        cpu = CpuMeter(server).start()
        start_at, records = run_fixed_rate(server.port, path, bodies_path, rate, duration)
        window_end = time.time()
        cpu_result = cpu.stop()
        acks = [done - sent for _, _, sent, done, status in records if status == 200]
        from_due = [done - due for _, due, _, done, status in records if status == 200]
        span = max(done for _, _, _, done, _ in records if done) - start_at
        statuses = collections.Counter(str(record[4]) for record in records)
        result = {
            "offered_per_s": rate, "requests": len(records), "duration_s": round(span, 2),
            "acked_per_s": round(len(acks) / span, 1),
            "non_200": sum(1 for record in records if record[4] not in (200, 0)),
            "not_sent_server_too_far_behind": statuses.get("0", 0), "statuses": dict(statuses),
            "ack_p50_ms": ms(percentile(acks, 50)), "ack_p90_ms": ms(percentile(acks, 90)),
            "ack_p99_ms": ms(percentile(acks, 99)), "ack_max_ms": ms(max(acks) if acks else None),
            "ack_from_due_p99_ms": ms(percentile(from_due, 99)),
            "client_late_p99_ms": ms(percentile([sent - due for _, due, sent, _, _ in records if sent], 99)),
            "cpu": cpu_result,
        }
        if oca:
            stored = self.stored_count(db, oca) - before
            result.update(stored_messages=stored, stored_per_s=round(stored / span, 1))
        else:
            send_times = {wamids[index][0]: sent for index, _, sent, _, status in records if status == 200}
            result["backlog_events_at_end"] = self.pending_events(db)
            result["drain_s"], result["discarded_events"], discarded = self.drain(
                db, poller, len(send_times), self.args.drain_timeout)
            result.update(self.e2e(send_times, poller.stop(), start_at, window_end, discarded))
        result["cpu_ms_per_request"] = cpu_per_unit(result["cpu"], result["acked_per_s"])
        result["server_log_warnings"] = server.worker_restarts()[-10:]
        self.results["phases"][key] = result
        log(f"[{key}] {json.dumps({k: v for k, v in result.items() if k not in ('cpu', 'server_log_warnings')})}")
        return result

    def batched(self, server, db, key):
        duration = self.args.duration
        posts = int(self.args.batch_max_rate * duration / BATCH_SIZE) + 1
        bodies_path, wamids = self.bodies(db, key, posts, BATCH_SIZE)
        log(f"[{key}] POSTs of {BATCH_SIZE} messages for {duration} s, at most {self.args.batch_window} messages in flight")
        poller = Poller(self.env, db).start()
        cpu = CpuMeter(server).start()
        start_at, records = run_batched(server.port, STRATO_PATH, bodies_path, BATCH_SIZE, duration,
                                        self.args.batch_window, poller.seen_count)
        window_end = time.time()
        cpu_result = cpu.stop()
        acks = [done - sent for _, sent, _, done, status in records if status == 200]
        send_times = {wamid: sent for index, sent, _, _, _ in records for wamid in wamids[index]}
        drain = self.drain(db, poller, len(send_times), self.args.drain_timeout)
        seen = poller.stop()
        result = {
            "posts": len(records), "messages_per_post": BATCH_SIZE, "non_200": sum(1 for r in records if r[4] != 200),
            "posts_per_s": round(len(records) / (window_end - start_at), 1),
            "ack_p50_ms": ms(percentile(acks, 50)), "ack_p99_ms": ms(percentile(acks, 99)),
            "drain_s": drain[0], "discarded_events": drain[1], "cpu": cpu_result,
        }
        result.update(self.e2e(send_times, seen, start_at, window_end, drain[2]))
        committed = [seen[w] for w in send_times if w in seen]
        if committed:
            result["e2e_msgs_per_s_overall"] = round(len(committed) / (max(committed) - start_at), 1)
        result["cpu_ms_per_message"] = cpu_per_unit(cpu_result, result["committed_in_window_per_s"])
        result["server_log_warnings"] = server.worker_restarts()[-10:]
        self.results["phases"][key] = result
        log(f"[{key}] {json.dumps({k: v for k, v in result.items() if k not in ('cpu', 'server_log_warnings')})}")
        return result

    def stored_count(self, db, oca):
        if oca:
            return self.env.sql(db, "SELECT count(*) FROM mail_message WHERE model = 'discuss.channel'"
                                    " AND message_type = 'comment'")[0][0]
        return self.env.sql(db, "SELECT count(*) FROM strato_whatsapp_message")[0][0]

    def redelivery(self, server, db, key, path, oca):
        token = f"redelivery-{time.time_ns()}"
        item = payloads.message_item(self.known[0] if self.known else "34611000000", "text", body=f"Hola {token}")
        value = payloads.messages_value(PHONE_NUMBER_ID, DISPLAY_NUMBER,
                                        contacts=[payloads.contact_item(item["from"], "Redelivery Test")],
                                        messages=[item])
        raw = payloads.dumps(payloads.envelope(WABA_ID, [payloads.change(value)]))
        signature = payloads.sign(raw, APP_SECRET)
        statuses = [http_request(server.port, "POST", path, raw, post_headers(signature))[0] for _ in range(2)]
        deadline = time.time() + self.args.drain_timeout
        waited_for = time.time()
        while not oca and time.time() < deadline and (self.pending_events(db) or not self.env.sql(
                db, "SELECT 1 FROM strato_whatsapp_message WHERE wamid = %s", [item["id"]])):
            time.sleep(0.2)
        waited = round(time.time() - waited_for, 1)
        chatter = self.env.sql(db, "SELECT count(*) FROM mail_message WHERE body::text LIKE %s", [f"%{token}%"])[0][0]
        rows = None if oca else self.env.sql(
            db, "SELECT count(*) FROM strato_whatsapp_message WHERE wamid = %s", [item["id"]])[0][0]
        result = {"statuses": statuses, "chatter_posts": chatter, "message_rows": rows,
                  "stored_again": (chatter if oca else rows) > 1, "processing_wait_s": None if oca else waited}
        self.results["phases"][key] = result
        log(f"[{key}] same payload posted twice: {result}")
        return result

    def warm_up(self, server, db, path, oca=False):
        bodies_path, _ = self.bodies(db, "warmup", 30, 1)
        for signature, raw in read_bodies(bodies_path):
            http_request(server.port, "POST", path, raw, post_headers(signature))
        if not oca:
            deadline = time.time() + 60
            while time.time() < deadline and self.pending_events(db):
                time.sleep(0.2)

    # -- the run ----------------------------------------------------------------------------------
    def run(self):
        args, env = self.args, self.env
        skip = set(args.skip)
        self.results["settings"] = {
            "duration_s": args.duration, "ceiling_duration_s": args.ceiling_duration,
            "server": "odoo-bin --workers=2 --max-cron-threads=1 --log-level=warn (prefork; cron in its own process)",
            "load_generator": f"wrk {wrk_version()} -t{args.wrk_threads} -c{args.connections} (saturation, Lua script "
                              "rotating pre-signed bodies); Python open-loop client (fixed rate); Python closed-loop "
                              "client (batches)",
            "leads": args.leads, "new_sender_share": args.new_share,
            "message_mix": dict(Traffic.TYPES), "cpus": psutil.cpu_count(), "loadavg_at_start": os.getloadavg(),
            "odoo": env.odoo_home, "addon_commit": env.addon_commit, "addon_version": env.addon_version,
            "addon_source": env.addon_source, "postgres": env.sql("postgres", "SHOW server_version")[0][0],
        }
        prepare_strato(env, args)
        if args.million_leads:
            prepare_million(env, args)
        if "oca" not in skip:
            prepare_oca(env, args)
            self.results["settings"]["oca_versions"] = oca_versions(env)
        if args.prepare_only:
            return self.results

        self.new_numbers = 0
        db = TPL_STRATO.replace("_tpl", "_run")
        env.clone_db(TPL_STRATO, db)
        self.known = self.known_wa_ids(db)
        server = self.start_server(db)
        self.warm_up(server, db, STRATO_PATH)
        self.ceiling(server, "ceiling_health", path=HEALTH_PATH)
        ceiling = self.ceiling(server, "ceiling")
        self.ceiling_rate = ceiling["requests_per_s"]
        self.rate = args.rate or round(0.8 * self.ceiling_rate)
        if "floor" not in skip:
            self.floor(server, db, "floor_write", "/strato_bench/write")
            self.floor(server, db, "floor_write_trigger", "/strato_bench/write_trigger")
        if "single" not in skip:
            self.single_saturation(server, db, "single_saturation")
        if "fixed" not in skip:
            self.fixed_rate(server, db, "single_fixed_rate", self.rate)
        if "batch" not in skip:
            self.batched(server, db, "batched")
        if "dedup" not in skip:
            self.redelivery(server, db, "redelivery", STRATO_PATH, oca=False)
        server.stop()
        if args.profile:
            self.profile(db)

        if args.million_leads:
            db_m = TPL_MILLION.replace("_tpl", "_run")
            env.clone_db(TPL_MILLION, db_m)
            self.results["settings"]["million_leads"] = env.sql(db_m, "SELECT count(*) FROM crm_lead")[0][0]
            server = self.start_server(db_m)
            self.warm_up(server, db_m, STRATO_PATH)
            self.ceiling(server, "million_ceiling")
            if "single" not in skip:
                self.single_saturation(server, db_m, "million_single_saturation")
            if "fixed" not in skip:
                self.fixed_rate(server, db_m, "million_single_fixed_rate", self.rate)
            if "batch" not in skip:
                self.batched(server, db_m, "million_batched")
            server.stop()
            if args.profile:
                from bench_profile import per_message  # noqa: PLC0415 - only with --profile
                self.results.setdefault("profile", {})["per_message_million"] = per_message(self, db_m)
            if not args.keep_dbs:
                env.drop_db(db_m)

        if "oca" not in skip:
            db_o = TPL_OCA.replace("_tpl", "_run")
            env.clone_db(TPL_OCA, db_o)
            server = self.start_server(db_o)
            self.warm_up(server, db_o, OCA_PATH, oca=True)
            self.ceiling(server, "oca_ceiling", path=HEALTH_PATH)
            oca = self.single_saturation(server, db_o, "oca_single_saturation", path=OCA_PATH, oca=True)
            self.fixed_rate(server, db_o, "oca_fixed_rate", max(5, round(0.5 * oca["requests_per_s"])),
                            path=OCA_PATH, oca=True, duration=min(args.duration, 30))
            self.redelivery(server, db_o, "oca_redelivery", OCA_PATH, oca=True)
            server.stop()
            if not args.keep_dbs:
                env.drop_db(db_o)
        if not args.keep_dbs:
            env.drop_db(db)
        if args.profile and self.results.get("profile", {}).get("pyspy"):
            from bench_profile import summary  # noqa: PLC0415
            self.results["profile"]["summary"] = summary(self.results["profile"])
        self.results["settings"]["loadavg_at_end"] = os.getloadavg()
        self.results["targets"] = evaluate_targets(self.results["phases"])
        return self.results

    # -- profiling --------------------------------------------------------------------------------
    def profile(self, db):
        from bench_profile import profile_run  # noqa: PLC0415 - only with --profile
        self.results["profile"] = profile_run(self, db)


def wrk_version():
    output = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    match = re.search(r"wrk (\S+)", output.stdout + output.stderr)
    return match.group(1) if match else "?"


# ------------------------------------------------------------------------------------------------
# Targets and summary
# ------------------------------------------------------------------------------------------------
def evaluate_targets(phases):
    targets = []

    def add(name, value, goal, passed, note=""):
        targets.append({"target": name, "value": value, "goal": goal,
                        "result": "n/a" if passed is None else ("PASS" if passed else "FAIL"), "note": note})

    ceiling = phases.get("ceiling", {}).get("requests_per_s")
    single = phases.get("single_saturation", {})
    fixed = phases.get("single_fixed_rate", {})
    if ceiling and single:
        value = single.get("sustained_msgs_per_s")
        add("single-message POSTs >= 80% of the trivial-route ceiling", f"{value} msg/s vs {ceiling} req/s "
            f"({100 * value / ceiling:.0f}%)", ">= 80%", value >= 0.8 * ceiling,
            "sustained = min(acknowledged POSTs/s, messages committed/s during the window), wrk at saturation")
    if fixed:
        sustained = fixed["acked_per_s"] >= 0.97 * fixed["offered_per_s"] and fixed["messages_lost"] == 0
        add(f"fixed rate {fixed['offered_per_s']}/s (80% of ceiling) sustained, nothing lost",
            f"{fixed['acked_per_s']}/s acked, {fixed.get('committed_in_window_per_s')}/s committed, "
            f"{fixed['messages_lost']} lost", "acked >= 97% of offered, 0 lost", sustained)
        add("ack p99 < 50 ms at that rate", f"{fixed['ack_p99_ms']} ms", "< 50 ms", fixed["ack_p99_ms"] < 50)
        add("end-to-end p99 < 2 s at that rate", f"{fixed['e2e_p99_ms']} ms", "< 2000 ms",
            fixed["e2e_p99_ms"] is not None and fixed["e2e_p99_ms"] < 2000)
    health = phases.get("ceiling_health")
    if health and single:
        add("reference: GET /web/health (auth='none')", f"{health['requests_per_s']} req/s; single-message POSTs "
            f"acknowledged {single['requests_per_s']}/s = {100 * single['requests_per_s'] / health['requests_per_s']:.0f}% of it",
            "-", None)
    for floor_key, label in (("floor_write", "INSERT + commit"), ("floor_write_trigger", "INSERT + ir.cron._trigger() + commit")):
        floor = phases.get(floor_key)
        if floor and single:
            add(f"reference: minimal public route doing {label}", f"{floor['requests_per_s']} req/s; single-message "
                f"POSTs acknowledged {single['requests_per_s']}/s = {100 * single['requests_per_s'] / floor['requests_per_s']:.0f}% of it",
                "-", None)
    batched = phases.get("batched")
    if batched:
        value = batched["committed_in_window_per_s"]
        add("batched POSTs (50 msgs) >= 1000 msg/s end to end", f"{value} msg/s", ">= 1000", value >= 1000)
    oca = phases.get("oca_single_saturation")
    if oca and single:
        value = single["sustained_msgs_per_s"]
        add(">= 5x OCA mail_gateway_whatsapp's single-message rate",
            f"{value} vs {oca['requests_per_s']} msg/s ({value / oca['requests_per_s']:.1f}x)", ">= 5x",
            value >= 5 * oca["requests_per_s"], "OCA processes inside the request: its POSTs/s is its ingest rate")
    if phases.get("oca_redelivery"):
        add("OCA stores a redelivered message again (observation)", str(phases["oca_redelivery"]["chatter_posts"])
            + " chatter posts for 2 deliveries", "-", None)
    if phases.get("redelivery"):
        red = phases["redelivery"]
        add("strato stores a redelivered message once", f"{red['message_rows']} row(s), {red['chatter_posts']} chatter "
            "post(s) for 2 deliveries", "1", red["message_rows"] == 1 and red["chatter_posts"] == 1)
    million = phases.get("million_single_saturation")
    if million and single:
        ratio = million["sustained_msgs_per_s"] / single["sustained_msgs_per_s"]
        add("1M leads: single-message throughput within 10% of empty", f"{million['sustained_msgs_per_s']} vs "
            f"{single['sustained_msgs_per_s']} msg/s ({100 * (ratio - 1):+.0f}%)", ">= 90%", ratio >= 0.9)
    million_batched = phases.get("million_batched")
    if million_batched and batched:
        ratio = million_batched["committed_in_window_per_s"] / batched["committed_in_window_per_s"]
        add("1M leads: batched (processing) throughput within 10% of empty",
            f"{million_batched['committed_in_window_per_s']} vs {batched['committed_in_window_per_s']} msg/s "
            f"({100 * (ratio - 1):+.0f}%)", ">= 90%", ratio >= 0.9)
    million_fixed = phases.get("million_single_fixed_rate")
    if million_fixed and fixed:
        add("1M leads: fixed-rate run, ack p99 / e2e p99", f"{million_fixed['ack_p99_ms']} ms / "
            f"{million_fixed['e2e_p99_ms']} ms (empty: {fixed['ack_p99_ms']} / {fixed['e2e_p99_ms']} ms)",
            "-", None)
    return targets


def print_summary(results, path):
    phases = results["phases"]
    print("\n" + "=" * 100)
    print(f"strato_whatsapp webhook benchmark  {results['started']}   ({results['settings']['server']})")
    print(f"load: {results['settings']['load_generator']}")
    print(f"duration {results['settings']['duration_s']} s; loadavg start {results['settings']['loadavg_at_start']}, "
          f"end {results['settings'].get('loadavg_at_end')}")
    print("-" * 100)
    row = "{:<30} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10} {:>8}"
    print(row.format("phase", "req/s", "msg/s", "ack p50", "ack p99", "e2e p50", "e2e p99", "lost"))
    for key, phase in phases.items():
        if "redelivery" in key:
            continue
        rate = phase.get("requests_per_s") or phase.get("acked_per_s") or phase.get("posts_per_s")
        msgs = phase.get("sustained_msgs_per_s") or phase.get("committed_in_window_per_s") or phase.get("stored_per_s")
        print(row.format(key, fmt(rate), fmt(msgs), fmt(phase.get("ack_p50_ms"), " ms"),
                         fmt(phase.get("ack_p99_ms"), " ms"), fmt(phase.get("e2e_p50_ms"), " ms"),
                         fmt(phase.get("e2e_p99_ms"), " ms"), fmt(phase.get("messages_lost"))))
    print("-" * 100)
    for key, phase in phases.items():
        if "cpu" in phase:
            cpu = {k: v for k, v in phase["cpu"].items() if k not in ("unit", "odoo_gevent", "odoo_master")}
            per = phase.get("cpu_ms_per_request") or phase.get("cpu_ms_per_message") or {}
            print(f"cpu {key:<26} cores {cpu}  ms/unit {per}")
    print("-" * 100)
    for target in results.get("targets", []):
        print(f"{target['result']:<5} {target['target']}: {target['value']} (goal {target['goal']})")
    if results.get("profile", {}).get("summary"):
        print("-" * 100)
        print(results["profile"]["summary"])
    print("=" * 100)
    print(f"results: {path}")


def fmt(value, unit=""):
    return "-" if value is None else f"{value}{unit}"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=60, help="seconds of each load phase (spec: 60)")
    parser.add_argument("--ceiling-duration", type=int, help="seconds of the ceiling phase (default: --duration)")
    parser.add_argument("--rate", type=float, help="fixed rate, POSTs/s (default: 80%% of the measured ceiling)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--leads", type=int, default=2000, help="leads with numbers in the template (default 2000)")
    parser.add_argument("--new-share", type=float, default=0.15, help="share of messages from new numbers")
    parser.add_argument("--batch-window", type=int, default=2000, help="messages in flight in the batch phase")
    parser.add_argument("--batch-max-rate", type=int, default=3000, help="msg/s the batch bodies are made for")
    parser.add_argument("--drain-timeout", type=int, default=120, help="seconds to wait for the cron after a phase")
    parser.add_argument("--million-leads", action="store_true", help="also run with 1,000,000 more leads")
    parser.add_argument("--million-count", type=int, default=1_000_000)
    parser.add_argument("--profile", action="store_true", help="py-spy + SQL counts (after the measured phases)")
    parser.add_argument("--profile-duration", type=int, default=20)
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["floor", "single", "fixed", "batch", "dedup", "oca"])
    parser.add_argument("--floor-duration", type=int, help="seconds of each write-floor phase (default: min(30, --duration))")
    parser.add_argument("--rebuild", action="store_true", help="make the template databases again")
    parser.add_argument("--worktree", action="store_true",
                        help="measure the work tree's strato_whatsapp (default: the committed HEAD, via git archive)")
    parser.add_argument("--prepare-only", action="store_true", help="only make the template databases")
    parser.add_argument("--keep-dbs", action="store_true", help="keep the *_run databases for inspection")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--wait-quiet", type=float, metavar="LOAD",
                        help="before each server start, wait until the 1-minute load average is under LOAD")
    parser.add_argument("--wait-quiet-max", type=int, default=900, help="seconds to wait for that at most")
    parser.add_argument("--workdir", default=os.environ.get("STRATO_BENCH_WORKDIR", "/tmp/strato_bench"))
    parser.add_argument("--db-host", default=os.environ.get("ODOO_DB_HOST", "127.0.0.1"))
    parser.add_argument("--db-port", type=int, default=int(os.environ.get("ODOO_DB_PORT", "5432")))
    parser.add_argument("--db-user", default=os.environ.get("ODOO_DB_USER", "odoo"))
    args = parser.parse_args()
    args.ceiling_duration = args.ceiling_duration or args.duration
    args.floor_duration = args.floor_duration or min(30, args.duration)
    return args


def main():
    args = parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk (bench/run_webhook_bench does it)")
    sys.path.insert(0, HERE)
    env = Env(args)
    bench = Bench(env, args)

    def on_signal(signum, _frame):
        raise SystemExit(f"stopped by signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    try:
        results = bench.run()
    finally:
        bench.stop_all()
    if args.prepare_only:
        return
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    path = os.path.join(HERE, "results", f"webhook_load-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as out:
        json.dump(results, out, indent=2, ensure_ascii=False)
    print_summary(results, path)


if __name__ == "__main__":
    multiprocessing.set_start_method("fork")
    main()

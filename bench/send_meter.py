"""Counts and times what one Odoo process does while it sends: SQL statements (by statement text),
COMMITs, HTTP calls and pacing sleeps. Imported by the send benchmark's `odoo-bin shell` drivers.

The cursor is wrapped at `odoo.sql_db.Cursor` (every statement of every cursor of the process); the
HTTP and sleep seams are wrapped by the driver with `timed()`. Time not spent in SQL, HTTP or sleep
is Python (ORM, the addon, requests' own Python is inside HTTP).
"""
import re
import time
from collections import defaultdict

from odoo import sql_db

NUMBERS = re.compile(r"\b\d+\b")


class Meter:
    def __init__(self):
        self.sql = defaultdict(lambda: [0, 0.0])
        self.commits = [0, 0.0]
        self.http = defaultdict(lambda: [0, 0.0])
        self.sends_ok = 0
        self.sleep = 0.0
        self.enabled = False

    # -- seams -----------------------------------------------------------------------------------
    def install_sql(self):
        meter = self
        execute = sql_db.Cursor.execute

        def timed_execute(cursor, query, params=None, log_exceptions=True):
            if not meter.enabled:
                return execute(cursor, query, params, log_exceptions)
            started = time.perf_counter()
            try:
                return execute(cursor, query, params, log_exceptions)
            finally:
                entry = meter.sql[statement(query)]
                entry[0] += 1
                entry[1] += time.perf_counter() - started

        def timed_commit(cursor):
            # Odoo 18's Cursor.commit, with only the COMMIT itself timed: the flush's statements are
            # timed by execute, and its Python is Python.
            cursor.flush()
            started = time.perf_counter()
            result = cursor._cnx.commit()
            if meter.enabled:
                meter.commits[0] += 1
                meter.commits[1] += time.perf_counter() - started
            cursor.clear()
            cursor._now = None
            cursor.prerollback.clear()
            cursor.postrollback.clear()
            cursor.postcommit.run()
            return result

        sql_db.Cursor.execute = timed_execute
        sql_db.Cursor.commit = timed_commit

    def timed_http(self, function, label, is_send):
        """Wrap an HTTP function; `label(args, kwargs)` names the call, `is_send(args, kwargs)` says
        whether a success is an accepted message."""
        meter = self

        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            outcome = "error"
            try:
                result = function(*args, **kwargs)
                outcome = "ok" if getattr(result, "status_code", 200) < 300 else "error"
                return result
            finally:
                if meter.enabled:
                    entry = meter.http[f"{label(args, kwargs)} {outcome}"]
                    entry[0] += 1
                    entry[1] += time.perf_counter() - started
                    if outcome == "ok" and is_send(args, kwargs):
                        meter.sends_ok += 1
        return wrapper

    def timed_sleep(self, function):
        meter = self

        def wrapper(*args, **kwargs):
            slept = function(*args, **kwargs)
            if meter.enabled:
                meter.sleep += slept or 0.0
            return slept
        return wrapper

    # -- figures ---------------------------------------------------------------------------------
    def report(self, messages, wall):
        sql_count = sum(count for count, _seconds in self.sql.values())
        sql_seconds = sum(seconds for _count, seconds in self.sql.values()) + self.commits[1]
        http_seconds = sum(seconds for _count, seconds in self.http.values())
        python_seconds = wall - sql_seconds - http_seconds - self.sleep
        per = max(messages, 1)
        top = sorted(self.sql.items(), key=lambda item: -item[1][0])[:30]
        return {
            "messages": messages, "wall_seconds": wall,
            "sql_statements": sql_count, "sql_per_message": sql_count / per,
            "commits": self.commits[0], "commits_per_message": self.commits[0] / per,
            "sql_seconds": sql_seconds, "http_seconds": http_seconds, "sleep_seconds": self.sleep,
            "python_seconds": python_seconds,
            "per_message_ms": {
                "total": 1000 * wall / per, "sql": 1000 * sql_seconds / per, "http": 1000 * http_seconds / per,
                "sleep": 1000 * self.sleep / per, "python": 1000 * python_seconds / per},
            "http_calls": {key: {"count": count, "seconds": seconds} for key, (count, seconds) in self.http.items()},
            "sends_ok_this_worker": self.sends_ok,
            "top_statements": [{"per_message": count / per, "count": count, "ms_total": 1000 * seconds,
                                "sql": text} for text, (count, seconds) in top],
        }


def statement(query):
    code = getattr(query, "code", query)
    if isinstance(code, bytes):
        code = code.decode(errors="replace")
    return NUMBERS.sub("N", " ".join(str(code).split()))[:220]


def profile_summary(profiler, path, wanted_files=("strato_whatsapp", "mail_gateway", "odoo/models.py",
                                                  "odoo/fields.py", "odoo/api.py", "sql_db.py",
                                                  "addons/mail/models")):
    """Writes the cProfile text (cumulative and own time) beside `path`; returns the top rows."""
    import io
    import os
    import pstats
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("cumulative").print_stats(80)
    stats.sort_stats("tottime").print_stats(50)
    with open(path + ".pstats.txt", "w", encoding="utf-8") as text:
        text.write(stream.getvalue())
    stats.dump_stats(path + ".prof")
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():
        if any(part in filename for part in wanted_files):
            rows.append({"function": f"{os.path.basename(os.path.dirname(filename))}/{os.path.basename(filename)}"
                                     f":{line}:{name}",
                         "calls": calls, "tottime": round(tottime, 3), "cumtime": round(cumtime, 3)})
    return sorted(rows, key=lambda row: -row["cumtime"])[:60]

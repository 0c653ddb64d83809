"""The send queue's HTTP threads: a process-wide pool, so that keep-alive connections to the provider
outlive one cron run. No ORM here: the threads only make HTTP calls; the cron's thread does the rest."""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

# HTTP calls of one account in flight at once (threads that only talk HTTP; the ORM work stays in the
# cron's thread): Meta's answer takes longer than preparing the next message, so they overlap.
SENDS_IN_FLIGHT = 4
# Enough threads for a few accounts sending at once in one process (threaded server): a thread waits on
# its account's throttle before its call.
HTTP_THREADS = 4 * SENDS_IN_FLIGHT
_http_pool = {"pid": None, "executor": None}
_http_pool_lock = threading.Lock()


def http_threads():
    """This process's HTTP threads for sends; they live as long as the process, and so do their keep-alive
    connections to Meta (a new pool per run would open new TLS connections, right after the throttle)."""
    with _http_pool_lock:
        if _http_pool["pid"] != os.getpid():  # a prefork worker does not inherit its parent's threads
            _http_pool["executor"] = ThreadPoolExecutor(HTTP_THREADS, thread_name_prefix="strato_whatsapp_send")
            _http_pool["pid"] = os.getpid()
        return _http_pool["executor"]


def paced_send(throttle, client, payload):
    # Runs in an HTTP thread: paced right before the call, so that the calls leave at the throttle's pace
    # however the threads are scheduled.
    throttle.wait()
    return client.send_message(payload)


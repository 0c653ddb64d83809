"""GraphSimulator: the server on its own event loop, in a daemon thread or in the foreground."""
import asyncio
import concurrent.futures
import signal
import threading

from .server import SimServer
from .state import SimState

CALL_TIMEOUT_SECONDS = 30.0
START_TIMEOUT_SECONDS = 10.0


class GraphSimulator:
    """Meta's WhatsApp Cloud API on loopback, for tests, benchmarks and the demo.

    The helpers (requests(), sent(), set_faults()...) may be called from any thread: they run on
    the simulator's loop, so its state has a single writer and needs no locks on the hot path.
    """

    def __init__(self, host="127.0.0.1", port=0, accounts=None, webhook_url=None, auto_status=False,
                 status_delay=0.2, templates=None):
        self.host = host
        self._requested_port = port
        self.state = SimState(accounts)
        self._server = SimServer(self.state, webhook_url, auto_status, status_delay)
        if templates:
            self._server.controls.seed_templates(list(templates))
        self._loop = None
        self._thread = None
        self._stop_event = None

    # lifecycle ----------------------------------------------------------------------------
    @property
    def url(self):
        return self._server.url

    @property
    def port(self):
        return self._server.port

    @property
    def accounts(self):
        return self.state.accounts

    @property
    def account(self):
        """The first (default) account."""
        return self.state.accounts[0]

    def start(self):
        """Serve from a daemon thread; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("the simulator is already running")
        started = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run_in_thread, args=(started,),
                                        name="graph-simulator", daemon=True)
        self._thread.start()
        try:
            started.result(START_TIMEOUT_SECONDS)
        except BaseException:
            self._thread.join(START_TIMEOUT_SECONDS)
            self._thread = None
            raise
        return self

    def stop(self):
        """Close the listener and every connection, then end the thread."""
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(START_TIMEOUT_SECONDS)
        self._thread = None

    def run(self, on_ready=None):
        """Serve in the foreground until SIGINT/SIGTERM (the command-line mode)."""
        asyncio.run(self._serve(on_ready, handle_signals=True))

    def __enter__(self):
        return self.start()

    def __exit__(self, *_exc_info):
        self.stop()

    def _run_in_thread(self, started):
        def ready():
            started.set_result(True)
        try:
            asyncio.run(self._serve(ready, handle_signals=False))
        except BaseException as err:  # a bind failure must reach start(), not die in the thread
            if not started.done():
                started.set_exception(err)

    async def _serve(self, on_ready, handle_signals):
        self._loop = asyncio.get_running_loop()
        self._loop.set_exception_handler(_ignore_disconnects)
        self._stop_event = asyncio.Event()
        await self._server.start(self.host, self._requested_port)
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(signum, self._stop_event.set)
        if on_ready:
            on_ready()
        try:
            await self._stop_event.wait()
        finally:
            await self._server.stop()

    # helpers, callable from any thread ----------------------------------------------------
    def requests(self, path_contains=None):
        """Recorded Graph API requests (last 10,000): method, path, version, headers, json, status."""
        return self._call(self._server.controls.requests, path_contains)

    def sent(self):
        """{"messages": [accepted sends], "by_callback": {biz_opaque_callback_data: count}}."""
        return self._call(self._server.controls.sent)

    def stats(self):
        return self._call(self._server.controls.stats)

    def set_faults(self, rules, seed=None):
        """Replace the fault rules (see SIMULATOR_SPEC.md); seed makes probabilities repeatable."""
        self._call(self._server.controls.set_faults, list(rules), seed)

    def reset(self, templates=False, media=False):
        """Forget requests, sends, faults and stats; templates and media only when asked."""
        self._call(self._server.controls.reset, templates, media)

    def add_media(self, content, mime_type, filename=None):
        """Store bytes as inbound media; returns the media id to put in a webhook payload."""
        return self._call(self._server.controls.add_media, content, mime_type, filename)

    def seed_templates(self, templates, waba_id=None):
        """Store templates as Meta would return them (APPROVED by default); returns their ids."""
        return self._call(self._server.controls.seed_templates, list(templates), waba_id)

    def clear_templates(self):
        self._call(self._server.controls.clear_templates)

    def set_template_status(self, template_id, status, reason=None):
        return self._call(self._server.controls.set_template_status, str(template_id), status, reason)

    def post_webhook(self, target_url, payload, app_secret=None, bad_signature=False, sign=True):
        """Post a signed webhook to target_url; returns (status, body). status 0: unreachable."""
        if self._thread is None:
            raise RuntimeError("start the simulator before posting webhooks")
        if threading.current_thread() is self._thread:
            raise RuntimeError("post_webhook() waits on the simulator loop; await "
                               "controls.post_webhook() when already on it")
        coroutine = self._server.controls.post_webhook(target_url, payload, app_secret, bad_signature, sign)
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT_SECONDS)

    def _call(self, function, *args):
        """Run function on the loop thread (or directly when the loop is not serving)."""
        if self._thread is None or threading.current_thread() is self._thread:
            return function(*args)
        future = concurrent.futures.Future()

        def run():
            try:
                future.set_result(function(*args))
            except BaseException as err:
                future.set_exception(err)
        self._loop.call_soon_threadsafe(run)
        return future.result(CALL_TIMEOUT_SECONDS)


def _ignore_disconnects(loop, context):
    if isinstance(context.get("exception"), (ConnectionError, asyncio.CancelledError)):
        return
    loop.default_exception_handler(context)

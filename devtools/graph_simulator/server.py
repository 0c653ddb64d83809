"""The asyncio HTTP/1.1 server: connections, routing, fault injection, request log, auto-status."""
import asyncio
import re
import socket

from . import payloads
from .controls import Controls, route_control
from .errors import GraphError
from .graph import GraphApi
from .webhooks import WebhookPoster
from .wire import BadRequest, encode_response, json_response, parse_json_body, read_request

VERSION_SEGMENT = re.compile(r"v\d+(\.\d+)?")
HEAD_LIMIT = 64 * 1024
LISTEN_BACKLOG = 1024
STATUS_GAP_SECONDS = 0.05
_PROCEED = object()


class SimServer:
    def __init__(self, state, webhook_url=None, auto_status=False, status_delay=0.2):
        self.state = state
        self.webhook_url = webhook_url
        self.auto_status = auto_status
        self.status_delay = status_delay
        self.url = None
        self.port = None
        self.graph = GraphApi(state, self)
        self.poster = WebhookPoster()
        self.controls = Controls(state, self.poster)
        self._server = None
        self._stopping = False
        self._writers = set()
        self._tasks = set()

    async def start(self, host, port):
        # asyncio primitives bind to the loop that first uses them: a fresh poster per run.
        self.poster = self.controls.poster = WebhookPoster()
        self._stopping = False
        self._server = await asyncio.start_server(
            self._accept, host, port, limit=HEAD_LIMIT, backlog=LISTEN_BACKLOG, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://{host}:{self.port}"

    async def stop(self):
        self._stopping = True
        await self._stop_accepting()
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # aborted transports close their sockets on the next loop turn
        await self._server.wait_closed()
        await self.poster.close()

    async def _stop_accepting(self):
        """Stop accepting, then let accepts already under way attach to the server.

        Python 3.11 asserts (and leaks the socket) when an accept completes after Server.close().
        """
        loop = asyncio.get_running_loop()
        for listener in self._server.sockets:
            loop.remove_reader(listener.fileno())
        await asyncio.sleep(0)

    # connections --------------------------------------------------------------------------
    def _accept(self, reader, writer):
        """Called as each connection is made, before its handler task exists.

        Registering the writer here (not in the task) lets stop() close connections whose task
        has not started yet: a task cancelled before it starts never runs its `finally`.
        """
        if self._stopping:
            writer.transport.abort()
            return None
        self._writers.add(writer)
        return self._serve_connection(reader, writer)

    async def _serve_connection(self, reader, writer):
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await self._serve_requests(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.CancelledError):
            pass  # the client went away, or we are stopping: nothing left to answer
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            await _close(writer)

    async def _serve_requests(self, reader, writer):
        while True:
            try:
                request = await read_request(reader, writer)
            except BadRequest as err:
                error = GraphError(err.status, 100, details=f"Malformed HTTP request: {err.details}")
                writer.write(encode_response(error.to_response(), keep_alive=False))
                return
            if request is None:
                return
            response = await self._respond(request)
            if response is None:
                return  # a drop or timeout fault: close without an answer
            writer.write(encode_response(response, request.keep_alive))
            if not request.keep_alive:
                return
            await writer.drain()

    # requests -----------------------------------------------------------------------------
    async def _respond(self, request):
        try:
            return await self._route(request)
        except Exception as err:  # a simulator bug must still answer, like Meta's own 500s
            return GraphError(500, 1, "An unknown error occurred", details=repr(err)).to_response()

    async def _route(self, request):
        parse_json_body(request)
        segments = [segment for segment in request.path.split("/") if segment]
        if segments and segments[0] == "_sim":
            return await self._control(request, "/".join(segments[1:]))
        version = segments.pop(0) if segments and VERSION_SEGMENT.fullmatch(segments[0]) else None
        fault = self.state.faults.pick(request) if self.state.faults.rules else None
        if fault is not None:
            outcome = await self._inject(fault, request)
            if outcome is not _PROCEED:
                self.state.record_request(request, version, outcome and outcome.status, fault.kind)
                return outcome
        response = self._api_response(request, version, segments)
        self.state.record_request(request, version, response.status, fault and fault.kind)
        return response

    def _api_response(self, request, version, segments):
        if segments and segments[0] == "_media":
            return self.graph.download(request, segments)
        return self.graph.handle(request, version, segments)

    async def _control(self, request, name):
        try:
            response = route_control(self.controls, request, name)
            if asyncio.iscoroutine(response):
                response = await response
            return response
        except (ValueError, TypeError, KeyError, AttributeError) as err:
            return json_response({"error": {"message": f"{type(err).__name__}: {err}"}}, 400)

    async def _inject(self, rule, request):
        """The fault's answer: a Response, None to close silently, or _PROCEED after a delay."""
        self.state.counters["faults_injected"] += 1
        if rule.kind == "http":
            headers = (("Retry-After", str(rule.retry_after)),) if rule.retry_after is not None else ()
            return GraphError(rule.status, rule.code, rule.message, rule.details, rule.subcode,
                              headers).to_response()
        await asyncio.sleep(rule.delay)
        return _PROCEED if rule.kind == "delay" else None

    # auto-status --------------------------------------------------------------------------
    def message_accepted(self, record):
        if self.auto_status and self.webhook_url:
            asyncio.get_running_loop().call_later(self.status_delay, self._spawn_statuses, record)

    def _spawn_statuses(self, record):
        task = asyncio.get_running_loop().create_task(self._post_statuses(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post_statuses(self, record):
        account = self.state.account_for_phone(record["phone_number_id"])
        for status_name in ("sent", "delivered"):
            envelope = payloads.status_update(
                account["phone_number_id"], record["wamid"], status_name, record["to"],
                display_phone_number=account["display_phone_number"], waba_id=account["waba_id"],
                category=self._pricing_category(record, account), recipient_user_id=record["recipient"],
                biz_opaque_callback_data=record["biz_opaque_callback_data"])
            await self.controls.post_webhook(self.webhook_url, envelope, account["app_secret"])
            await asyncio.sleep(STATUS_GAP_SECONDS)

    def _pricing_category(self, record, account):
        if record["type"] != "template":
            return "service"
        template = record["payload"]["template"]
        known = self.state.templates.find(account["waba_id"], template["name"], template["language"]["code"])
        return known["category"].lower() if known else "utility"


async def _close(writer):
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, asyncio.CancelledError):
        pass

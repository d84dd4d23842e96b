"""HTTP/2 over TLS and h2c: hypercorn's H2Protocol, with stream errors where RFC 9113 asks for them.

hypercorn.asyncio.serve() neither takes pre-bound sockets nor exposes the TLS connection to the app,
so this runs hypercorn's per-connection TCPServer itself, with its own protocol class. What differs
from hypercorn (and the h2 library) as they come:
1. Over MAX_CONCURRENT_STREAMS, a new stream gets RST_STREAM REFUSED_STREAM and nothing else; the
   streams already accepted go on (RFC 9113 §5.1.2; h2 raises TooManyStreamsError, a connection
   error). Its header block is still decoded, so the HPACK state stays in step (§4.3).
2. One header limit for HTTP/1.x and HTTP/2: a header block is measured exactly (name + value bytes,
   MAX_HEADER_SIZE) and over the limit gets the app's 431 document on its stream; the connection
   goes on. A block too large to decode at all (over `Limits.head_bound`, where h2 would end the
   connection with a bare GOAWAY) gets the same 431 on its stream, then GOAWAY ENHANCE_YOUR_CALM,
   since its HPACK state is lost.
3. Rapid reset (CVE-2023-44487): a connection whose client resets many streams before their answer
   (at least RESET_FLOOD_STREAMS, and at least half the streams it opened) gets GOAWAY
   ENHANCE_YOUR_CALM and is closed. Reset streams are forgotten at once (hypercorn kept their send
   buffers, and 1,000 of them made its priority tree raise).
4. PRIORITY frames are ignored (RFC 9113 §5.3.2 deprecates that scheme; a flood of them made the
   priority tree raise).
5. DATA for a stream already answered (a 413 before the body ended) is discarded and its
   flow-control credit returned, so other streams keep flowing; past DISCARD_LIMIT bytes that stream
   is reset with NO_ERROR (RFC 9113 §8.1). hypercorn dropped the whole connection here.
6. Time: a connection must start its first request within the header timeout, an idle one is closed
   after the keep-alive timeout, and a request body that pauses longer than the body timeout gets
   the app's 408 document on its stream.
7. Raw bytes >= 0x80 in `:path` reach the app as on HTTP/1.x (raw_path/query_string as received,
   path decoded with surrogateescape); hypercorn decoded it as ASCII and failed.
8. No exception leaves a connection: whatever escapes is one line on stderr, rate-limited.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
import h2.stream
import hpack
from hypercorn.asyncio.task_group import TaskGroup
from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.asyncio.worker_context import WorkerContext
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed, RawData, Updated
from hypercorn.protocol.events import Request
from hypercorn.protocol.h2 import H2Protocol, StreamBuffer
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.protocol.ws_stream import WSStream
from hypercorn.typing import ConnectionState
from hypercorn.utils import filter_pseudo_headers, parse_socket_addr
from hyperframe.exceptions import InvalidDataError, InvalidFrameError
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, RstStreamFrame
from priority.priority import DuplicateStreamError, MissingStreamError, PriorityError

from echo.connections import LINGER_IDLE_SECONDS, ConnectionGuard, ErrorResponse, Limits, Notices
from echo.http1 import TLS_EXTENSION, escape_high_bytes

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
Spawn = Callable[..., Any]

RESET_FLOOD_STREAMS = 100
DISCARD_LIMIT = 1_048_576
MAX_CONCURRENT_STREAMS = 100


@dataclasses.dataclass(frozen=True)
class H2Context:
    limits: Limits
    guard: ConnectionGuard
    error_response: ErrorResponse
    notices: Notices


class HeaderBlockTooLarge(Exception):
    """A header block over the decodable bound; the connection cannot continue (rule 2)."""

    def __init__(self, stream_id: int) -> None:
        super().__init__(stream_id)
        self.stream_id = stream_id


class _FrameBuffer(h2.frame_buffer.FrameBuffer):
    """h2's frame buffer with header blocks bounded in bytes rather than in CONTINUATION frames,
    and read without recursion (h2 recursed once per buffered CONTINUATION frame)."""

    def __init__(self, bound: int) -> None:
        super().__init__(server=True)
        self._bound = bound
        # Empty CONTINUATION frames cost memory too: bound their number as well.
        self._max_frames = max(h2.frame_buffer.CONTINUATION_BACKLOG, bound // 1024)
        self._block_bytes = 0

    def __next__(self) -> Frame:
        while True:
            if len(self._data) < 9:
                raise StopIteration
            try:
                frame, length = Frame.parse_frame_header(memoryview(self._data[:9]))
            except (InvalidDataError, InvalidFrameError) as error:
                raise h2.exceptions.ProtocolError(f"Received frame with invalid header: {error}") from error
            if len(self._data) < length + 9:
                raise StopIteration
            self._validate_frame_length(length)
            try:
                frame.parse_body(memoryview(self._data[9 : 9 + length]))
            except InvalidDataError as error:
                raise h2.exceptions.ProtocolError("Received frame with non-compliant data") from error
            except InvalidFrameError as error:
                raise h2.exceptions.FrameDataMissingError("Frame data missing or invalid") from error
            del self._data[: 9 + length]
            complete = self._update_header_buffer(frame)
            if complete is not None:
                return complete

    def _update_header_buffer(self, f: Frame | None) -> Frame | None:
        if self._headers_buffer:
            stream_id = self._headers_buffer[0].stream_id
            if not isinstance(f, ContinuationFrame) or f.stream_id != stream_id:
                raise h2.exceptions.ProtocolError("Invalid frame during header block.")
            self._headers_buffer.append(f)
            self._block_bytes += len(f.data)
            if self._block_bytes > self._bound or len(self._headers_buffer) > self._max_frames:
                raise HeaderBlockTooLarge(stream_id)
            if "END_HEADERS" not in f.flags:
                return None
            first = self._headers_buffer[0]
            first.flags.add("END_HEADERS")
            first.data = b"".join(x.data for x in self._headers_buffer)
            self._headers_buffer = []
            return first
        if isinstance(f, HeadersFrame) and "END_HEADERS" not in f.flags:
            self._headers_buffer.append(f)
            self._block_bytes = len(f.data)
            if self._block_bytes > self._bound:
                raise HeaderBlockTooLarge(f.stream_id)
            return None
        return super()._update_header_buffer(f)


class _Connection(h2.connection.H2Connection):
    """h2's server connection with REFUSED_STREAM over the stream limit and bounded header blocks."""

    def __init__(self, limits: Limits) -> None:
        super().__init__(config=h2.config.H2Configuration(client_side=False, header_encoding=None))
        bound = limits.head_bound
        self.incoming_buffer = _FrameBuffer(bound)
        # h2 would only apply the advertised MAX_HEADER_LIST_SIZE once the client acknowledges a
        # change, and hypercorn sets it as an initial value: without this, 64 KiB was the limit.
        self.decoder.max_header_list_size = bound
        self.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: MAX_CONCURRENT_STREAMS,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: bound,
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
            },
        )

    def _receive_headers_frame(self, frame: HeadersFrame) -> tuple[list[Frame], list[h2.events.Event]]:
        if (
            frame.stream_id not in self.streams
            and self.open_inbound_streams >= self.local_settings.max_concurrent_streams
        ):
            return self._refuse_stream(frame)
        try:
            return super()._receive_headers_frame(frame)
        except h2.exceptions.DenialOfServiceError as error:
            raise HeaderBlockTooLarge(frame.stream_id) from error

    def _refuse_stream(self, frame: HeadersFrame) -> tuple[list[Frame], list[h2.events.Event]]:
        stream_id = frame.stream_id
        if stream_id % 2 == 0 or stream_id <= self.highest_inbound_stream_id:
            raise h2.exceptions.ProtocolError(f"invalid new stream id {stream_id}")
        try:
            self.decoder.decode(frame.data, raw=True)
        except hpack.OversizedHeaderListError as error:
            raise HeaderBlockTooLarge(stream_id) from error
        except hpack.HPACKError as error:
            raise h2.exceptions.ProtocolError(f"bad header block: {error}") from error
        self.state_machine.process_input(h2.connection.ConnectionInputs.RECV_HEADERS)
        self.highest_inbound_stream_id = stream_id
        self._closed_streams[stream_id] = h2.stream.StreamClosedBy.SEND_RST_STREAM
        reset = RstStreamFrame(stream_id)
        reset.error_code = h2.errors.ErrorCodes.REFUSED_STREAM
        return [reset], []


class _ErrorApp:
    """Answers one stream with the app's error document instead of running the app."""

    def __init__(self, error_response: ErrorResponse, status: int, message: str) -> None:
        self._headers, self._body = error_response(status, message)
        self._status = status

    async def __call__(
        self, scope: Any, receive: Any, send: Any, sync_spawn: Spawn, call_soon: Spawn
    ) -> None:
        await send({"type": "http.response.start", "status": self._status, "headers": self._headers})
        await send({"type": "http.response.body", "body": self._body})


class _Stream(HTTPStream):
    """hypercorn's HTTP stream with the exact header limit (rule 2) and raw path bytes (rule 7)."""

    def __init__(self, *args: Any, context: H2Context) -> None:
        super().__init__(*args)
        self._context = context

    async def handle(self, event: Any) -> None:
        if not isinstance(event, Request):
            await super().handle(event)
            return
        limit = self._context.limits.max_header_bytes
        size = sum(len(name) + len(value) for name, value in event.headers)
        if size > limit:
            message = f"request headers total {size} bytes, more than {limit}"
            self.app = _ErrorApp(self._context.error_response, 431, message)
        raw_target = event.raw_path
        if raw_target.isascii():
            await super().handle(event)
            return
        await super().handle(dataclasses.replace(event, raw_path=escape_high_bytes(raw_target)))
        # The app task is created but has not run yet: give it the bytes as they arrived.
        path, _, query = raw_target.partition(b"?")
        self.scope["raw_path"] = path
        self.scope["path"] = self.config.root_path + unquote(path.decode("utf-8", "surrogateescape"))
        self.scope["query_string"] = query


class _Protocol(H2Protocol):
    def __init__(self, *args: Any, context: H2Context) -> None:
        super().__init__(*args)
        self._context = context
        self.connection = _Connection(context.limits)
        self.connection.DEFAULT_MAX_INBOUND_FRAME_SIZE = self.config.h2_max_inbound_frame_size
        self._opened = 0
        self._premature_resets = 0
        self._ending = False
        self._discarded: dict[int, int] = {}

    async def handle(self, event: Any) -> None:
        if not isinstance(event, RawData):
            await super().handle(event)
            return
        if self._ending:
            return  # answered and going away: what still arrives is read and dropped
        try:
            events = self.connection.receive_data(event.data)
        except HeaderBlockTooLarge as error:
            await self._refuse_header_block(error.stream_id)
        except h2.exceptions.ProtocolError:
            await self._flush()
            await self.send(Closed())
        else:
            await self._handle_events(events)

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
                self._discard(event)
                continue
            if isinstance(event, h2.events.RequestReceived):
                self._opened += 1
            elif isinstance(event, h2.events.StreamReset):
                self._discarded.pop(event.stream_id, None)
                if event.remote_reset and event.stream_id in self.streams:
                    self._premature_resets += 1
                    if self._reset_flood():
                        await self._enhance_your_calm()
                        return
            elif isinstance(event, h2.events.StreamEnded):
                self._discarded.pop(event.stream_id, None)
            await super()._handle_events([event])
            if isinstance(event, h2.events.StreamReset):
                await self._forget(event.stream_id)

    def _reset_flood(self) -> bool:
        resets = self._premature_resets
        return resets >= RESET_FLOOD_STREAMS and 2 * resets >= self._opened

    async def _enhance_your_calm(self) -> None:
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        self._context.notices.notice(
            "rapid-reset",
            f"HTTP/2 connection from {client}: {self._premature_resets} of {self._opened} streams reset "
            "before their answer; GOAWAY ENHANCE_YOUR_CALM",
        )
        self.connection.close_connection(error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        await self._flush()
        await self._end_lingering()

    def _discard(self, event: h2.events.DataReceived) -> None:
        stream_id = event.stream_id
        length = event.flow_controlled_length
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self.connection.acknowledge_received_data(length, stream_id)
        discarded = self._discarded.get(stream_id, 0) + length
        if discarded <= DISCARD_LIMIT:
            self._discarded[stream_id] = discarded
            return
        self._discarded.pop(stream_id, None)
        with contextlib.suppress(h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            self.connection.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)

    async def _forget(self, stream_id: int) -> None:
        buffer = self.stream_buffers.pop(stream_id, None)
        if buffer is not None:
            await buffer.close()
        with contextlib.suppress(MissingStreamError):
            self.priority.remove_stream(stream_id)

    async def _refuse_header_block(self, stream_id: int) -> None:
        limit = self._context.limits.max_header_bytes
        headers, body = self._context.error_response(
            431, f"request header block too large to decode (MAX_HEADER_SIZE is {limit} bytes)"
        )
        # Written straight to HPACK, past h2's own normalisation: HTTP/2 names are lower-case.
        block = self.connection.encoder.encode([(b":status", b"431"), *((n.lower(), v) for n, v in headers)])
        goaway = GoAwayFrame(0, last_stream_id=stream_id, error_code=h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
        frames: list[Frame] = [
            HeadersFrame(stream_id, data=block, flags=["END_HEADERS"]),
            DataFrame(stream_id, data=body, flags=["END_STREAM"]),
            goaway,
        ]
        await self._flush()
        await self.send(RawData(data=b"".join(frame.serialize() for frame in frames)))
        await self._end_lingering()

    async def _end_lingering(self) -> None:
        """Close after a short while, reading and dropping meanwhile: closing at once, while the
        client is still sending, would make the kernel reset the connection, and with it the
        answer and GOAWAY just written."""
        self._ending = True

        async def close_later() -> None:
            await asyncio.sleep(LINGER_IDLE_SECONDS)
            await self.send(Closed())

        self.task_group.spawn(close_later)

    async def _priority_updated(self, event: h2.events.PriorityUpdated) -> None:
        return  # rule 4

    async def _send_data(self, stream_id: int) -> None:
        # hypercorn's, tolerant of a stream forgotten while this task waited.
        buffer = self.stream_buffers.get(stream_id)
        if buffer is None:
            with contextlib.suppress(MissingStreamError):
                self.priority.remove_stream(stream_id)
            return
        try:
            chunk_size = min(
                self.connection.local_flow_control_window(stream_id),
                self.connection.max_outbound_frame_size,
            )
            data = await buffer.pop(max(0, chunk_size))
            if data:
                self.connection.send_data(stream_id, data)
                await self._flush()
            else:
                self.priority.block(stream_id)
            if buffer.complete:
                self.connection.end_stream(stream_id)
                await self._flush()
                self.stream_buffers.pop(stream_id, None)
                self.priority.remove_stream(stream_id)
        except (KeyError, h2.exceptions.ProtocolError, PriorityError):  # StreamClosedError too
            await buffer.close()
            self.stream_buffers.pop(stream_id, None)
            with contextlib.suppress(MissingStreamError):
                self.priority.remove_stream(stream_id)

    async def _create_stream(self, request: h2.events.RequestReceived) -> None:
        # hypercorn's, with this module's HTTP stream class.
        method = ""
        raw_path = b""
        for name, value in request.headers:
            if name == b":method":
                method = value.decode("ascii").upper()
            elif name == b":path":
                raw_path = value
        stream_args = (
            self.app,
            self.config,
            self.context,
            self.task_group,
            self.ssl,
            self.client,
            self.server,
            self.stream_send,
            request.stream_id,
        )
        if method == "CONNECT":
            self.streams[request.stream_id] = WSStream(*stream_args)
        else:
            self.streams[request.stream_id] = _Stream(*stream_args, context=self._context)
        self.stream_buffers[request.stream_id] = StreamBuffer(self.context.event_class)
        try:
            self.priority.insert_stream(request.stream_id)
        except DuplicateStreamError:
            pass
        else:
            self.priority.block(request.stream_id)
        await self.streams[request.stream_id].handle(
            Request(
                stream_id=request.stream_id,
                headers=filter_pseudo_headers(request.headers),
                http_version="2",
                method=method,
                raw_path=raw_path,
                state=self.connection_state,
            )
        )
        self.keep_alive_requests += 1
        await self.context.mark_request()


class _App:
    """hypercorn app wrapper: TLS facts into every scope, and the body timeout (rule 6)."""

    def __init__(self, app: ASGIApp, context: H2Context, facts: dict[str, object] | None) -> None:
        self._app = app
        self._context = context
        self._facts = facts

    async def __call__(
        self, scope: Any, receive: Any, send: Any, sync_spawn: Spawn, call_soon: Spawn
    ) -> None:
        if self._facts is not None:
            scope.setdefault("extensions", {})[TLS_EXTENSION] = self._facts
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        watch = _BodyWatch(receive, send, self._context.limits.body_timeout)
        await self._app(scope, watch.receive, watch.send)
        if watch.timed_out and not watch.started:
            timeout = self._context.limits.body_timeout
            headers, body = self._context.error_response(
                408, f"request body paused for more than {timeout:g}s"
            )
            await send({"type": "http.response.start", "status": 408, "headers": headers})
            await send({"type": "http.response.body", "body": body})


class _BodyWatch:
    def __init__(self, receive: Callable[[], Awaitable[Message]], send: Any, timeout: float) -> None:
        self._receive = receive
        self._send = send
        self._timeout = timeout
        self.complete = False
        self.timed_out = False
        self.started = False

    async def receive(self) -> Message:
        if self.complete:
            return await self._receive()
        try:
            message = await asyncio.wait_for(self._receive(), self._timeout)
        except TimeoutError:
            self.timed_out = self.complete = True
            return {"type": "http.disconnect"}
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.complete = True
        return message

    async def send(self, message: Message) -> None:
        if self.timed_out:
            return
        self.started = True
        await self._send(message)


class _Server(TCPServer):
    """hypercorn's per-connection server with this module's protocol (rules 6, 8)."""

    def __init__(
        self,
        app: _App,
        config: HypercornConfig,
        worker: WorkerContext,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        context: H2Context,
        upgrade: tuple[list[tuple[bytes, bytes]], bytes] | None,
    ) -> None:
        super().__init__(app, asyncio.get_running_loop(), config, worker, {}, reader, writer)
        self._context = context
        self._upgrade = upgrade
        self._served = False
        self.deadline = 0.0

    def expire(self) -> None:  # the guard needs it; hypercorn's own idle task does the timing here
        self.deadline = 0.0

    async def run(self) -> None:
        sock = self.writer.get_extra_info("socket")
        try:
            client = parse_socket_addr(sock.family, sock.getpeername())
            server = parse_socket_addr(sock.family, sock.getsockname())
            ssl = self.writer.get_extra_info("ssl_object") is not None
            async with TaskGroup(self.loop) as task_group:
                self._task_group = task_group
                protocol = _Protocol(
                    self.app,
                    self.config,
                    self.context,
                    task_group,
                    ConnectionState(self.state),
                    ssl,
                    client,
                    server,
                    self.protocol_send,
                    context=self._context,
                )
                self.protocol = cast(Any, protocol)
                if self._upgrade is not None:
                    await protocol.initiate(*self._upgrade)
                else:
                    await protocol.initiate()
                await self.idle_task.restart(task_group, self._idle_timeout)
                await self._read_data()
        except OSError:
            pass
        finally:
            await self._close()

    async def protocol_send(self, event: Any) -> None:
        if isinstance(event, Updated) and not event.idle:
            self._served = True
        await super().protocol_send(event)

    async def _idle_timeout(self) -> None:
        limits = self._context.limits
        # Until its first request a connection gets the header timeout, then the keep-alive one.
        timeout = limits.keep_alive if self._served else limits.header_timeout
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.context.terminated.wait(), timeout)
        await asyncio.shield(self._initiate_server_close())


class Http2Connections:
    """Every HTTP/2 connection of the process (TLS and h2c), for serving and for the drain."""

    def __init__(self, app: ASGIApp, context: H2Context, config: HypercornConfig) -> None:
        self._app = app
        self._context = context
        self._config = config
        self._worker = WorkerContext(None)
        self._connections: set[asyncio.Task[Any]] = set()

    async def serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        facts: dict[str, object] | None = None,
        upgrade: tuple[list[tuple[bytes, bytes]], bytes] | None = None,
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)
        app = _App(self._app, self._context, facts)
        server = _Server(app, self._config, self._worker, reader, writer, self._context, upgrade)
        guard = self._context.guard
        if not guard.admit(server):
            writer.close()
            return
        try:
            await server.run()
        except asyncio.CancelledError:
            # Cancelled by close() at the end of the drain. Ending normally matters: asyncio's
            # streams callback calls task.exception(), which raises (a traceback) for a cancelled task.
            writer.close()
        except Exception as error:  # rule 8: one line, never a traceback
            peer = writer.get_extra_info("peername")
            self._context.notices.notice(
                "h2-error", f"HTTP/2 connection from {peer} ended by an internal error: {error!r}"
            )
            writer.close()
        finally:
            guard.release(server)

    async def close(self, grace_seconds: float) -> None:
        # Idle connections close now; busy ones after their in-flight streams, or at the grace limit.
        await self._worker.terminated.set()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=grace_seconds)
        for task in list(self._connections):
            task.cancel()


def hypercorn_config(limits: Limits, grace_seconds: float) -> HypercornConfig:
    config = HypercornConfig()
    config.accesslog = None
    # No handler is configured: warnings and errors (an app exception on HTTP/2) reach stderr through
    # logging's last-resort handler, as uvicorn's do.
    config.errorlog = logging.getLogger("echo.hypercorn")
    config.include_server_header = False
    config.keep_alive_timeout = limits.keep_alive
    config.graceful_timeout = grace_seconds
    config.h2_max_concurrent_streams = MAX_CONCURRENT_STREAMS
    config.h2_max_header_list_size = limits.head_bound
    # hypercorn ends a connection after 1,000 requests and then repeats GOAWAY on every later
    # stream; a long-lived proxy connection has no reason to be recycled here.
    config.keep_alive_max_requests = 2**62
    return config


def handed_over(
    transport: asyncio.Transport,
    serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    data: bytes = b"",
) -> None:
    """Give a connection some protocol object already owns to an asyncio-streams server (hypercorn)."""
    reader = asyncio.StreamReader(limit=2**16)
    protocol = asyncio.StreamReaderProtocol(reader, serve)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if data:
        protocol.data_received(data)

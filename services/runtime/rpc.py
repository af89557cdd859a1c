"""RPC over DEALER/ROUTER with ``proto.rpc`` messages.

The server answers every request (an ``Err`` for bad or failing ones); the client
times out every call and retries only idempotent requests. Anyone who reaches a server's
ROUTER may send it anything: messages that are not ``[PROTOCOL, body]`` are dropped
unanswered, bodies that do not decode are answered ``bad_request``, and both are counted
(sockets ``rpc_server`` and, for replies, ``rpc_client``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import zmq

from proto import rpc

from .sockets import Role, bind, make_socket
from .zmq_loop import Rejected, SocketReader, send_nowait

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
Handler = Callable[[rpc.AnyRequest], Awaitable[rpc.Reply]]
RuntimeHandler = Callable[[rpc.RuntimeRequest], rpc.Reply]
"Answers the requests every service serves alike (``GetOutbox``), on the event loop."


class RpcServer:
    """A ROUTER that hands each request to ``handler`` in its own task.

    Runtime requests (``rpc.RuntimeRequest``) go to ``runtime`` instead, so the service's
    handler only ever sees ``rpc.AnyRequest``; without ``runtime`` they are answered
    ``bad_request``.
    """

    def __init__(self, ctx: zmq.Context[Any], endpoint: str, handler: Handler, name: str,
                 runtime: RuntimeHandler | None = None) -> None:
        self.sock = make_socket(ctx, Role.RPC_SERVER)
        self.endpoint = bind(self.sock, endpoint)
        self.handler = handler
        self.runtime = runtime
        self.name = name
        self._reader = SocketReader(self.sock, self._on_message, f"{name}-rpc", "rpc_server")
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._reader.start()

    def _on_message(self, parts: list[bytes]) -> None:
        if len(parts) != 3:
            raise Rejected("frames", f"{len(parts)} parts")
        identity, protocol, body = parts
        if protocol != rpc.PROTOCOL:
            raise Rejected("protocol", f"{protocol[:40]!r}")
        try:
            request = rpc.decode_request(body)
        except msgspec.DecodeError as e:
            self._reply(identity, rpc.Err(code="bad_request", message=str(e)))
            raise Rejected("decode", str(e)) from e
        task = asyncio.get_running_loop().create_task(self._serve(identity, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, identity: bytes, request: rpc.AnyRequest | rpc.RuntimeRequest
                     ) -> None:
        try:
            if isinstance(request, rpc.GetOutbox):
                if self.runtime is None:
                    raise rpc.RpcError("bad_request", f"{self.name} does not serve GetOutbox")
                reply = self.runtime(request)
            else:
                reply = await self.handler(request)
        except rpc.RpcError as e:
            reply = rpc.Err(code=e.code, message=e.message)
        except Exception as e:
            logger.exception("RpcServer(%s): %s failed", self.name, type(request).__name__)
            reply = rpc.Err(code="internal", message=f"{type(e).__name__}: {e}")
        self._reply(identity, msgspec.structs.replace(reply, request_id=request.request_id))

    def _reply(self, identity: bytes, reply: rpc.Reply) -> None:
        try:
            send_nowait(self.sock, [identity, rpc.PROTOCOL, rpc.encode(reply)])
        except zmq.ZMQError as e:  # the client went away (ROUTER_MANDATORY)
            logger.info("RpcServer(%s): reply undeliverable: %s", self.name, e)
        self._reader.poke()  # the send may have taken the edge of a waiting request

    async def close(self) -> None:
        self._reader.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.sock.close()


class RpcClient:
    """A DEALER connected to one server; ``call()`` awaits the matching reply."""

    def __init__(self, ctx: zmq.Context[Any], endpoint: str, name: str) -> None:
        self.sock = make_socket(ctx, Role.RPC_CLIENT)
        self.sock.connect(endpoint)
        self.endpoint = endpoint
        self.name = name
        self._pending: dict[str, asyncio.Future[rpc.AnyReply]] = {}
        self._reader = SocketReader(self.sock, self._on_message, f"{name}-rpc-client",
                                    "rpc_client")
        self._reader.start()

    async def call(self, request: rpc.Request, timeout: float = DEFAULT_TIMEOUT_S,
                   retries: int = 1) -> rpc.AnyReply:
        """Send and await the reply; raises RpcError for ``Err`` replies and time-outs."""
        attempts = 1 + (retries if isinstance(request, rpc.IDEMPOTENT) else 0)
        for attempt in range(attempts):
            request_id = uuid.uuid4().hex
            future: asyncio.Future[rpc.AnyReply] = asyncio.get_running_loop().create_future()
            self._pending[request_id] = future
            sent = msgspec.structs.replace(request, request_id=request_id)
            try:
                sent_ok = send_nowait(self.sock, [rpc.PROTOCOL, rpc.encode(sent)])
                self._reader.poke()  # the send may have taken the edge of a waiting reply
                if not sent_ok:
                    raise rpc.RpcError("unavailable", f"{self.name}: send queue full")
                reply = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                if attempt + 1 == attempts:
                    raise rpc.RpcError("timeout", f"{self.name} did not answer "
                                       f"{type(request).__name__} within {timeout} s") from None
                continue
            finally:
                self._pending.pop(request_id, None)
            if isinstance(reply, rpc.Err):
                raise rpc.RpcError(reply.code, reply.message)
            return reply
        raise AssertionError("unreachable")

    def _on_message(self, parts: list[bytes]) -> None:
        if len(parts) != 2:
            raise Rejected("frames", f"{len(parts)} parts")
        if parts[0] != rpc.PROTOCOL:
            raise Rejected("protocol", f"{parts[0][:40]!r}")
        try:
            reply = rpc.decode_reply(parts[1])
        except msgspec.DecodeError as e:
            raise Rejected("decode", str(e)) from e
        future = self._pending.get(reply.request_id)
        if future is not None and not future.done():
            future.set_result(reply)

    def close(self) -> None:
        self._reader.stop()
        for future in self._pending.values():
            future.cancel()
        self.sock.close()

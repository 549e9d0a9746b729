"""Serve an ASGI app with uvicorn on a free loopback port, in a background thread.

For tests that need the app on a real socket (an HTTP client in another process,
or a synchronous client in the test's own thread). The server runs its own event
loop in the thread; ``ServedApp.run(coro)`` runs a coroutine on that loop, so
fixtures can use objects the app created there (database engine, Redis client).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import Future
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn

T = TypeVar("T")


@dataclass
class ServedApp:
    base_url: str
    port: int
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run ``coro`` on the server's event loop and wait for its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)


@contextmanager
def serving(
    app: Any,
    *,
    host: str = "127.0.0.1",
    loop: str = "auto",
    log_level: str = "warning",
    startup_timeout: float = 60.0,
) -> Iterator[ServedApp]:
    """Run ``app`` (lifespan included) until the block ends; yields its base URL and loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))  # bound here, handed to uvicorn: no race for the port
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        loop=loop,
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    factory = config.get_loop_factory()
    event_loop = factory() if factory is not None else asyncio.new_event_loop()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(event_loop)
        try:
            event_loop.run_until_complete(server.serve(sockets=[sock]))
        except BaseException as exc:  # reported to the waiting thread
            failure.append(exc)
        finally:
            event_loop.run_until_complete(event_loop.shutdown_asyncgens())
            event_loop.close()

    thread = threading.Thread(target=run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the app did not start: {failure or 'lifespan failed'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the app did not start within {startup_timeout} s")
            time.sleep(0.02)
        yield ServedApp(base_url=f"http://{host}:{port}", port=port, loop=event_loop)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        if thread.is_alive():  # connections or tasks that do not end: stop waiting for them
            server.force_exit = True
            thread.join(timeout=15)
        sock.close()
        if thread.is_alive():
            raise RuntimeError("uvicorn did not stop within 30 s")


@asynccontextmanager
async def serving_here(app: Any, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port on the running event loop, lifespan off (the
    caller already ran it, e.g. with asgi-lifespan); yields the base URL (http://...).

    For WebSockets, which an in-process ASGI transport does not carry, in tests whose
    app objects (database engines, Redis clients) are bound to the test's loop.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port: int = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", access_log=False, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the app's server stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()

"""A TCP proxy that can take a dependency away and bring it back (tests).

`TcpProxy(host, port)` listens on 127.0.0.1 (a free port, kept across `down()`/`up()`) and
pipes every connection to the upstream. `down()` stops listening and cuts every open
connection, so clients see what they see when a server is gone (connection refused, reset);
`up()` listens again on the same port. It works for any protocol: PostgreSQL, the broker's
bootstrap connection (clients then connect to the broker's advertised address themselves), an
RPC node, the Kubernetes API.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self.connections = 0

    @classmethod
    def for_url(cls, url: str) -> TcpProxy:
        """For `http://host:port` or `host:port`."""
        netloc = url.split("://", 1)[-1].split("/", 1)[0]
        host, port = netloc.rsplit(":", 1)
        return cls(host, int(port))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self, listening: bool = True) -> TcpProxy:
        """Pick the port; listen unless `listening` is False (then down until `up()`)."""
        await self.up()
        if not listening:
            await self.down()
        return self

    async def up(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        for writer in list(self._conns):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._conns.clear()

    @property
    def is_up(self) -> bool:
        return self._server is not None

    async def stop(self) -> None:
        await self.down()

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._conns.update((writer, up_writer))
        try:
            await asyncio.gather(
                _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
            )
        finally:
            for w in (writer, up_writer):
                self._conns.discard(w)
                with contextlib.suppress(Exception):
                    w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()

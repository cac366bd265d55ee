"""A tiny SMTP server for tests (asyncio, in a background thread): accepts and keeps every message.

Speaks just enough SMTP for :mod:`smtplib` (EHLO/HELO, MAIL, RCPT, DATA with dot-unstuffing, RSET,
NOOP, QUIT).  ``fail_first`` makes the first N transactions answer ``451`` to test retries.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    """One accepted message."""

    sender: str
    recipients: list[str]
    data: bytes


@dataclass
class SmtpSink:
    """``with SmtpSink() as sink: ... sink.port ... sink.messages``."""

    fail_first: int = 0
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Received] = field(default_factory=list)

    def __enter__(self) -> SmtpSink:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="smtp-sink", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("SMTP sink did not start")
        return self

    def __exit__(self, *exc: Any) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._session, self.host, self.port)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def reply(line: str) -> None:
            writer.write((line + "\r\n").encode())

        reply("220 sink ESMTP")
        sender, rcpts = "", []
        try:
            while line := await reader.readline():
                cmd = line.decode("ascii", "replace").strip()
                verb = cmd[:4].upper()
                if verb == "EHLO":
                    reply("250-sink")
                    reply("250 8BITMIME")
                elif verb == "HELO":
                    reply("250 sink")
                elif verb == "MAIL":
                    sender, rcpts = cmd.split(":", 1)[1].strip().split()[0].strip("<>"), []
                    reply("250 OK")
                elif verb == "RCPT":
                    rcpts.append(cmd.split(":", 1)[1].strip().strip("<>"))
                    reply("250 OK")
                elif verb == "DATA":
                    reply("354 go ahead")
                    chunks = []
                    while (chunk := await reader.readline()) not in (b".\r\n", b".\n", b""):
                        chunks.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                    if self.fail_first > 0:
                        self.fail_first -= 1
                        reply("451 try again later")
                    else:
                        self.messages.append(Received(sender, rcpts, b"".join(chunks)))
                        reply("250 queued")
                elif verb == "QUIT":
                    reply("221 bye")
                    await writer.drain()
                    break
                else:  # RSET, NOOP and anything else
                    reply("250 OK")
                await writer.drain()
        finally:
            writer.close()

"""A WebSocket echo server for the tunnel tests (Python `websockets`).

Prints its port on the first line of stdout. Echoes every message; "push N" makes it send N
messages of its own first ("pushed i"), so traffic flows server to client unprompted.
"""
import asyncio
import sys

from websockets.asyncio.server import serve


async def handler(ws):
    async for msg in ws:
        if isinstance(msg, str) and msg.startswith("push "):
            for i in range(int(msg.split()[1])):
                await ws.send(f"pushed {i}")
        await ws.send(msg)


async def main():
    async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await asyncio.Future()


asyncio.run(main())

"""A WebSocket client for the tunnel tests: talks through proxyd to the echo server.

usage: client.py URL   (for wss://, CA_FILE names the certificate to trust)
Checks echoes both ways, prints READY, waits for a line on stdin (the test reloads proxyd
meanwhile), then checks a 1 MB message, server pushes and a clean close. Prints OK at the end;
any failure raises (non-zero exit).
"""
import asyncio
import os
import ssl
import sys

from websockets.asyncio.client import connect


async def main(url):
    tls = None
    if url.startswith("wss://"):
        tls = ssl.create_default_context(cafile=os.environ["CA_FILE"])
    async with connect(url, max_size=None, ssl=tls) as ws:
        for i in range(10):
            await ws.send(f"hello {i}")
            assert await ws.recv() == f"hello {i}"
        await ws.send(b"\x00\x01binary\xff")
        assert await ws.recv() == b"\x00\x01binary\xff"
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        big = bytes(i % 251 for i in range(1_000_000))
        await ws.send(big)
        assert await ws.recv() == big
        await ws.send("push 100")
        for i in range(100):
            assert await ws.recv() == f"pushed {i}"
        assert await ws.recv() == "push 100"
    print("OK", flush=True)


asyncio.run(main(sys.argv[1]))

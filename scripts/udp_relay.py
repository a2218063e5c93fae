#!/usr/bin/env python3
"""A UDP relay on loopback that stands in front of cosigners and injects network faults.

    udp_relay.py [--control FILE] FRONT:TARGET[:DELAY_MS] ...

Each FRONT:TARGET pair is one cosigner, numbered from 1 in the order given: peers dial the
front port, and the relay passes every datagram on to the cosigner's real (target) port and
the answers back, each held DELAY_MS (default 0) in each direction. A cosigner's QUIC socket
both listens and dials, so a datagram arriving from a target port comes from that cosigner;
that is how faults on "all of cosigner k's traffic" also catch what k sends to its peers.
Peers authenticate each other by pinned certificates, not addresses, so the relay is
invisible to them. Only cluster traffic (QUIC) passes here; node connections are TCP and do
not, so a partitioned cosigner stays reachable by its node.

Faults are set at run time through FILE, polled every 20 ms and re-read whenever it changes
(write it elsewhere and rename it into place, so it is never read half-written):

    seq 7           # echoed back once applied
    drop 2          # every datagram to or from cosigner 2 is dropped (a partition)
    delay 3 150     # every datagram to or from cosigner 3 is held 150 ms more

Each read replaces the whole fault set; a missing or empty file means no faults. After
applying a file the relay prints `applied seq N: ...` with what it dropped and delayed since
the previous one, so a caller waits for that line instead of guessing how long a poll takes.
A file it cannot parse is rejected as a whole (`rejected seq N: ...`) and the faults stay as
they were. `ready` is printed once every front is bound.

Python asyncio, one thread: enough for a cluster's few thousand datagrams a second.
"""

import asyncio
import os
import sys

HOST = "127.0.0.1"
POLL = 0.02


class Relay:
    def __init__(self, specs, control):
        self.fronts = [front for front, _, _ in specs]
        self.targets = [target for _, target, _ in specs]
        self.base = [delay / 1000 for _, _, delay in specs]
        # Cosigner index (0-based) by the address its datagrams come from.
        self.by_addr = {(HOST, target): i for i, target in enumerate(self.targets)}
        self.control = control
        self.dropped = set()
        self.extra = {}
        self.stats = {"forwarded": 0, "dropped": 0, "delayed": 0}

    def fate(self, front, client):
        """None to drop a datagram through `front` (to or from `client`), else its delay."""
        if front in self.dropped or client in self.dropped:
            self.stats["dropped"] += 1
            return None
        delay = self.base[front] + self.extra.get(front, 0)
        if client is not None and client != front:
            delay += self.extra.get(client, 0)
        self.stats["forwarded"] += 1
        if delay > 0:
            self.stats["delayed"] += 1
        return delay

    def parse(self, text):
        seq, dropped, extra = None, set(), {}
        n = len(self.targets)

        def cosigner(word):
            k = int(word)
            if not 1 <= k <= n:
                raise ValueError(f"no cosigner {k} (1..{n})")
            return k - 1

        for line in text.splitlines():
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if words[0] == "seq" and len(words) == 2:
                seq = words[1]
            elif words[0] == "drop" and len(words) == 2:
                dropped.add(cosigner(words[1]))
            elif words[0] == "delay" and len(words) == 3:
                ms = float(words[2])
                if ms < 0:
                    raise ValueError(f"negative delay in `{line.strip()}`")
                extra[cosigner(words[1])] = ms / 1000
            else:
                raise ValueError(f"cannot parse `{line.strip()}`")
        return seq, dropped, extra

    def apply(self, text):
        try:
            seq, dropped, extra = self.parse(text)
        except ValueError as e:
            seq = next((l.split()[1] for l in text.splitlines() if l.startswith("seq ")), "?")
            print(f"rejected seq {seq}: {e}", flush=True)
            return
        self.dropped, self.extra = dropped, extra
        faults = [f"drop {k + 1}" for k in sorted(dropped)]
        faults += [f"delay {k + 1} {ms * 1000:g}ms" for k, ms in sorted(extra.items())]
        since = ", ".join(f"{v} {k}" for k, v in self.stats.items())
        print(f"applied seq {seq}: {', '.join(faults) or 'no faults'} (before: {since})",
              flush=True)
        self.stats = dict.fromkeys(self.stats, 0)

    async def watch(self):
        seen = None
        while True:
            try:
                st = os.stat(self.control)
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                key = None
            if key != seen:
                seen = key
                text = ""
                if key is not None:
                    try:
                        with open(self.control) as f:
                            text = f.read()
                    except FileNotFoundError:
                        seen = None
                self.apply(text)
            await asyncio.sleep(POLL)


def later(delay, send, *args):
    if delay > 0:
        asyncio.get_running_loop().call_later(delay, send, *args)
    else:
        send(*args)


class Upstream(asyncio.DatagramProtocol):
    """One client's path to a front's target: answers come back here and go to the client."""

    def __init__(self, front, client):
        self.front, self.client = front, client
        self.client_index = front.relay.by_addr.get(client)
        self.transport, self.pending = None, []

    def connection_made(self, transport):
        self.transport = transport
        for data, delay in self.pending:
            later(delay, self.send_now, data)
        self.pending = []

    def send(self, data, delay):
        if self.transport is None:
            self.pending.append((data, delay))
        else:
            later(delay, self.send_now, data)

    def send_now(self, data):
        if not self.transport.is_closing():
            self.transport.sendto(data)

    def datagram_received(self, data, addr):
        delay = self.front.relay.fate(self.front.index, self.client_index)
        if delay is not None:
            later(delay, self.front.transport.sendto, data, self.client)

    def error_received(self, exc):
        # The target is down (ICMP port unreachable): a killed cosigner. Its peers retry.
        pass


class Front(asyncio.DatagramProtocol):
    def __init__(self, relay, index):
        self.relay, self.index = relay, index
        self.upstreams = {}

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        up = self.upstreams.get(addr)
        if up is None:
            up = self.upstreams[addr] = Upstream(self, addr)
            target = (HOST, self.relay.targets[self.index])
            asyncio.get_running_loop().create_task(
                asyncio.get_running_loop().create_datagram_endpoint(
                    lambda: up, remote_addr=target))
        delay = self.relay.fate(self.index, up.client_index)
        if delay is not None:
            up.send(data, delay)

    def error_received(self, exc):
        pass


async def main(argv):
    control = None
    if argv[:1] == ["--control"]:
        control, argv = argv[1], argv[2:]
    specs = []
    for arg in argv:
        parts = [int(p) for p in arg.split(":")]
        if len(parts) not in (2, 3):
            sys.exit(f"usage: udp_relay.py [--control FILE] FRONT:TARGET[:DELAY_MS] ... (got {arg})")
        specs.append((parts[0], parts[1], parts[2] if len(parts) == 3 else 0))
    if not specs:
        sys.exit("usage: udp_relay.py [--control FILE] FRONT:TARGET[:DELAY_MS] ...")
    relay = Relay(specs, control)
    loop = asyncio.get_running_loop()
    for i, front in enumerate(relay.fronts):
        await loop.create_datagram_endpoint(lambda i=i: Front(relay, i), local_addr=(HOST, front))
    print("ready", flush=True)
    if control is not None:
        await relay.watch()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

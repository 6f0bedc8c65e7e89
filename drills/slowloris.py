"""Slowloris drill: 1,000 connections from ten loopback addresses trickle a byte every few seconds
(most inside a command line, some inside DATA). A normal client must still be served promptly,
every trickler must be closed by the timeouts with 421 4.4.2, and the server's memory must stay
bounded. See drills/README.md."""

import argparse
import asyncio
import random
import time

import drill
from drill import RssSampler, Server, read_reply


def config(work, args):
    return f"""hostname = "drill.test"
data_dir = "{work}/data"

[[listener]]
address = "127.0.0.1:0"
mode = "submission"
trusted_networks = ["127.0.0.0/8"]

[limits]
max_connections = {args.connections + 200}
max_connections_per_ip = {args.connections // args.sources}

[timeouts]
command_seconds = {args.command_seconds}
data_seconds = {args.data_seconds}
message_seconds = {args.message_seconds}

# The drill tests acceptance; nothing it submits may leave for a real domain.
[delivery]
enabled = false
"""


class Stats:
    def __init__(self):
        self.connections = []  # dicts, one per trickling connection
        self.open_now = 0
        self.open_peak = 0
        self.refused_at_connect = {}
        self.connect_errors = {}


async def trickle(writer, rng, pattern, interval):
    position = 0
    while True:
        await asyncio.sleep(rng.uniform(*interval))
        writer.write(pattern[position % len(pattern):position % len(pattern) + 1])
        position += 1
        await writer.drain()


async def one_connection(host, port, source, kind, rng, args, stats):
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(source, 0)), 10)
    except (OSError, asyncio.TimeoutError) as error:
        key = type(error).__name__
        stats.connect_errors[key] = stats.connect_errors.get(key, 0) + 1
        return False
    record = {"kind": kind, "source": source, "opened": time.monotonic()}
    stats.open_now += 1
    stats.open_peak = max(stats.open_peak, stats.open_now)
    trickler = None
    try:
        greeting = await asyncio.wait_for(read_reply(reader), 10)
        if not greeting or not greeting.startswith("220"):
            key = (greeting or "closed")[:9]
            stats.refused_at_connect[key] = stats.refused_at_connect.get(key, 0) + 1
            return False
        record["clock"] = time.monotonic()
        if kind == "data":
            writer.write(b"EHLO slow.example\r\nMAIL FROM:<slow@example.test>\r\n"
                         b"RCPT TO:<sink@example.net>\r\nDATA\r\n")
            replies = [await asyncio.wait_for(read_reply(reader), 10) for _ in range(4)]
            if not (replies[-1] or "").startswith("354"):
                record["reply"] = f"no 354: {replies}"
                record["closed"] = time.monotonic()
                stats.connections.append(record)
                return True
            record["clock"] = time.monotonic()
            pattern = b"Subject: slow\r\n\r\n" + b"x" * 60 + b"\r\n"
        else:
            pattern = b"EHLO slow.example\r\n"
        trickler = asyncio.ensure_future(trickle(writer, rng, pattern, args.interval))
        limit = args.command_seconds if kind == "command" else args.message_seconds
        last = None
        try:
            async def until_closed():
                nonlocal last
                while True:
                    line = await read_reply(reader)
                    if line is None:
                        return
                    last = line
            await asyncio.wait_for(until_closed(), limit + args.grace + 20)
            record["closed"] = time.monotonic()
        except asyncio.TimeoutError:
            record["closed"] = None  # the server never closed it: we do
        except OSError:
            record["closed"] = time.monotonic()
        record["reply"] = last
        stats.connections.append(record)
        return True
    except (OSError, asyncio.TimeoutError) as error:
        record["reply"] = f"error {type(error).__name__}"
        record["closed"] = time.monotonic()
        stats.connections.append(record)
        return True
    finally:
        stats.open_now -= 1
        if trickler:
            trickler.cancel()
        writer.close()


async def slot(index, host, port, args, stats, window_end, seed):
    rng = random.Random(seed * 100003 + index)
    source = f"127.0.0.{2 + index % args.sources}"
    kind = "data" if index % 100 < args.data_percent else "command"
    await asyncio.sleep(index * args.ramp / args.connections)
    while time.monotonic() < window_end:
        held = await one_connection(host, port, source, kind, rng, args, stats)
        await asyncio.sleep(0.2 if held else 0.5)


async def greeting_ms(host, port, source):
    started = time.monotonic()
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, local_addr=(source, 0)), 10)
    line = await asyncio.wait_for(read_reply(reader), 10)
    elapsed = (time.monotonic() - started) * 1000
    writer.write(b"QUIT\r\n")
    writer.close()
    return line, elapsed


async def probe_bench(d, target, messages):
    """`portcullis bench` in a thread (the drill's own process handling), timed."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        None, lambda: drill.bench(d, target, "--messages", messages, "--concurrency", 4,
                                  timeout=120))


async def storm(d, server, args):
    host, port = server.address()
    target = server.target()
    stats = Stats()
    t0 = time.monotonic()
    window_end = t0 + args.seconds
    slots = [asyncio.ensure_future(slot(i, host, port, args, stats, window_end, args.seed))
             for i in range(args.connections)]
    probes, greetings = [], []
    cap_probe = None
    await asyncio.sleep(args.ramp + 1)
    d.log(f"{stats.open_now} trickling connections open")
    # One more from an address that already has its cap: refused at once.
    reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.0.2", 0))
    cap_probe = await asyncio.wait_for(read_reply(reader), 10)
    writer.close()
    while time.monotonic() < window_end - 2:
        greetings.append(await greeting_ms(host, port, "127.0.0.1"))
        report, wall = await probe_bench(d, target, args.probe_messages)
        probes.append((time.monotonic() - t0, stats.open_now, report, wall))
        d.log(f"normal client with {stats.open_now} trickling: "
              f"{report.get('messages_accepted')}/{args.probe_messages} in {wall:.2f} s, "
              f"p99 {report.get('latency_ms', {}).get('p99', float('nan')):.1f} ms, "
              f"greeting {greetings[-1][1]:.1f} ms")
        await asyncio.sleep(args.probe_every)
    d.log("trickle window over; waiting for the server to close the remaining connections")
    await asyncio.gather(*slots)
    return stats, probes, greetings, cap_probe


def main(d, args):
    limit = drill.raise_fd_limit()
    if limit < args.connections + 200:
        d.check("open-file limit", False, f"{limit} < {args.connections + 200}")
        return
    server = Server(d, config(d.work, args)).start()
    # Warm up so that "before" is a server that has already served mail.
    drill.bench(d, server.target(), "--messages", 20, "--concurrency", 4)
    time.sleep(1)
    before = server.rss_kb()
    sampler = RssSampler(server.pid).start()
    window_start = time.monotonic() - sampler.t0
    stats, probes, greetings, cap_probe = asyncio.run(storm(d, server, args))
    window_end = time.monotonic() - sampler.t0
    time.sleep(3)
    after = server.rss_kb()
    sampler.stop()
    during = max(sampler.between(window_start, window_end) or [0])
    alive = server.alive()
    status = server.terminate()

    conns = stats.connections
    by_kind = {}
    for kind, limit_s in (("command", args.command_seconds), ("data", args.message_seconds)):
        mine = [c for c in conns if c["kind"] == kind]
        timed_out = [c for c in mine if c["closed"] and (c.get("reply") or "").startswith(
            "421 4.4.2")]
        durations = [c["closed"] - c["clock"] for c in timed_out]
        held = [c for c in mine if not c["closed"]]
        other = [c for c in mine if c not in timed_out and c not in held]
        late = [x for x in durations if x > limit_s + args.grace]
        early = [x for x in durations if x < limit_s - 1]
        by_kind[kind] = (mine, timed_out, durations, held, other, late, early)
        d.check(f"{kind} tricklers: all closed by the server with 421 4.4.2",
                mine and not held and not other,
                f"{len(timed_out)}/{len(mine)} got 421 4.4.2; never closed: {len(held)}; other "
                f"endings: {[(c.get('reply'), round(c['closed'] - c['clock'], 1)) for c in other[:5]]}")
        if durations:
            d.check(f"{kind} tricklers: closed within {limit_s} s + {args.grace} s",
                    not late and not early,
                    f"held {min(durations):.1f} .. {max(durations):.1f} s "
                    f"(p50 {drill.percentile(durations, 0.5):.1f}); late {len(late)}, "
                    f"early {len(early)}")
    d.check(f"{args.connections} trickling connections open at once",
            stats.open_peak >= args.connections,
            f"peak {stats.open_peak}; refused at connect {stats.refused_at_connect}, "
            f"connect errors {stats.connect_errors}")
    d.check("a connection over the per-address cap is refused with 421 4.7.0",
            (cap_probe or "").startswith("421 4.7.0"), repr(cap_probe))
    bad_probes = [p for p in probes if p[2].get("messages_accepted") != args.probe_messages
                  or p[3] > args.max_probe_seconds]
    p99s = [p[2].get("latency_ms", {}).get("p99", 0) for p in probes]
    walls = [p[3] for p in probes]
    d.check("the normal client is served promptly while they trickle",
            probes and not bad_probes,
            f"{len(probes)} runs of {args.probe_messages} messages, all accepted; wall "
            f"{min(walls, default=0):.2f} .. {max(walls, default=0):.2f} s, p99 final dot "
            f"{max(p99s, default=0):.1f} ms at most; bad runs: "
            f"{[(round(p[0]), p[2].get('messages_accepted'), round(p[3], 2)) for p in bad_probes]}")
    greeting_times = [g[1] for g in greetings]
    d.check("a new connection gets 220 promptly while they trickle",
            greetings and all(g[0] and g[0].startswith("220") for g in greetings)
            and max(greeting_times) < 1000,
            f"{len(greetings)} greetings, max {max(greeting_times, default=0):.1f} ms")
    growth = during - before
    # Connections come and go three times over in the window: a leak per connection would show
    # as growth from the first generation to the last.
    # Each quarter needs samples of its own: without them there is nothing to compare.
    quarters = []
    for q in (1, 2, 3, 4):
        at = window_start + (window_end - window_start) * q / 4
        near = sampler.between(at - 2, at)
        quarters.append(max(near) if near else None)
    sampled = all(q is not None for q in quarters)
    d.check("memory flat while connections come and go (last quarter vs first, +8 MiB at most)",
            sampled and quarters[-1] - quarters[0] <= 8 * 1024,
            "VmRSS at the end of each quarter of the window: "
            + ", ".join("no samples" if q is None else drill.mib(q) for q in quarters))
    d.check(f"memory bounded (peak - before <= {args.max_growth_mib} MiB)",
            0 < during and growth <= args.max_growth_mib * 1024,
            f"VmRSS before {drill.mib(before)}, peak during {drill.mib(during)}, "
            f"after {drill.mib(after)}")
    d.check("server alive throughout and stops on SIGTERM", alive and status == 0,
            f"exit status {status}")
    d.number("trickling connections", f"{len(conns)} in {args.seconds} s "
             f"({args.connections} at once from {args.sources} addresses, "
             f"{args.data_percent}% inside DATA)")
    d.number("VmRSS before / peak during / after", f"{drill.mib(before)} / {drill.mib(during)} / "
             f"{drill.mib(after)} ({growth / max(stats.open_peak, 1):.1f} kB per open "
             f"trickler)")
    for kind, (mine, timed_out, durations, *_rest) in by_kind.items():
        if durations:
            d.number(f"{kind} tricklers held", f"{len(mine)} connections, "
                     f"{min(durations):.1f} .. {max(durations):.1f} s")
    d.number("normal client during the trickle",
             f"{len(probes)} x {args.probe_messages} messages; wall {min(walls, default=0):.2f}"
             f" .. {max(walls, default=0):.2f} s; p99 final dot <= {max(p99s, default=0):.1f} ms;"
             f" greeting <= {max(greeting_times, default=0):.1f} ms")
    if stats.refused_at_connect:
        d.number("reconnects refused by the per-address cap (slot not yet freed)",
                 stats.refused_at_connect)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--sources", type=int, default=10,
                        help="source addresses 127.0.0.2 and up (the per-address cap is "
                             "connections / sources)")
    parser.add_argument("--data-percent", type=int, default=10,
                        help="share of tricklers that trickle inside DATA")
    parser.add_argument("--seconds", type=int, default=30, help="trickle window")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds to open them all")
    parser.add_argument("--interval", type=float, nargs=2, default=(2.0, 4.0),
                        help="seconds between two trickled bytes (random in this range)")
    parser.add_argument("--command-seconds", type=int, default=10)
    parser.add_argument("--data-seconds", type=int, default=10)
    parser.add_argument("--message-seconds", type=int, default=20)
    parser.add_argument("--grace", type=float, default=3.0,
                        help="allowed lateness of a timeout, seconds")
    parser.add_argument("--probe-messages", type=int, default=20)
    parser.add_argument("--probe-every", type=float, default=3.0)
    parser.add_argument("--max-probe-seconds", type=float, default=5.0)
    parser.add_argument("--max-growth-mib", type=int, default=64)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--max-seconds", type=int, default=300)
    arguments = parser.parse_args()
    drill.run("slowloris", arguments.max_seconds, main, arguments)

"""Full-disk drill: the spool on a small tmpfs fills up. Clients must get 452 4.3.1 (never 250
for a message that is not stored), the server must keep answering other commands and new
connections, and accept again once space is freed. See drills/README.md."""

import argparse
import errno
import os
import subprocess
import time

import drill
from drill import Server, Smtp, SpoolReader


def config(mount):
    return f"""hostname = "drill.test"
data_dir = "{mount}/data"

[[listener]]
address = "127.0.0.1:0"
mode = "submission"
trusted_networks = ["127.0.0.0/8"]

# The drill tests acceptance; nothing it submits may leave for a real domain.
[delivery]
enabled = false
"""


def fill(path, chunk=64 * 1024):
    """Appends to `path` until the file system is full; returns the bytes written."""
    written = 0
    block = b"\0" * chunk
    with open(path, "ab", buffering=0) as f:
        while True:
            try:
                n = f.write(block)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                if chunk == 1:
                    break
                chunk //= 2
                block = block[:chunk]
                continue
            written += n
    os.sync()
    return written


def free_bytes(path):
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def main(d, args):
    if os.geteuid() != 0:
        d.check("running as root (needed to mount a tmpfs)", False, "run as root")
        return
    mount = d.work / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={args.size_mib}m,mode=0755", "tmpfs",
                    str(mount)], check=True)
    d.on_cleanup(lambda: subprocess.run(["umount", "-l", str(mount)], check=False))
    d.log(f"tmpfs of {args.size_mib} MiB mounted on {mount}")
    server = Server(d, config(mount)).start()
    target = server.target()
    host, port = server.address()
    records = d.work / "ids.tsv"  # outside the tmpfs
    refused_markers = set()
    d.number("free after server start", drill.mib(free_bytes(mount) // 1024))

    # 1. Normal operation.
    report, _ = drill.bench(d, target, "--concurrency", 10, "--messages", args.messages,
                           record=records, prefix="before")
    d.check("before the disk fills: every message accepted",
            report["messages_accepted"] == args.messages,
            f"{report['messages_accepted']}/{args.messages}")

    # 2. A filler file takes all but a little of the space; the load fills the rest.
    filler = mount / "filler"
    fill(filler)
    os.truncate(filler, max(0, filler.stat().st_size - args.headroom_kib * 1024))
    d.log(f"filler {drill.mib(filler.stat().st_size // 1024)}, "
          f"{free_bytes(mount) // 1024} KiB left for the spool")
    report, _ = drill.bench(d, target, "--concurrency", 20, "--messages", args.overload,
                           record=records, prefix="filling")
    accepted, refusals = report["messages_accepted"], report["refusals"]
    d.check("while filling: some accepted, then 452 4.3.1 and nothing else",
            0 < accepted < args.overload and set(refusals) == {"452 4.3.1"}
            and accepted + refusals.get("452 4.3.1", 0) == args.overload
            and not report["errors"],
            f"{accepted} accepted, refusals {refusals}, errors {report['errors']}")
    d.number("filling run", f"{accepted} accepted, {refusals.get('452 4.3.1', 0)} refused with "
             f"452 4.3.1 of {args.overload}")

    # 3. Full: take whatever the refused writes gave back, then probe by hand.
    fill(filler)
    d.log(f"disk full: {free_bytes(mount)} bytes free")
    started = time.monotonic()
    session = Smtp(host, port)
    greeting = session.reply()
    greeting_ms = (time.monotonic() - started) * 1000
    ehlo = session.command("EHLO probe.example")
    noop = session.command("NOOP")
    probes = []
    for n in range(1, args.probes + 1):
        marker = f"full-raw-{n}"
        probes.append((marker, session.message("drill@example.test", "sink@example.net",
                                               drill.marked_message(marker))))
        noop_after = session.command("NOOP")
        if noop_after[0] != 250:
            break
    rset = session.command("RSET")
    quit_reply = session.command("QUIT")
    session.close()
    accepted_probes = [(m, r) for m, r in probes if r[0] == 250]
    refused_probes = [(m, r) for m, r in probes if r[1].startswith("452 4.3.1")]
    refused_markers.update(m for m, _ in refused_probes)
    d.check("when full: a new connection gets 220 and EHLO, NOOP, RSET, QUIT are answered",
            greeting[0] == 220 and ehlo[0] == 250 and noop[0] == 250
            and noop[1].startswith("250 2.0.0") and rset[0] == 250
            and rset[1].startswith("250 2.0.0") and quit_reply[0] == 221
            and quit_reply[1].startswith("221 2.0.0"),
            f"greeting {greeting[1]!r} in {greeting_ms:.1f} ms, EHLO {ehlo[0]}, NOOP {noop[1]!r}, "
            f"RSET {rset[1]!r}, QUIT {quit_reply[1]!r}")
    d.check("when full: every message gets 452 4.3.1, the session goes on",
            len(probes) == args.probes and len(refused_probes) == args.probes,
            f"{len(refused_probes)} of {len(probes)} refused with 452 4.3.1, "
            f"{len(accepted_probes)} accepted; first reply {probes[0][1][1]!r}")
    report, _ = drill.bench(d, target, "--concurrency", 10, "--messages", args.messages,
                           record=records, prefix="full")
    d.check("when full: a bench run gets only 452 4.3.1",
            report["messages_accepted"] == 0
            and report["refusals"] == {"452 4.3.1": args.messages} and not report["errors"],
            f"{report['messages_accepted']} accepted, refusals {report['refusals']}, "
            f"errors {report['errors']}")
    second = Smtp(host, port)
    second_greeting = second.reply()
    second.command("QUIT")
    second.close()
    d.check("when full: another new connection still gets 220", second_greeting[0] == 220,
            second_greeting[1])
    spool_files = sorted((mount / "data" / "spool").glob("segment-*.log"))
    empty_segments = sum(1 for p in spool_files if p.stat().st_size == 0)
    d.number("segment files while full", f"{len(spool_files)} ({empty_segments} empty)")
    d.check("when full: refused batches do not pile up empty segment files",
            empty_segments <= 1, f"{empty_segments} empty segment files")

    # A restart while the disk is still full: recovery must cope, and refusals go on.
    status = server.terminate()
    try:
        server.start()
        host, port = server.address()
        target = server.target()
        session = Smtp(host, port)
        session.reply()
        session.command("EHLO probe.example")
        marker = "full-restarted"
        after_restart = session.message("drill@example.test", "sink@example.net",
                                        drill.marked_message(marker))
        session.command("QUIT")
        session.close()
        if after_restart[0] != 250:
            refused_markers.add(marker)
        else:
            accepted_probes.append((marker, after_restart))
        d.check("restart while full: the server starts and refuses with 452 4.3.1",
                status == 0 and after_restart[1].startswith("452 4.3.1"),
                f"exit status {status}; {server.spool_line}; then {after_restart[1]!r}")
    except RuntimeError as error:
        d.check("restart while full: the server starts", False, str(error))
        filler.unlink()
        server.start()
        host, port = server.address()
        target = server.target()

    # 4. Space freed: accepted again, at once.
    filler.unlink()
    d.log(f"filler removed: {free_bytes(mount) // 1024} KiB free")
    report, wall = drill.bench(d, target, "--concurrency", 10, "--messages", args.messages,
                              record=records, prefix="after")
    d.check("after freeing space: every message accepted again",
            report["messages_accepted"] == args.messages and not report["refusals"],
            f"{report['messages_accepted']}/{args.messages} in {wall:.2f} s, "
            f"refusals {report['refusals']}")

    # 5. The spool holds exactly what was acknowledged, nothing refused, nothing partial.
    acked, refused, unknown = drill.read_records(records)
    refused_markers.update(refused)
    listed = server.queue_list()
    reader = SpoolReader(mount / "data" / "spool")
    stored = {}
    bad = []
    for message in listed:
        try:
            _, body = reader.read(message["id"])
        except ValueError as error:
            bad.append(f"{message['id']}: {error}")
            continue
        stored[drill.marker_of(body)] = (message["id"], body)
    lost = [m for m, queue_id in acked.items()
            if m not in stored or stored[m][0] != queue_id or not drill.intact(stored[m][1], m, 1024)]
    lost += [m for m, _ in accepted_probes if m not in stored]
    refused_but_stored = sorted(refused_markers & set(stored))
    segments, messages, damaged, trailing, status, text = server.queue_check()
    d.check("every 250 is in the spool, intact", not lost and not bad,
            f"{len(acked) + len(accepted_probes)} acknowledged, lost or damaged: {lost[:5]} "
            f"{bad[:3]}")
    d.check("no 452'd message is in the spool", not refused_but_stored,
            f"{len(refused_markers)} refused, stored anyway: {refused_but_stored[:5]}")
    d.check("no message with an unknown outcome", not unknown, f"{list(unknown.items())[:3]}")
    d.check("queue check: 0 damaged, 0 trailing", status == 0 and damaged == 0 and trailing == 0
            and messages == len(listed), text)

    # 6. A restart on the freed disk recovers the same spool.
    status = server.terminate()
    server.start()
    relisted = [m["id"] for m in server.queue_list()]
    files_after = sorted((mount / "data" / "spool").glob("segment-*.log"))
    d.check("after SIGTERM and restart: the same messages", status == 0
            and relisted == [m["id"] for m in listed],
            f"exit {status}; {server.spool_line}; {len(relisted)} listed; segment files: "
            f"{len(spool_files)} while full, {len(files_after)} now")
    server.terminate()
    d.number("acknowledged in all", len(acked) + len(accepted_probes))
    d.number("refused with 452 4.3.1 in all", len(refused_markers))
    d.number("greeting while full", f"{greeting_ms:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=8, help="tmpfs size")
    parser.add_argument("--messages", type=int, default=200,
                        help="messages per run before, while full and after")
    parser.add_argument("--overload", type=int, default=2000,
                        help="messages offered while the disk fills")
    parser.add_argument("--headroom-kib", type=int, default=256,
                        help="space the filler leaves for the spool")
    parser.add_argument("--probes", type=int, default=5, help="hand-made messages while full")
    parser.add_argument("--max-seconds", type=int, default=300)
    arguments = parser.parse_args()
    drill.run("full-disk", arguments.max_seconds, main, arguments)

"""kill -9 drill: under W0 load the server is killed with SIGKILL at random moments and restarted;
every message whose 250 a client received must be in the spool, intact, and nothing partial may
appear. See drills/README.md."""

import argparse
import json
import random
import subprocess
import time
from pathlib import Path

import drill
from drill import Server, SpoolReader


def config(work):
    # Not port 0: see drill.free_port.
    return f"""hostname = "drill.test"
data_dir = "{work}/data"

[[listener]]
address = "127.0.0.1:{drill.free_port()}"
mode = "submission"
trusted_networks = ["127.0.0.0/8"]

# The drill tests acceptance; nothing it submits may leave for a real domain.
[delivery]
enabled = false
"""


def main(d, args):
    rng = random.Random(args.seed)
    d.log(f"{args.rounds} rounds; W0: plain, trusted network, {args.size} octets, "
          f"{args.concurrency} sessions, one message per session; seed {args.seed}")
    server = Server(d, config(d.work)).start()
    records = d.work / "ids.tsv"
    rounds = []
    torn_rounds = 0
    for round_number in range(1, args.rounds + 1):
        kill_at = rng.uniform(args.min_delay, args.max_delay)
        acked_before = count_acks(records)
        load = d.spawn(
            [drill.BINARY, "bench", server.target(), "--concurrency", args.concurrency,
             "--messages", args.budget, "--size", args.size, "--per-connection", 1,
             "--record-ids", records, "--marker-prefix", f"r{round_number}", "--json"],
            stdout=(d.work / f"bench-{round_number}.json").open("wb"),
            stderr=(d.work / f"bench-{round_number}.err").open("wb"))
        time.sleep(kill_at)
        load_running = load.poll() is None
        server_alive = server.alive()
        server.kill9()
        acked_at_kill = count_acks(records) - acked_before
        try:
            load.wait(timeout=60)
        except subprocess.TimeoutExpired:
            load.kill()
            load.wait()
            d.check(f"round {round_number}: the load generator ends after the kill", False,
                    "bench still running 60 s after the kill (killed)")
        acked, _, unknown = drill.read_records(records)
        prefix = f"r{round_number}-"
        in_flight = sum(1 for marker in unknown if marker.startswith(prefix))
        acked_round = sum(1 for marker in acked if marker.startswith(prefix))
        # What the kill left on disk, before recovery touches it.
        _, _, damaged_before, trailing_before, _, _ = server.queue_check()
        if trailing_before:
            torn_rounds += 1
        errors = bench_errors(d.work / f"bench-{round_number}.json")
        server.start(config_text=config(d.work))
        segments, messages, damaged, trailing, _, _ = server.queue_check()
        rounds.append((round_number, kill_at, acked_round, in_flight, trailing_before))
        d.log(f"round {round_number:2}: killed at {kill_at:.2f} s with {acked_at_kill} acknowledged "
              f"and {in_flight} in flight; left {trailing_before} trailing byte(s), "
              f"{damaged_before} damaged; after restart: {server.spool_line!r}, "
              f"check {segments} segment(s) {messages} message(s) {damaged} damaged "
              f"{trailing} trailing; client errors {errors}")
        ok = server_alive and load_running and damaged == 0 and trailing == 0 and acked_round
        if not ok:
            d.check(f"round {round_number}", False,
                    f"server alive before the kill: {server_alive}; load still running at the "
                    f"kill: {load_running}; {acked_round} acknowledged in the round; after "
                    f"restart {damaged} damaged region(s), "
                    f"{trailing} trailing byte(s)")
    status = server.terminate()
    d.check("server stops on SIGTERM after the last restart", status == 0, f"exit status {status}")
    verify(d, server, records, args, rounds, torn_rounds)


def bench_errors(path):
    try:
        return json.loads(Path(path).read_text())["errors"]
    except (OSError, ValueError, KeyError):
        return "?"


def count_acks(path):
    if not Path(path).exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for line in f if not line.startswith((b"-", b"?")))


def verify(d, server, records, args, rounds, torn_rounds):
    acked, refused, unknown = drill.read_records(records)
    listed = server.queue_list()
    listed_ids = {m["id"] for m in listed}
    reader = SpoolReader(server.config.parent / "data" / "spool")

    lost, damaged = [], []
    for marker, queue_id in acked.items():
        if queue_id not in listed_ids:
            lost.append(f"{queue_id} ({marker})")
            continue
        try:
            _, body = reader.read(queue_id)
        except ValueError as error:
            damaged.append(f"{queue_id} ({marker}): {error}")
            continue
        if not drill.intact(body, marker, args.size):
            damaged.append(f"{queue_id} ({marker}): content differs from what was sent")

    unexpected, duplicates, partial, from_unknown = [], [], [], 0
    seen = {}
    for message in listed:
        queue_id = message["id"]
        try:
            _, body = reader.read(queue_id)
        except ValueError as error:
            partial.append(f"{queue_id}: {error}")
            continue
        marker = drill.marker_of(body)
        if marker in seen:
            duplicates.append(f"{marker} in {seen[marker]} and {queue_id}")
        seen[marker] = queue_id
        if marker in acked:
            if acked[marker] != queue_id:
                unexpected.append(f"{queue_id}: {marker} was acknowledged as {acked[marker]}")
        elif marker in unknown:
            from_unknown += 1
            if not drill.intact(body, marker, args.size):
                partial.append(f"{queue_id} ({marker}): not the whole message")
        else:
            why = f"refused with {refused[marker]}" if marker in refused else "never sent"
            unexpected.append(f"{queue_id}: marker {marker} ({why})")

    segments, messages, damaged_regions, trailing, status, text = server.queue_check()
    sample = random.Random(1).sample(sorted(acked.items()), min(100, len(acked)))
    shown_bad = []
    for marker, queue_id in sample:
        code, out = server.queue_show(queue_id)
        if code != 0 or f"Message-ID: <{marker}@portcullis.bench>".encode() not in out:
            shown_bad.append(queue_id)

    rounds_under_load = sum(1 for r in rounds if r[2] > 0)
    # Group commit acknowledges a whole batch at once, so the sessions move in waves: at some
    # kills every session is between messages (connecting, greeting, EHLO) and none is in flight.
    rounds_in_flight = sum(1 for r in rounds if r[3] > 0)
    d.check("every acknowledged message is in the spool", not lost,
            f"{len(acked)} acknowledged, {len(lost)} lost {lost[:5]}")
    d.check("every acknowledged message is intact (CRC, id, marker, size)", not damaged,
            f"{len(damaged)} damaged {damaged[:5]}")
    d.check("no partial or unexpected message in the spool", not partial and not unexpected,
            f"{len(partial)} partial {partial[:3]}, {len(unexpected)} unexpected "
            f"{unexpected[:3]}")
    d.check("no message stored twice", not duplicates, f"{duplicates[:5]}")
    d.check("queue check: 0 damaged regions, 0 trailing bytes, count = queue list",
            status == 0 and damaged_regions == 0 and trailing == 0 and messages == len(listed),
            text)
    d.check("queue show agrees on a sample of acknowledged ids", not shown_bad,
            f"{len(sample)} shown, bad: {shown_bad[:5]}")
    d.check("every round was killed under load (250s received in the round, load still running)",
            rounds_under_load == len(rounds), f"{rounds_under_load}/{len(rounds)} rounds")
    d.check("at least half of the kills hit messages in flight",
            rounds_in_flight * 2 >= len(rounds), f"{rounds_in_flight}/{len(rounds)} rounds")
    d.number("rounds (kill -9 + restart)", len(rounds))
    d.number("kill moments (s after load start)",
             ", ".join(f"{r[1]:.2f}" for r in rounds))
    d.number("acknowledged (client got 250 + queue id)", len(acked))
    d.number("in flight at a kill (outcome unknown to the client)", len(unknown))
    d.number("  of which stored whole (acknowledged too late)", from_unknown)
    d.number("messages in the spool", len(listed))
    d.number("kills that left a torn tail (cut at restart)", torn_rounds)
    d.number("segments", segments)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--budget", type=int, default=40000,
                        help="messages offered per round (the kill ends the round long before)")
    parser.add_argument("--min-delay", type=float, default=0.3)
    parser.add_argument("--max-delay", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--max-seconds", type=int, default=900)
    arguments = parser.parse_args()
    drill.run("kill9", arguments.max_seconds, main, arguments)

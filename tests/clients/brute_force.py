#!/usr/bin/env python3
"""Login attempts from a chosen loopback address, for the brute-force protection tests.

Every connection is made from --source (any address of 127.0.0.0/8 works on Linux without
setup), so one test can play an attacker and a real user on different client networks. Only
the standard library; implicit TLS (the submissions port). Each subcommand prints one JSON
object on stdout.
"""
import argparse
import base64
import json
import os
import smtplib
import socket
import ssl
import sys
import threading
import time


def tls_context(cafile):
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def connect(args):
    raw = socket.create_connection(
        (args.host, args.port), timeout=30, source_address=(args.source, 0)
    )
    sock = tls_context(args.cafile).wrap_socket(raw, server_hostname=args.host)
    return sock, sock.makefile("rb")


def read_reply(reader):
    """The lines of one reply, or None when the server closed the connection."""
    lines = []
    while True:
        try:
            line = reader.readline()
        except (ConnectionError, ssl.SSLError):
            line = b""
        if not line:
            return lines or None
        text = line.decode(errors="replace").rstrip("\r\n")
        lines.append(text)
        if len(text) < 4 or text[3] != "-":
            return lines


def plain(user, password):
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


def start_session(args, sock, reader):
    read_reply(reader)
    sock.sendall(b"EHLO client.example\r\n")
    read_reply(reader)


def logins(args):
    """One connection: the --command lines, then AUTH PLAIN with each --password in turn (each
    answered before the next), stopping at a success or when the server closes."""
    sock, reader = connect(args)
    start_session(args, sock, reader)
    result = {"commands": [], "replies": [], "seconds": [], "closed": False}
    for command in args.command:
        sock.sendall(command.encode() + b"\r\n")
        lines = read_reply(reader)
        result["commands"].append(lines[-1] if lines else None)
    for password in args.password:
        started = time.monotonic()
        sock.sendall(f"AUTH PLAIN {plain(args.user, password)}\r\n".encode())
        lines = read_reply(reader)
        result["seconds"].append(time.monotonic() - started)
        if lines is None:
            result["closed"] = True
            break
        result["replies"].append(lines[-1])
        if lines[-1].startswith("235"):
            break
        if lines[-1].startswith("421"):
            result["closed"] = read_reply(reader) is None
            break
    sock.close()
    print(json.dumps(result))


def attack(args):
    """--attempts different wrong passwords, pipelined --batch at a time per connection (the
    server closes a connection after max_errors errors); reconnects until all are answered."""
    answered = {}
    connections = 0
    sent = args.offset
    started = time.monotonic()
    while sum(answered.values()) < args.attempts:
        sock, reader = connect(args)
        connections += 1
        start_session(args, sock, reader)
        batch = min(args.batch, args.attempts - sum(answered.values()))
        lines = "".join(
            f"AUTH PLAIN {plain(args.user, f'guess-{sent + n}')}\r\n" for n in range(batch)
        )
        sent += batch
        sock.sendall(lines.encode())
        for _ in range(batch):
            reply = read_reply(reader)
            if reply is None:
                break
            last = reply[-1]
            if last.startswith("421") and "failed logins" not in last:
                break  # too many errors in this session: reconnect
            key = last[:9]
            answered[key] = answered.get(key, 0) + 1
            if last.startswith("421"):
                break
        sock.close()
    print(
        json.dumps(
            {
                "answered": answered,
                "connections": connections,
                "seconds": time.monotonic() - started,
            }
        )
    )


def burst(args):
    """--sessions connections from addresses spread over the /24 of --source, all logged in at
    the same instant (a barrier after EHLO): AUTH PLAIN for --user, or a name of its own per
    session with --names, each with a different wrong password. Counts the replies."""
    prefix = args.source.rsplit(".", 1)[0]
    answered = {}
    lock = threading.Lock()
    barrier = threading.Barrier(args.sessions, timeout=60)

    def session(n):
        source = f"{prefix}.{n % 250 + 1}"
        name = f"burst{n}-{args.user}" if args.names else args.user
        key = "error"
        try:
            raw = socket.create_connection(
                (args.host, args.port), timeout=60, source_address=(source, 0)
            )
            sock = tls_context(args.cafile).wrap_socket(raw, server_hostname=args.host)
            reader = sock.makefile("rb")
            start_session(args, sock, reader)
            barrier.wait()
            password = f"burst-{args.offset + n}"
            sock.sendall(f"AUTH PLAIN {plain(name, password)}\r\n".encode())
            lines = read_reply(reader)
            key = lines[-1][:9] if lines else "closed"
            sock.close()
        except (OSError, threading.BrokenBarrierError) as error:
            key = f"error: {error!r}"
            barrier.abort()
        with lock:
            answered[key] = answered.get(key, 0) + 1

    started = time.monotonic()
    threads = [threading.Thread(target=session, args=(n,)) for n in range(args.sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"answered": answered, "seconds": time.monotonic() - started}))


def user(args):
    """The real user: log in and send a message, again and again, until --stop-file exists
    (then one more round) or --rounds are done."""
    rounds = 0
    failures = []
    started = time.monotonic()
    while True:
        last = (
            os.path.exists(args.stop_file)
            if args.stop_file
            else rounds + 1 >= args.rounds
        )
        try:
            client = smtplib.SMTP_SSL(
                args.host,
                args.port,
                context=tls_context(args.cafile),
                timeout=30,
                source_address=(args.source, 0),
            )
            client.login(args.user, args.password)
            body = f"From: {args.user}\r\nTo: bob@example.net\r\nSubject: round {rounds}\r\n\r\nHello.\r\n"
            client.sendmail(args.user, ["bob@example.net"], body.encode())
            client.quit()
        except (smtplib.SMTPException, OSError) as error:
            failures.append(f"round {rounds}: {error!r}")
        rounds += 1
        if last:
            break
    print(
        json.dumps(
            {"rounds": rounds, "failures": failures, "seconds": time.monotonic() - started}
        )
    )


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command_name", required=True)
    for name in ("logins", "attack", "burst", "user"):
        p = sub.add_parser(name)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--cafile", required=True)
        p.add_argument("--source", required=True)
        p.add_argument("--user", required=True)
        if name == "logins":
            p.add_argument("--password", action="append", default=[])
            p.add_argument("--command", action="append", default=[])
        elif name == "attack":
            p.add_argument("--attempts", type=int, required=True)
            p.add_argument("--batch", type=int, default=20)
            # Where the numbering of the guessed passwords starts (to continue an attack).
            p.add_argument("--offset", type=int, default=0)
        elif name == "burst":
            p.add_argument("--sessions", type=int, required=True)
            p.add_argument("--names", action="store_true")
            p.add_argument("--offset", type=int, default=0)
        else:
            p.add_argument("--password", required=True)
            p.add_argument("--stop-file")
            p.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    {"logins": logins, "attack": attack, "burst": burst, "user": user}[args.command_name](args)


if __name__ == "__main__":
    sys.exit(main())

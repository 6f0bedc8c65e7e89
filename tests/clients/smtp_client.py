#!/usr/bin/env python3
"""Real-client checks for the integration tests, using only Python's standard library.

Each subcommand prints one JSON object on stdout; the Rust tests assert on it.
"""
import argparse
import json
import smtplib
import socket
import ssl
import sys


def tls_context(cafile):
    context = ssl.create_default_context(cafile=cafile)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def send(args):
    context = tls_context(args.cafile)
    if args.mode == "ssl":
        client = smtplib.SMTP_SSL(args.host, args.port, context=context, timeout=30)
        client.ehlo("client.example")
    else:
        client = smtplib.SMTP(args.host, args.port, timeout=30)
        client.ehlo("client.example")
        if args.mode == "starttls":
            client.starttls(context=context)
            client.ehlo("client.example")
    result = {"tls": client.sock.version() if hasattr(client.sock, "version") else None}
    if args.ehlo_features:
        result["features"] = sorted(client.esmtp_features)
    try:
        if args.user:
            client.user, client.password = args.user, args.password
            authobject = client.auth_plain if args.auth == "PLAIN" else client.auth_login
            # PLAIN sends its initial response with AUTH; LOGIN waits for each 334 prompt.
            code, text = client.auth(args.auth, authobject, initial_response_ok=(args.auth == "PLAIN"))
            result["auth"] = [code, text.decode()]
        author = args.header_from or args.sender
        to = ", ".join(args.to)
        body = f"From: {author}\r\nTo: {to}\r\nSubject: {args.subject}\r\n\r\nHello from smtplib.\r\n.leading dot\r\n"
        code, text = client.mail(args.sender, options=args.mail_option)
        result["mail"] = [code, text.decode()]
        if code != 250:
            raise smtplib.SMTPResponseException(code, text)
        result["rcpts"] = []
        for recipient in args.to:
            code, text = client.rcpt(recipient, options=args.rcpt_option)
            result["rcpts"].append([code, text.decode()])
        result["rcpt"] = result["rcpts"][0]
        code, text = client.data(body.encode())
        result["data"] = [code, text.decode()]
        client.quit()
    except smtplib.SMTPResponseException as error:
        result["error"] = [error.smtp_code, error.smtp_error.decode(errors="replace")]
    print(json.dumps(result))


def many(args):
    """Submits --count messages over one plain session on a trusted network, each with the
    Subject "PREFIX N"; prints the number of messages acknowledged with 250."""
    client = smtplib.SMTP(args.host, args.port, timeout=30)
    client.ehlo("client.example")
    acked = 0
    for n in range(args.count):
        body = (f"From: {args.sender}\r\nTo: {args.to}\r\nSubject: {args.prefix} {n}\r\n"
                f"Message-ID: <{args.prefix}.{n}@client.example>\r\n\r\nMessage {n}.\r\n")
        client.sendmail(args.sender, [args.to], body.encode())
        acked += 1
    client.quit()
    print(json.dumps({"acked": acked}))


def injection(args):
    """STARTTLS followed by a pipelined EHLO in the same write (CVE-2011-0411 style)."""
    sock = socket.create_connection((args.host, args.port), timeout=10)
    reader = sock.makefile("rb")

    def reply(reader=reader):
        lines = []
        while True:
            line = reader.readline().decode()
            lines.append(line.rstrip("\r\n"))
            if len(line) < 4 or line[3] != "-":
                return lines

    result = {"greeting": reply()}
    sock.sendall(b"EHLO client.example\r\n")
    result["ehlo"] = reply()
    sock.sendall(b"STARTTLS\r\nEHLO injected.example\r\n")
    result["starttls"] = reply()
    tls = tls_context(args.cafile).wrap_socket(sock, server_hostname=args.host)
    tls.settimeout(1.5)
    received = b""
    try:
        received = tls.recv(4096)
    except (socket.timeout, TimeoutError):
        pass
    result["after_handshake"] = received.decode(errors="replace")
    tls.settimeout(10)
    tls.sendall(b"EHLO client.example\r\n")
    # The whole reply, however the TLS records split it: up to its last line ("250 ...").
    result["ehlo_over_tls"] = "".join(f"{line}\r\n" for line in reply(tls.makefile("rb")))
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("send", "injection"):
        p = sub.add_parser(name)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--cafile", required=True)
        if name == "send":
            p.add_argument("--mode", choices=["starttls", "ssl", "plain"], required=True)
            p.add_argument("--user")
            p.add_argument("--password")
            p.add_argument("--auth", choices=["PLAIN", "LOGIN"], default="PLAIN")
            p.add_argument("--from", dest="sender", required=True)
            p.add_argument("--to", required=True, action="append", help="repeat for more recipients")
            p.add_argument("--header-from", help="the From: header (default: the --from address)")
            p.add_argument("--subject", default="test")
            p.add_argument("--mail-option", action="append", default=[], help="a MAIL FROM parameter; repeat for more")
            p.add_argument("--rcpt-option", action="append", default=[], help="a parameter for every RCPT TO; repeat for more")
            p.add_argument("--ehlo-features", action="store_true", help="report the EHLO keywords the client saw")
    p = sub.add_parser("many")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--from", dest="sender", required=True)
    p.add_argument("--to", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--prefix", default="message")
    args = parser.parse_args()
    {"send": send, "injection": injection, "many": many}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Connects to 127.0.0.1 asking for a host name by SNI (or for none), reports the certificate
the server chose and, with --user, the reply to AUTH PLAIN. Standard library only.

Prints one JSON object: {"names": [DNS names of the certificate], "auth": [code, text]}, or
{"tls_error": "..."} when the handshake fails.
"""
import argparse
import base64
import json
import socket
import ssl
import sys


def reply(reader, step):
    """The last line of one (possibly multi-line) reply, as [code, text]; exits with a message
    naming `step` when the connection closes first or the line is not a reply."""
    while True:
        raw = reader.readline()
        if not raw:
            sys.exit(f"sni_client.py: the connection closed while waiting for the reply to {step}")
        line = raw.decode(errors="replace").rstrip("\r\n")
        if len(line) < 4 or line[3] != "-":
            if not line[:3].isdigit():
                sys.exit(f"sni_client.py: not an SMTP reply to {step}: {line!r}")
            return [int(line[:3]), line[4:]]


def expect(reader, step, code):
    """Reads the reply to `step`; exits with a message unless its code is `code`."""
    got = reply(reader, step)
    if got[0] != code:
        sys.exit(f"sni_client.py: expected {code} to {step}, got {got[0]} {got[1]}")
    return got


def tls_context(cafile):
    # The chain is verified against the test's certificates; the name is not, so that the
    # test sees which certificate came back even when it is not the one asked for.
    context = ssl.create_default_context(cafile=cafile)
    context.check_hostname = False
    return context


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["ssl", "starttls"], required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--server-name", help="the SNI name; none is sent without it")
    parser.add_argument("--user")
    parser.add_argument("--password")
    args = parser.parse_args()

    sock = socket.create_connection(("127.0.0.1", args.port), timeout=20)
    if args.mode == "starttls":
        reader = sock.makefile("rb")
        expect(reader, "the connection (greeting)", 220)
        sock.sendall(b"EHLO client.example\r\n")
        expect(reader, "EHLO", 250)
        sock.sendall(b"STARTTLS\r\n")
        # The handshake only after the server agreed to it.
        expect(reader, "STARTTLS", 220)
    try:
        tls = tls_context(args.cafile).wrap_socket(sock, server_hostname=args.server_name)
    except (ssl.SSLError, OSError) as error:
        print(json.dumps({"tls_error": str(error)}))
        return 0
    certificate = tls.getpeercert()
    names = [value for kind, value in certificate.get("subjectAltName", ()) if kind == "DNS"]
    result = {"names": names}
    reader = tls.makefile("rb")
    if args.mode == "ssl":
        reply(reader, "the connection (greeting)")
    tls.sendall(b"EHLO client.example\r\n")
    reply(reader, "EHLO over TLS")
    if args.user:
        token = base64.b64encode(f"\0{args.user}\0{args.password}".encode()).decode()
        tls.sendall(f"AUTH PLAIN {token}\r\n".encode())
        result["auth"] = reply(reader, "AUTH PLAIN")
    tls.sendall(b"QUIT\r\n")
    reply(reader, "QUIT")
    tls.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Logs in every mailbox of a provisioning CSV with smtplib, in one process (standard library only).

The file is read with Python's csv module, so this also checks that what `portcullis accounts
provision` writes is ordinary CSV. Each login connects to --port on --host (not the file's host,
which need not resolve in a test), upgrades with STARTTLS and authenticates with smtplib's
login() (UTF-8 AUTH PLAIN for non-ASCII passwords). Prints one JSON object: the number of successful logins, the failures, and the host and
port values seen in the file.
"""
import argparse
import base64
import csv
import json
import smtplib
import ssl
import sys


def login(client, user, password):
    """smtplib's login() for ASCII credentials; it encodes them as ASCII, so anything else (a
    no-break space, a zero-width space) goes as UTF-8 in AUTH PLAIN, as UTF-8 clients send it."""
    if (user + password).isascii():
        code, _ = client.login(user, password)
        return code
    token = base64.b64encode(f"\0{user}\0{password}".encode("utf-8")).decode("ascii")
    code, text = client.docmd("AUTH", "PLAIN " + token)
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, text)
    return code


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cafile", required=True)
    parser.add_argument("--csv", required=True)
    args = parser.parse_args()

    context = ssl.create_default_context(cafile=args.cafile)
    with open(args.csv, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    result = {"rows": len(rows), "ok": 0, "failed": [], "hosts": [], "ports": []}
    for row in rows:
        row = {key.strip().lower(): value for key, value in row.items()}
        if row["host"] not in result["hosts"]:
            result["hosts"].append(row["host"])
        if row["port"] not in result["ports"]:
            result["ports"].append(row["port"])
        try:
            with smtplib.SMTP(args.host, args.port, timeout=30) as client:
                client.ehlo("platform.example")
                client.starttls(context=context)
                client.ehlo("platform.example")
                code = login(client, row["username"], row["password"])
            if code == 235:
                result["ok"] += 1
            else:
                result["failed"].append([row["username"], code, ""])
        except smtplib.SMTPResponseException as error:
            result["failed"].append(
                [row["username"], error.smtp_code, error.smtp_error.decode(errors="replace")]
            )
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())

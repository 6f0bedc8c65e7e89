#!/usr/bin/env python3
"""Parses a delivery status notification (RFC 3464) with Python's standard `email` package
(policy.default), an independent MIME parser, and prints what the tests check as one JSON
object: the report's type, its parts, the human-readable text, the per-message and
per-recipient fields of the message/delivery-status part, and any parsing defects.

Usage: parse_dsn.py FILE
"""
import email
import json
import sys
from email import policy


def main():
    with open(sys.argv[1], "rb") as file:
        msg = email.message_from_bytes(file.read(), policy=policy.default)
    parts = list(msg.iter_parts())
    blocks = parts[1].get_payload()
    returned = parts[2] if len(parts) > 2 else None
    out = {
        "type": msg.get_content_type(),
        "report_type": msg.get_param("report-type"),
        "to": str(msg["To"]),
        "subject": str(msg["Subject"]),
        "auto": str(msg["Auto-Submitted"]),
        "parts": [p.get_content_type() for p in parts],
        "text": parts[0].get_content(),
        "per_message": dict(blocks[0].items()),
        "recipients": [dict(b.items()) for b in blocks[1:]],
        "returned_subject": str(returned.get_payload()[0]["Subject"])
        if returned is not None and returned.get_content_type() == "message/rfc822" else None,
        "defects": [str(d) for p in msg.walk() for d in p.defects],
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()

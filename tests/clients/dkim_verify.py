"""Verifies each DKIM-Signature of a message with dkimpy, an independent verifier.

Usage: dkim_verify.py MESSAGE_FILE RECORDS_JSON

RECORDS_JSON is what `portcullis domains dns --json` printed: the TXT records are looked up
there instead of in the DNS. Prints a JSON list, one object per signature, topmost first:
{"ok": bool, "algorithm": "rsa-sha256", "domain": ..., "selector": ..., "error": null}.
"""
import json
import sys

import dkim


def main():
    message = open(sys.argv[1], "rb").read()
    published = json.load(open(sys.argv[2]))
    records = {r["name"]: r["value"] for r in published["records"] if r["type"] == "TXT"}

    def dnsfunc(name, timeout=5):
        name = name.decode() if isinstance(name, bytes) else name
        value = records.get(name.rstrip("."))
        return value.encode() if value is not None else None

    verifier = dkim.DKIM(message)
    count = sum(1 for name, _ in verifier.headers if name.lower() == b"dkim-signature")
    results = []
    for index in range(count):
        result = {"ok": False, "error": None}
        try:
            result["ok"] = bool(verifier.verify(idx=index, dnsfunc=dnsfunc))
        except dkim.DKIMException as error:
            result["error"] = str(error)
        fields = verifier.signature_fields
        for key in ("a", "d", "s"):
            result[{"a": "algorithm", "d": "domain", "s": "selector"}[key]] = fields.get(
                key.encode(), b""
            ).decode()
        results.append(result)
    print(json.dumps(results))


if __name__ == "__main__":
    main()

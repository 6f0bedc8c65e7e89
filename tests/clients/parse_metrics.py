#!/usr/bin/env python3
"""Parses a /metrics scrape (standard input) with prometheus_client's parsers, independent of
the server's encoder, and prints what each read as JSON for tests/http.rs:

  {"openmetrics": [[family, type, sample, labels, value], ...], "text": [...]}

"openmetrics" is the strict OpenMetrics parser (the format the server declares); "text" is the
classic Prometheus text parser (text_string_to_metric_families), as an older scraper reads it.
A scrape either one refuses makes this exit non-zero with the parser's error.
"""
import json
import math
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as classic


def samples(families):
    rows = []
    for family in families:
        for sample in family.samples:
            value = sample.value
            if isinstance(value, float) and math.isinf(value):
                value = str(value)
            rows.append([family.name, family.type, sample.name, sample.labels, value])
    return rows


def main():
    text = sys.stdin.read()
    print(json.dumps({"openmetrics": samples(openmetrics(text)), "text": samples(classic(text))}))


if __name__ == "__main__":
    main()

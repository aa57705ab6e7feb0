"""Reads Prometheus text exposition on stdin with prometheus_client's parser (which refuses
what Prometheus would) and prints every sample as JSON: [[name, {labels}, value], ...]."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, s.labels, s.value])
print(json.dumps(out))

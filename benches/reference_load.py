#!/usr/bin/env python3
"""The reference adapter's load pattern, for tg-bench's resume baseline.

A session store that talks to S3 itself loads a transcript like this:
ListObjectsV2 pages under the session's prefix, then a GetObject of every part
on a ThreadPoolExecutor(16), then ``json.loads`` of every line. This is the
pattern whose published timings are about 0.03 s for 10 parts, 2.2 s for 1,000,
and 20 s for 10,000; tg-bench measures it in the same run as the gateway.

It runs as a worker: tg-bench starts it once (so boto3's import and client
set-up are not timed, and its connection pool stays warm, as in a long-lived
adapter) and sends one JSON request per line on stdin; one JSON answer per
line comes back on stdout.

  {"op": "reference", "prefix": "p/t/proj/s/", "concurrency": 16}
      -> {"ok": true, "total_s", "list_s", "fetch_s", "entries", "parts", "pages"}
  {"op": "single", "key": "k"}          one GetObject of a whole JSONL object
      -> {"ok": true, "get_s", "parse_s", "total_s", "entries"}
  {"op": "ping"} -> {"ok": true, "python", "boto3"}

Usage: reference_load.py --endpoint URL --bucket NAME   (AWS_* credentials from
the environment, as scripts/emulators.py exports them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config


def make_client(endpoint: str, concurrency: int):
    # A pool as large as the thread pool: with botocore's default of 10, six
    # of the 16 workers would open a new connection on every request.
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            s3={"addressing_style": "path"},
            max_pool_connections=concurrency,
            retries={"mode": "standard", "max_attempts": 3},
        ),
    )


def reference(client, bucket: str, prefix: str, concurrency: int) -> dict:
    t0 = time.perf_counter()
    keys = []
    pages = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        pages += 1
        for obj in page.get("Contents", []):
            name = obj["Key"][len(prefix):]
            if name.startswith("part-") and name.endswith(".jsonl") and "/" not in name:
                keys.append(obj["Key"])
    t1 = time.perf_counter()

    def fetch(key: str) -> list:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return [json.loads(line) for line in body.splitlines() if line]

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        entries = [e for part in pool.map(fetch, keys) for e in part]
    t2 = time.perf_counter()
    return {
        "ok": True,
        "total_s": t2 - t0,
        "list_s": t1 - t0,
        "fetch_s": t2 - t1,
        "entries": len(entries),
        "parts": len(keys),
        "pages": pages,
    }


def single(client, bucket: str, key: str) -> dict:
    t0 = time.perf_counter()
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    t1 = time.perf_counter()
    entries = [json.loads(line) for line in body.splitlines() if line]
    t2 = time.perf_counter()
    return {"ok": True, "get_s": t1 - t0, "parse_s": t2 - t1, "total_s": t2 - t0, "entries": len(entries)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--bucket", required=True)
    ap.add_argument("--concurrency", type=int, default=16)
    args = ap.parse_args()
    client = make_client(args.endpoint, args.concurrency)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            op = req.get("op")
            if op == "reference":
                out = reference(client, args.bucket, req["prefix"], int(req.get("concurrency", args.concurrency)))
            elif op == "single":
                out = single(client, args.bucket, req["key"])
            elif op == "ping":
                out = {"ok": True, "python": sys.version.split()[0], "boto3": boto3.__version__}
            elif op == "quit":
                return 0
            else:
                out = {"ok": False, "error": f"unknown op {op!r}"}
        except Exception as e:  # report, keep serving
            out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

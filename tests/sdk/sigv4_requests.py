"""Stateful requests through the gateway to a SigV4 (Bedrock) upstream; botocore checks each.

Usage: sigv4_requests.py GATEWAY_ADDR BEDROCK_ADDR RECORD_FILE PLAIN_RECORD_FILE KEY SECRET TOKEN

1. Self-test of the verifier (straight to the upstream, not through the gateway): a request
   signed by botocore passes, the same request with one body byte changed fails.
2. Through the gateway: stateful requests of several shapes (JSON body with unicode, GET with
   a query, DELETE, a large body, a client bearer token and client x-amz-* headers, tracing
   headers) must all get 200, i.e. every signature verified.
3. The upstream's record: one verdict per gateway request, all verified, no client secret
   received; the stateless (plain) upstream received nothing.
Exits 1 on the first failure, saying what failed.
"""

import hashlib
import http.client
import json
import sys
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

gateway, bedrock, record, plain_record, key, secret, token = sys.argv[1:8]
failures = []


def call(addr, method, path, body=b"", headers=None):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def check(name, cond, detail=""):
    print(("ok   " if cond else "FAIL ") + name + ("" if cond else f": {detail}"))
    if not cond:
        failures.append(name)


def verdicts(path):
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


# 1. The verifier is not a rubber stamp.
body = b'{"model":"m","input":"self-test"}'
signed = AWSRequest(
    method="POST",
    url=f"http://{bedrock}/openai/v1/responses",
    data=body,
    headers={"content-type": "application/json"},
)
SigV4Auth(Credentials(key, secret, token), "bedrock", "us-east-1").add_auth(signed)
good = dict(signed.headers.items())
status, _, text = call(bedrock, "POST", "/openai/v1/responses", body, good)
check("verifier accepts a botocore-signed request", status == 200, f"{status} {text[:300]!r}")
status, _, text = call(bedrock, "POST", "/openai/v1/responses", body.replace(b"m", b"n", 1), good)
check("verifier rejects a request whose body changed after signing", status == 403, f"{status}")
self_test = len(verdicts(record))

# 2. Through the gateway.
unicode_body = json.dumps(
    {"model": "gpt-4o", "input": "héllo — 你好 🚀 \u00e9\u0301", "store": True},
    ensure_ascii=False,
).encode("utf-8")
big_body = json.dumps({"model": "gpt-4o", "input": "x" * 200_000, "store": True}).encode()
cases = [
    ("POST /v1/responses store:true, unicode body", "POST", "/v1/responses", unicode_body,
     {"content-type": "application/json"}),
    ("GET /v1/responses/resp_123?include=x", "GET", "/v1/responses/resp_123?include=x", b"", {}),
    ("GET with a multi-parameter query", "GET",
     "/v1/conversations/conv_1/items?order=asc&limit=2&after=item%201", b"", {}),
    ("DELETE /v1/responses/resp_123", "DELETE", "/v1/responses/resp_123", b"", {}),
    ("POST with a 200 kB body", "POST", "/v1/responses", big_body,
     {"content-type": "application/json"}),
    ("client credentials are not forwarded", "POST", "/v1/responses",
     b'{"model":"m","input":"hi","store":true}',
     {"content-type": "application/json", "authorization": "Bearer client-secret",
      "x-amz-security-token": "client-token", "x-amz-date": "19990101T000000Z",
      "x-api-key": "client-secret"}),
    ("tracing and user-agent headers", "POST", "/v1/responses",
     b'{"model":"m","input":"hi","store":true}',
     {"content-type": "application/json", "user-agent": "OpenAI/Python 9.9",
      "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      "x-request-id": "sigv4-check-1"}),
]
for name, method, path, body, headers in cases:
    status, resp_headers, text = call(gateway, method, path, body, headers)
    check(
        f"{name}: 200 from bedrock",
        status == 200 and resp_headers.get("x-switchyard-upstream") == "bedrock",
        f"status {status}, upstream {resp_headers.get('x-switchyard-upstream')}, body {text[:600]!r}",
    )

# 3. What the upstream saw.
seen = verdicts(record)[self_test:]
for v in seen[:1]:
    print(f"info {v['method']} {v['path']} signed: {';'.join(v['signed_headers'])}")
check(f"bedrock saw {len(cases)} requests", len(seen) == len(cases), f"saw {len(seen)}")
for v in seen:
    check(f"verified {v['method']} {v['path']}", v["ok"], v["reason"])
    check(f"no client secret in {v['method']} {v['path']}", not v["client_secret_seen"], v["headers"])
unicode_seen = [v for v in seen if v["body_sha256"] == hashlib.sha256(unicode_body).hexdigest()]
check("the unicode body arrived byte for byte", len(unicode_seen) == 1, "no verdict with its hash")
check("the stateless upstream was not contacted", not verdicts(plain_record), verdicts(plain_record))

if failures:
    print(f"{len(failures)} check(s) failed", file=sys.stderr)
    sys.exit(1)

"""A stand-in Bedrock upstream that checks every request's SigV4 signature with botocore.

For each request it rebuilds the canonical request from what arrived on the wire (method,
path, query, the headers named in SignedHeaders, including host and x-amz-date, and the exact
body bytes), recomputes the signature with botocore's SigV4Auth using the fixed test
credentials given on the command line, and compares it with the received Authorization.
A match gets 200 with an OpenAI-shaped chat completion and `x-amzn-requestid`; a mismatch gets
403 with a JSON description of what differed. Every verdict is appended to --record as one
JSON line.

Usage: sigv4_upstream.py --region R --service S --access-key K --secret-key X [--token T]
                         --record FILE [--plain]
Prints the port it listens on (127.0.0.1, ephemeral) as the first line of stdout.
--plain: no checking, every request gets 200 (a stateless upstream that must stay unused).
"""

import argparse
import datetime
import hashlib
import json
import re
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/"
    r"(?P<service>[^/]+)/aws4_request, SignedHeaders=(?P<signed>[a-z0-9;\-]+), "
    r"Signature=(?P<signature>[0-9a-f]{64})$"
)
# AWS refuses a request whose x-amz-date is further than this from its clock.
MAX_SKEW = datetime.timedelta(minutes=15)
REDACTED = {"authorization", "x-amz-security-token"}


def verify(args, method, target, headers, body):
    """Return (ok, reason, signed_headers) for one received request."""
    auth = headers.get("authorization", "")
    m = AUTH_RE.match(auth)
    if not m:
        return False, f"authorization is not a SigV4 header: {auth[:40]!r}", []
    signed = m["signed"].split(";")
    amz_date = headers.get("x-amz-date", "")
    expect = {
        "key": args.access_key,
        "date": amz_date[:8],
        "region": args.region,
        "service": args.service,
    }
    for part, want in expect.items():
        if m[part] != want:
            return False, f"credential scope {part} is {m[part]!r}, expected {want!r}", signed
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc
        )
    except ValueError:
        return False, f"x-amz-date {amz_date!r} is not a SigV4 timestamp", signed
    if abs(datetime.datetime.now(datetime.timezone.utc) - when) > MAX_SKEW:
        return False, f"x-amz-date {amz_date} is more than 15 minutes off", signed
    required = ["host", "x-amz-date"] + (["x-amz-security-token"] if args.token else [])
    missing = [h for h in required if h not in signed]
    if missing:
        return False, f"SignedHeaders lacks {missing}", signed
    if args.token and headers.get("x-amz-security-token") != args.token:
        return False, "x-amz-security-token is not the session token", signed
    absent = [h for h in signed if h not in headers]
    if absent:
        return False, f"signed headers {absent} were not received", signed

    # What an AWS endpoint does: the canonical request from the request as received, with
    # only the headers the client said it signed. The query is decoded and re-encoded
    # (botocore's params path), as AWS does, rather than compared as raw text.
    parts = urlsplit(target)
    request = AWSRequest(
        method=method,
        url=f"http://{headers.get('host')}{parts.path}",
        data=body,
        params=parse_qsl(parts.query, keep_blank_values=True),
    )
    for name in signed:
        for value in headers.get_all(name):
            request.headers[name] = value
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(
        Credentials(args.access_key, args.secret_key, args.token), args.service, args.region
    )
    canonical = signer.canonical_request(request)
    botocore_signed = signer.signed_headers(signer.headers_to_sign(request)).split(";")
    if botocore_signed != sorted(signed):
        return False, f"botocore would sign {botocore_signed}, the request signed {signed}", signed
    string_to_sign = signer.string_to_sign(request, canonical)
    expected = signer.signature(string_to_sign, request)
    if expected != m["signature"]:
        return (
            False,
            "signature mismatch; botocore's canonical request was:\n" + canonical,
            signed,
        )
    return True, "signature verified", signed


class Headers:
    """Received headers by lower-case name, keeping repeats and their order."""

    def __init__(self, message):
        self.pairs = [(k.lower(), v) for k, v in message.items()]

    def get(self, name, default=None):
        for k, v in self.pairs:
            if k == name:
                return v
        return default

    def get_all(self, name):
        return [v for k, v in self.pairs if k == name]

    def __contains__(self, name):
        return any(k == name for k, _ in self.pairs)


def make_handler(args, record_lock):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            # Head and body are written separately: without this, Nagle's algorithm and the
            # peer's delayed ACK add ~40 ms to every answer.
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, fmt, *a):  # quiet: the record file says what happened
            pass

        def read_body(self):
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("content-length") or 0))

        def handle_any(self):
            body = self.read_body()
            headers = Headers(self.headers)
            if args.plain:
                ok, reason, signed = True, "plain upstream: not checked", []
            else:
                try:
                    ok, reason, signed = verify(args, self.command, self.path, headers, body)
                except Exception as e:  # a verifier bug must fail the check, not hang it
                    ok, reason, signed = False, f"verifier error: {e!r}", []
            verdict = {
                "ok": ok,
                "reason": reason,
                "method": self.command,
                "path": self.path,
                "signed_headers": signed,
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "headers": [
                    [k, "<redacted>" if k in REDACTED else v] for k, v in headers.pairs
                ],
                "client_secret_seen": any(
                    "client-secret" in v or "client-token" in v for _, v in headers.pairs
                ),
            }
            with record_lock, open(args.record, "a", encoding="utf-8") as f:
                f.write(json.dumps(verdict) + "\n")
            if ok:
                status, payload = 200, completion(body)
            else:
                status = 403
                payload = {
                    "message": "The request signature we calculated does not match the signature you provided.",
                    "detail": reason,
                }
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("x-amzn-requestid", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = handle_any

    return Handler


def completion(body):
    try:
        model = json.loads(body).get("model", "m") if body else "m"
    except (ValueError, AttributeError):
        model = "m"
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:12],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "signature verified"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--service", default="bedrock")
    p.add_argument("--access-key", default="")
    p.add_argument("--secret-key", default="")
    p.add_argument("--token", default=None)
    p.add_argument("--record", required=True)
    p.add_argument("--plain", action="store_true")
    args = p.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(args, threading.Lock()))
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()

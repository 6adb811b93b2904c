#!/usr/bin/env python3
"""The official OpenAI Python SDK through Switchyard: each call must land on its class's upstream.

Usage: openai_sdk_check.py GATEWAY_BASE_URL [METRICS_URL]
Run by tests/sdk/run.sh against `switchyard demo` (stateless -> mock "primary",
stateful -> mock "secondary"). For every call, the raw response's headers must show the class
the gateway decided (x-switchyard-class), the upstream it chose (x-switchyard-upstream) and the
mock that actually answered (x-mock-provider); the parsed objects are validated strictly
against the SDK's own types. Exits non-zero on any failure.
"""

import sys
import urllib.request

import openai
from openai.types import CreateEmbeddingResponse, FileObject
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.conversations import Conversation
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

BASE = sys.argv[1]
METRICS = sys.argv[2] if len(sys.argv) > 2 else None
client = openai.OpenAI(base_url=BASE, api_key="sk-client", max_retries=0, timeout=20)
UPSTREAM = {"stateless": "primary", "stateful": "secondary"}
failures = []


def strict(model_type, obj):
    TypeAdapter(model_type).validate_python(obj.to_dict(mode="json"))


def landed(raw, want_class):
    h = raw.headers
    got = (h.get("x-switchyard-class"), h.get("x-switchyard-upstream"), h.get("x-mock-provider"))
    want = (want_class, UPSTREAM[want_class], UPSTREAM[want_class])
    assert got == want, f"class/upstream/provider {got}, want {want} (rule {h.get('x-switchyard-rule')})"
    assert h.get("x-request-id"), "no x-request-id"
    return h.get("x-switchyard-rule")


def check(name, want_class):
    def wrap(fn):
        try:
            rule = fn(want_class)
            print(f"ok    {name:<55} {want_class:<9} rule={rule}")
        except Exception as e:  # noqa: BLE001 - report every failure the same way
            failures.append(name)
            print(f"FAIL  {name:<55} {type(e).__name__}: {e}")
        return fn
    return wrap


MSG = [{"role": "user", "content": "hi"}]


@check("chat.completions.create", "stateless")
def _(c):
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
    strict(ChatCompletion, raw.parse())
    return landed(raw, c)


@check("chat.completions.create(stream=True, include_usage)", "stateless")
def _(c):
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=MSG, stream=True, stream_options={"include_usage": True}
    ) as raw:
        rule = landed(raw, c)
        chunks = list(raw.parse())
    for chunk in chunks:
        strict(ChatCompletionChunk, chunk)
    assert chunks and chunks[-1].usage is not None, "no usage chunk"
    return rule


@check("chat.completions.create(store=True)", "stateful")
def _(c):
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG, store=True)
    strict(ChatCompletion, raw.parse())
    return landed(raw, c)


@check("responses.create(store=False)", "stateless")
def _(c):
    raw = client.responses.with_raw_response.create(model="gpt-4o", input="hi", store=False)
    strict(Response, raw.parse())
    return landed(raw, c)


@check("responses.create (stored by default)", "stateful")
def _(c):
    raw = client.responses.with_raw_response.create(model="gpt-4o", input="hi")
    strict(Response, raw.parse())
    return landed(raw, c)


@check("responses.create(stream=True)", "stateful")
def _(c):
    with client.responses.with_streaming_response.create(model="gpt-4o", input="hi", stream=True) as raw:
        rule = landed(raw, c)
        events = list(raw.parse())
    for event in events:
        strict(ResponseStreamEvent, event)
    assert events[-1].type == "response.completed", events[-1].type
    return rule


@check("responses.create(stream=True, store=False)", "stateless")
def _(c):
    with client.responses.with_streaming_response.create(
        model="gpt-4o", input="hi", stream=True, store=False
    ) as raw:
        rule = landed(raw, c)
        events = list(raw.parse())
    assert events[-1].type == "response.completed", events[-1].type
    return rule


@check("responses.create(previous_response_id, store=False)", "stateful")
def _(c):
    raw = client.responses.with_raw_response.create(
        model="gpt-4o", input="and?", previous_response_id="resp_123", store=False
    )
    return landed(raw, c)


@check("responses.retrieve", "stateful")
def _(c):
    raw = client.responses.with_raw_response.retrieve("resp_123")
    return landed(raw, c)


@check("conversations.create", "stateful")
def _(c):
    raw = client.conversations.with_raw_response.create()
    strict(Conversation, raw.parse())
    return landed(raw, c)


@check("conversations.items.list", "stateful")
def _(c):
    raw = client.conversations.items.with_raw_response.list("conv_123")
    return landed(raw, c)


@check("embeddings.create", "stateless")
def _(c):
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["a", "b"])
    parsed = raw.parse()
    strict(CreateEmbeddingResponse, parsed)
    assert len(parsed.data) == 2
    return landed(raw, c)


@check("files.create", "stateful")
def _(c):
    raw = client.files.with_raw_response.create(file=("notes.txt", b"hello"), purpose="assistants")
    strict(FileObject, raw.parse())
    return landed(raw, c)


@check("files.list", "stateful")
def _(c):
    raw = client.files.with_raw_response.list()
    return landed(raw, c)


@check("models.list", "stateless")
def _(c):
    raw = client.models.with_raw_response.list()
    return landed(raw, c)


def requests_by_route(text):
    """{(class, upstream): count} from switchyard_requests_total lines."""
    out = {}
    for line in text.splitlines():
        if not line.startswith("switchyard_requests_total{"):
            continue
        labels, value = line[len("switchyard_requests_total{"):].rsplit("} ", 1)
        kv = dict(part.split("=", 1) for part in labels.split(",") if "=" in part)
        key = (kv.get("class", "").strip('"'), kv.get("upstream", "").strip('"'))
        out[key] = out.get(key, 0) + float(value)
    return out


if METRICS:
    counts = requests_by_route(urllib.request.urlopen(METRICS, timeout=10).read().decode())
    for cls, up in UPSTREAM.items():
        if counts.get((cls, up), 0) < 1:
            failures.append(f"metrics {cls}")
            print(f"FAIL  /metrics has no {cls} request on {up}: {counts}")
    crossed = {k: v for k, v in counts.items() if k[0] in UPSTREAM and k[1] != UPSTREAM[k[0]]}
    if crossed:
        failures.append("metrics crossed")
        print(f"FAIL  /metrics shows requests on the wrong upstream: {crossed}")
    else:
        print(f"ok    /metrics: {counts}")

print(f"\nopenai {openai.__version__}: {15 - len([f for f in failures if not f.startswith('metrics')])} of 15 calls on the right upstream")
sys.exit(1 if failures else 0)

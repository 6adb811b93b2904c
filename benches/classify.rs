//! Criterion bench of `classify`: Responses bodies from 1 KiB to 16 MiB (marker at the start,
//! at the end, absent), head-only decisions, and matching against 50 operator rules.
// Bench setup parses literals; a failure there should stop the bench loudly.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use switchyard::classify::{Class, Classifier, ClassifierSettings, RuleSpec};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

fn settings(rules: Vec<RuleSpec>) -> ClassifierSettings {
    ClassifierSettings {
        base_path: "/v1".to_owned(),
        builtins: true,
        disabled_builtins: Vec::new(),
        rules,
    }
}

/// A realistic Responses request of about `size` bytes: an `input` array of user/assistant
/// messages with long, escape-bearing text, plus `head`/`tail` members around it.
fn responses_body(head: &str, tail: &str, size: usize) -> Vec<u8> {
    let text = "The quick brown fox jumps over the lazy dog; \\\"quoted\\\" text,\\n\\ttabs, \
                unicode \\u00e9 and plain prose that goes on for a while to look like a prompt. ";
    let mut out = format!(
        r#"{{{head}"model":"gpt-5","instructions":"You are a helpful assistant.","tools":[{{"type":"function","name":"lookup","parameters":{{"type":"object","properties":{{"q":{{"type":"string"}}}}}}}}],"input":["#
    );
    let mut turn = 0usize;
    while out.len() + tail.len() + 2 < size {
        if turn > 0 {
            out.push(',');
        }
        if turn.is_multiple_of(2) {
            out.push_str(r#"{"role":"user","content":[{"type":"input_text","text":""#);
            let repeat = if size <= 2 * KIB { 2 } else { 24 };
            for _ in 0..repeat {
                out.push_str(text);
            }
            out.push_str(r#""}]}"#);
        } else {
            out.push_str(
                r#"{"type":"message","role":"assistant","content":[{"type":"output_text","text":""#,
            );
            out.push_str(text);
            out.push_str(r#"","annotations":[]}]}"#);
        }
        turn += 1;
    }
    out.push(']');
    out.push_str(tail);
    out.push('}');
    out.into_bytes()
}

fn bodies(c: &mut Criterion) {
    let classifier = Classifier::new(settings(Vec::new()));
    let (post, headers) = (Method::POST, HeaderMap::new());
    for (size, name) in [
        (KIB, "1KiB"),
        (64 * KIB, "64KiB"),
        (MIB, "1MiB"),
        (16 * MIB, "16MiB"),
    ] {
        let mut group = c.benchmark_group(format!("responses_body/{name}"));
        if size >= MIB {
            group.sample_size(10);
        }
        let cases = [
            (
                "marker_start",
                responses_body(
                    r#""previous_response_id":"resp_123","#,
                    r#","store":false"#,
                    size,
                ),
                Class::Stateful,
            ),
            (
                "marker_end",
                responses_body(
                    "",
                    r#","store":false,"previous_response_id":"resp_123""#,
                    size,
                ),
                Class::Stateful,
            ),
            (
                "absent",
                responses_body("", r#","store":false"#, size),
                Class::Stateless,
            ),
        ];
        for (case, body, want) in &cases {
            let got = classifier
                .classify(&post, "/v1/responses", &headers, body)
                .unwrap();
            assert_eq!(got.class, *want, "{case}");
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_with_input(BenchmarkId::new("classify", case), body, |b, body| {
                b.iter(|| {
                    classifier
                        .classify(&post, black_box("/v1/responses"), &headers, black_box(body))
                        .unwrap()
                })
            });
        }
        // Reference point: serde_json validating the same bytes and keeping nothing.
        let body = &cases[2].1;
        group.bench_with_input(
            BenchmarkId::new("serde_json_ignored_any", "absent"),
            body,
            |b, body| {
                b.iter(|| serde_json::from_slice::<serde::de::IgnoredAny>(black_box(body)).unwrap())
            },
        );
        group.finish();
    }
}

fn heads(c: &mut Criterion) {
    let classifier = Classifier::new(settings(Vec::new()));
    let mut headers = HeaderMap::new();
    headers.insert("authorization", HeaderValue::from_static("Bearer sk-test"));
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(
        "user-agent",
        HeaderValue::from_static("OpenAI/Python 1.99.0"),
    );
    let mut group = c.benchmark_group("head_only");
    for (name, method, path) in [
        ("get_response", Method::GET, "/v1/responses/resp_68af4030592c81938ec0a5fbab4a3e9f"),
        ("embeddings", Method::POST, "/v1/embeddings"),
        ("azure_deployment", Method::POST, "/openai/deployments/gpt4o/embeddings?api-version=2024-10-21"),
        (
            "agentcore_encoded_arn",
            Method::POST,
            "/runtimes/arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Aruntime%2Fmy_agent-abc/invocations?qualifier=DEFAULT",
        ),
        ("responses_needs_body", Method::POST, "/v1/responses"),
        ("unknown", Method::GET, "/healthz"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| classifier.inspect(&method, black_box(path), &headers))
        });
    }
    group.finish();
    let small = br#"{"model":"gpt-5","input":"Say hi.","store":false}"#;
    c.bench_function("small_body/store_false", |b| {
        b.iter(|| {
            classifier
                .classify(
                    &Method::POST,
                    black_box("/v1/responses"),
                    &headers,
                    black_box(small),
                )
                .unwrap()
        })
    });
}

/// Path templating for metric labels: a concrete path with ids to its bounded route label
/// (`/v1/threads/{id}/runs/{id}`), as every request's metrics need it.
fn route_templates(c: &mut Criterion) {
    let classifier = Classifier::new(settings(Vec::new()));
    let headers = HeaderMap::new();
    let mut group = c.benchmark_group("route_template");
    for (name, method, path) in [
        ("chat_completions", Method::POST, "/v1/chat/completions"),
        (
            "response_input_items",
            Method::GET,
            "/v1/responses/resp_68af4030592c81938ec0a5fbab4a3e9f/input_items?limit=20",
        ),
        (
            "thread_run_step",
            Method::GET,
            "/v1/threads/thread_abc123/runs/run_def456/steps/step_789",
        ),
        (
            "file_content",
            Method::GET,
            "/v1/files/file-XjGxS3KTG0uNmNOK362iJua3/content",
        ),
        (
            "azure_deployment_chat",
            Method::POST,
            "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21",
        ),
        ("unknown", Method::GET, "/v1/not/a/known/path/at/all"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let route = classifier
                    .inspect(&method, black_box(path), &headers)
                    .route();
                classifier.route_label(route).len()
            })
        });
    }
    group.finish();
}

/// 50 operator rules, each with a path, a header and (every other one) a body condition; none
/// match the benchmarked request, so all 50 are evaluated before the built-ins.
fn operator_rules(c: &mut Criterion) {
    let rules: Vec<RuleSpec> = (0..50)
        .map(|i| RuleSpec {
            name: format!("rule-{i}"),
            class: Class::Stateful,
            methods: vec![Method::POST],
            path: Some(format!("/v1/tenants/t{i}/*").parse().unwrap()),
            header_present: Vec::new(),
            header_equals: vec![(
                HeaderName::from_static("x-tenant"),
                HeaderValue::from_str(&format!("t{i}")).unwrap(),
            )],
            body_present: if i % 2 == 0 {
                vec![format!("/metadata/pin_{i}").parse().unwrap()]
            } else {
                Vec::new()
            },
            body_absent: Vec::new(),
            body_equals: Vec::new(),
        })
        .collect();
    let classifier = Classifier::new(settings(rules));
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", HeaderValue::from_static("t49"));
    let mut group = c.benchmark_group("operator_rules_50");
    group.bench_function("head_no_match", |b| {
        b.iter(|| classifier.inspect(&Method::POST, black_box("/v1/embeddings"), &headers))
    });
    group.bench_function("head_last_matches", |b| {
        b.iter(|| classifier.inspect(&Method::POST, black_box("/v1/tenants/t49/x"), &headers))
    });
    let body = responses_body("", r#","store":false"#, KIB);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("responses_1KiB", |b| {
        b.iter(|| {
            classifier
                .classify(
                    &Method::POST,
                    black_box("/v1/responses"),
                    &headers,
                    black_box(&body),
                )
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bodies, heads, route_templates, operator_rules);
criterion_main!(benches);

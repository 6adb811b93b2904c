//! Criterion bench of the provider adapters' per-request work on bodies from 1 KiB to 4 MiB:
//! finding and renaming the top-level `model` (model aliasing, Azure deployments), against
//! serde_json validating the same bytes, and SigV4 signing with aws-sigv4 (dominated by the
//! SHA-256 of the body), against hashing alone.
// Bench setup parses literals; a failure there should stop the bench loudly.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4::SigningParams;
use aws_smithy_runtime_api::client::identity::Identity;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde::de::IgnoredAny;
use switchyard::upstream::model;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const SIZES: [usize; 4] = [KIB, 64 * KIB, MIB, 4 * MIB];

/// A chat request of about `size` bytes with `model` first or last.
fn chat_body(size: usize, model_last: bool) -> Vec<u8> {
    let text =
        "The quick brown fox jumps over the lazy dog; \\\"quoted\\\" text, unicode \\u00e9. ";
    let mut out = String::from("{");
    if !model_last {
        out.push_str(r#""model":"gpt-4o","#);
    }
    out.push_str(r#""messages":["#);
    let mut first = true;
    while out.len() + 64 < size {
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(r#"{"role":"user","content":""#);
        for _ in 0..8 {
            out.push_str(text);
        }
        out.push_str(r#""}"#);
    }
    out.push(']');
    if model_last {
        out.push_str(r#","model":"gpt-4o""#);
    }
    out.push('}');
    out.into_bytes()
}

fn rename(c: &mut Criterion) {
    let mut group = c.benchmark_group("model_rename");
    for size in SIZES {
        for last in [false, true] {
            let body = chat_body(size, last);
            let label = format!(
                "{}KiB/model_{}",
                size / KIB,
                if last { "last" } else { "first" }
            );
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_with_input(
                BenchmarkId::new("find+replace", &label),
                &body,
                |b, body| {
                    b.iter(|| {
                        let field = model::find(black_box(body)).unwrap().unwrap();
                        black_box(model::replace(body, field.span, "gpt-4o-prod-2024-08-06"))
                    })
                },
            );
        }
        let body = chat_body(size, false);
        let label = format!("{}KiB", size / KIB);
        group.bench_with_input(
            BenchmarkId::new("serde_json_validate", &label),
            &body,
            |b, body| {
                b.iter(|| black_box(serde_json::from_slice::<IgnoredAny>(black_box(body)).unwrap()))
            },
        );
    }
    group.finish();
}

fn sigv4(c: &mut Criterion) {
    let identity: Identity = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("token".to_owned()),
        None,
        "bench",
    )
    .into();
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json"),
        ("x-request-id", "0b5c1f2e-4e1a-4a7e-9a53-0d7d3c2b1a00"),
    ];
    let mut group = c.benchmark_group("sigv4");
    for size in SIZES {
        let body = chat_body(size, false);
        let label = format!("{}KiB", size / KIB);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("sign", &label), &body, |b, body| {
            b.iter(|| {
                let params = SigningParams::builder()
                    .identity(&identity)
                    .region("us-east-1")
                    .name("bedrock")
                    .time(SystemTime::UNIX_EPOCH)
                    .settings(SigningSettings::default())
                    .build()
                    .unwrap()
                    .into();
                let request = SignableRequest::new(
                    "POST",
                    "https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1/responses",
                    headers.iter().copied(),
                    SignableBody::Bytes(black_box(body)),
                )
                .unwrap();
                black_box(sign(request, &params).unwrap())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, rename, sigv4);
criterion_main!(benches);

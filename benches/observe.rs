//! Criterion bench of `observe::Observer::feed`: JSON chat completions (64 KiB, 1 MiB), a Chat
//! Completions SSE stream of 500 token chunks, and a Responses SSE stream ending in a large
//! `response.completed`; every body fed in 16 KiB frames, as the proxy relays them.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchyard::observe::{Format, Observer, Want};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const FRAME: usize = 16 * KIB;

const WANT: Want = Want {
    usage: true,
    ids: true,
    first_token: true,
};

/// Assistant prose as it appears inside a JSON string: markdown, newlines, quotes, code.
const PROSE: &str = r#"Here is a summary of the design.\n\n## Overview\n\nThe service keeps a \"session\" per client and forwards each request to the upstream that owns it. Requests carry a `previous_response_id`, so the proxy can route them without reading the whole body.\n\n```rust\nfn route(id: &str) -> Upstream {\n    table.get(id).unwrap_or(default)\n}\n```\n\n- Latency stays flat under load.\n- Memory is bounded per connection.\n\n"#;

/// A chat completion of about `size` bytes: long choices, usage at the end.
fn chat_completion(size: usize) -> Vec<u8> {
    let mut choices = String::new();
    let mut index = 0;
    while choices.len() < size {
        if index > 0 {
            choices.push(',');
        }
        choices.push_str(&format!(
            r#"{{"index":{index},"message":{{"role":"assistant","content":""#
        ));
        for _ in 0..16 {
            choices.push_str(PROSE);
        }
        choices.push_str(
            r#"","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}"#,
        );
        index += 1;
    }
    format!(
        r#"{{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,"model":"gpt-4.1-2025-04-14","choices":[{choices}],"usage":{{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{{"cached_tokens":0,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}},"service_tier":"default","system_fingerprint":"fp_3b4d8b5d3c"}}"#
    )
    .into_bytes()
}

const WORDS: [&str; 8] = [
    " the",
    " proxy",
    " routes",
    " each",
    " request",
    ",",
    "\\n",
    " \\\"quoted\\\"",
];

/// A Chat Completions stream with `include_usage`: a role chunk, `tokens` content chunks, a
/// finish chunk, the usage chunk and `[DONE]`.
fn chat_stream(tokens: usize) -> Vec<u8> {
    let chunk = |delta: &str, finish: &str, usage: &str| {
        format!(
            "data: {{\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_eb9dce56a8\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}],\"usage\":{usage}}}\n\n"
        )
    };
    let mut out = chunk(
        r#"{"role":"assistant","content":"","refusal":null}"#,
        "null",
        "null",
    );
    for n in 0..tokens {
        let word = WORDS[n % WORDS.len()];
        out.push_str(&chunk(
            &format!(r#"{{"content":"{word}"}}"#),
            "null",
            "null",
        ));
    }
    out.push_str(&chunk("{}", "\"stop\"", "null"));
    out.push_str(&format!(
        "data: {{\"id\":\"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG\",\"object\":\"chat.completion.chunk\",\"created\":1741570283,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_eb9dce56a8\",\"choices\":[],\"usage\":{{\"prompt_tokens\":1117,\"completion_tokens\":{tokens},\"total_tokens\":1617,\"prompt_tokens_details\":{{\"cached_tokens\":1024,\"audio_tokens\":0}},\"completion_tokens_details\":{{\"reasoning_tokens\":0,\"audio_tokens\":0}}}}}}\n\n"
    ));
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

/// A Responses stream: created, `deltas` text deltas, then a `response.completed` carrying
/// about `final_size` bytes of output.
fn responses_stream(deltas: usize, final_size: usize) -> Vec<u8> {
    let response = |status: &str, output: &str, usage: &str| {
        format!(
            r#"{{"id":"resp_67ccd3a9da748190baa7f1570fe91ac604becb25c45c1d41","object":"response","created_at":1741476777,"status":"{status}","conversation":{{"id":"conv_689667905b048191b4740501625afd940c7533ace33a2dab"}},"model":"gpt-5","output":[{output}],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{{"effort":"medium"}},"store":true,"temperature":1.0,"text":{{"format":{{"type":"text"}}}},"tool_choice":"auto","tools":[],"usage":{usage}}}"#
        )
    };
    let event = |kind: &str, data: &str| format!("event: {kind}\ndata: {data}\n\n");
    let mut out = event(
        "response.created",
        &format!(
            r#"{{"type":"response.created","sequence_number":0,"response":{}}}"#,
            response("in_progress", "", "null")
        ),
    );
    for n in 0..deltas {
        let word = WORDS[n % WORDS.len()];
        out.push_str(&event(
            "response.output_text.delta",
            &format!(
                r#"{{"type":"response.output_text.delta","sequence_number":{},"item_id":"msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41","output_index":0,"content_index":0,"delta":"{word}","logprobs":[]}}"#,
                n + 1
            ),
        ));
    }
    let mut text = String::new();
    while text.len() < final_size {
        text.push_str(PROSE);
    }
    let output = format!(
        r#"{{"id":"msg_67ccd3acc8d48190a77525dc6de64b4104becb25c45c1d41","type":"message","status":"completed","role":"assistant","content":[{{"type":"output_text","text":"{text}","annotations":[],"logprobs":[]}}]}}"#
    );
    out.push_str(&event(
        "response.completed",
        &format!(
            r#"{{"type":"response.completed","sequence_number":{},"response":{}}}"#,
            deltas + 1,
            response(
                "completed",
                &output,
                r#"{"input_tokens":328,"input_tokens_details":{"cached_tokens":0},"output_tokens":52,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":380}"#
            )
        ),
    ));
    out.into_bytes()
}

/// One response through a fresh observer, frame by frame.
fn observe(format: Format, body: &[u8]) -> Option<switchyard::observe::Usage> {
    let mut observer = Observer::new(format, WANT);
    for frame in body.chunks(FRAME) {
        black_box(observer.feed(black_box(frame)));
    }
    observer.usage()
}

fn bench_observe(c: &mut Criterion) {
    let mut group = c.benchmark_group("observe");
    let cases = [
        ("json_chat_64KiB", Format::Json, chat_completion(64 * KIB)),
        ("json_chat_1MiB", Format::Json, chat_completion(MIB)),
        ("sse_chat_500_tokens", Format::Sse, chat_stream(500)),
        (
            "sse_responses_500_deltas_256KiB_completed",
            Format::Sse,
            responses_stream(500, 256 * KIB),
        ),
    ];
    for (name, format, body) in &cases {
        // A bench that measures an observer that found nothing measures the wrong thing.
        if observe(*format, body).is_none() {
            eprintln!("observe bench {name}: no usage found; the input is wrong");
            std::process::exit(1);
        }
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), body, |b, body| {
            b.iter(|| observe(*format, body));
        });
    }
    group.finish();
}

criterion_group!(benches, bench_observe);
criterion_main!(benches);

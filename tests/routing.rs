//! The classification table, end to end: every row of PROTOCOL.md goes through the gateway
//! and must reach exactly one mock (the one serving its class), byte for byte, and nothing
//! may reach the other one. Plus path mapping, base paths, operator rules and decision
//! headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::{full, summary, Harness, HttpClient};
use http::{Method, StatusCode};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Stateless,
    Stateful,
}

impl Class {
    fn as_str(self) -> &'static str {
        match self {
            Class::Stateless => "stateless",
            Class::Stateful => "stateful",
        }
    }

    fn upstream(self) -> &'static str {
        match self {
            Class::Stateless => "primary",
            Class::Stateful => "secondary",
        }
    }
}

use Class::{Stateful, Stateless};

/// One request and the class it must be routed as.
struct Row {
    name: &'static str,
    method: Method,
    path: String,
    headers: Vec<(&'static str, &'static str)>,
    body: Bytes,
    class: Class,
    /// Path and query the upstream must see (defaults to `path`).
    upstream_path: Option<String>,
    /// The rule that must decide, when the test pins it.
    rule: Option<&'static str>,
}

fn row(name: &'static str, method: &str, path: &str, class: Class) -> Row {
    Row {
        name,
        method: Method::from_bytes(method.as_bytes()).unwrap(),
        path: path.to_owned(),
        headers: Vec::new(),
        body: Bytes::new(),
        class,
        upstream_path: None,
        rule: None,
    }
}

impl Row {
    fn json(mut self, v: Value) -> Self {
        self.body = Bytes::from(v.to_string());
        self.headers.push(("content-type", "application/json"));
        self
    }

    fn raw(mut self, content_type: &'static str, body: &'static [u8]) -> Self {
        self.body = Bytes::from_static(body);
        self.headers.push(("content-type", content_type));
        self
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn upstream_path(mut self, p: &str) -> Self {
        self.upstream_path = Some(p.to_owned());
        self
    }

    fn rule(mut self, rule: &'static str) -> Self {
        self.rule = Some(rule);
        self
    }
}

/// Send every row through `h` and collect what went wrong (empty = all good).
async fn check_rows(h: &Harness, client: &HttpClient, rows: &[Row]) -> Vec<String> {
    let mut failures = Vec::new();
    for r in rows {
        h.clear();
        let mut req = client.request(r.method.clone(), &r.path);
        for (n, v) in &r.headers {
            req = req.header(*n, *v);
        }
        let reply = client.send(req.body(full(r.body.clone())).unwrap()).await;
        let mut problems = Vec::new();
        let want_up = r.class.upstream();
        let other = if want_up == "primary" {
            "secondary"
        } else {
            "primary"
        };
        if reply.header("x-switchyard-class") != Some(r.class.as_str()) {
            problems.push(format!(
                "x-switchyard-class = {:?} (rule {:?}, marker {:?}), want {}",
                reply.header("x-switchyard-class"),
                reply.header("x-switchyard-rule"),
                reply.header("x-switchyard-marker"),
                r.class.as_str()
            ));
        }
        if reply.header("x-switchyard-upstream") != Some(want_up) {
            problems.push(format!(
                "x-switchyard-upstream = {:?}, want {want_up}",
                reply.header("x-switchyard-upstream")
            ));
        }
        if reply.header("x-mock-provider") != Some(want_up) {
            problems.push(format!(
                "answered by {:?} with {} {}, want the {want_up} mock",
                reply.header("x-mock-provider"),
                reply.status,
                reply.text()
            ));
        }
        if reply.header("x-switchyard-rule").is_none_or(str::is_empty) {
            problems.push("no x-switchyard-rule".to_owned());
        }
        if let Some(rule) = r.rule {
            if reply.header("x-switchyard-rule") != Some(rule) {
                problems.push(format!(
                    "x-switchyard-rule = {:?}, want {rule}",
                    reply.header("x-switchyard-rule")
                ));
            }
        }
        let got = h.mock(want_up).requests();
        let want_path = r.upstream_path.as_deref().unwrap_or(&r.path);
        match got.as_slice() {
            [one] => {
                if one.method != r.method {
                    problems.push(format!("{want_up} saw method {}", one.method));
                }
                if one.path_and_query != want_path {
                    problems.push(format!(
                        "{want_up} saw path {}, want {want_path}",
                        one.path_and_query
                    ));
                }
                if one.body != r.body {
                    problems.push(format!(
                        "{want_up} saw a body of {} bytes that differs from the {} sent",
                        one.body.len(),
                        r.body.len()
                    ));
                }
            }
            other => problems.push(format!(
                "{want_up} saw {} requests: {:?}",
                other.len(),
                summary(other)
            )),
        }
        let leaked = h.mock(other).requests();
        if !leaked.is_empty() {
            problems.push(format!(
                "the {other} mock must see nothing but saw {:?}",
                summary(&leaked)
            ));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "[{}] {} {}: {}",
                r.name,
                r.method,
                r.path,
                problems.join("; ")
            ));
        }
    }
    h.clear();
    failures
}

fn assert_no_failures(failures: Vec<String>, total: usize) {
    assert!(
        failures.is_empty(),
        "{} of {total} rows misrouted:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

const ARN: &str =
    "arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Aruntime%2Fmy_agent-abc";

fn protocol_table() -> Vec<Row> {
    let m = "gpt-4o";
    let input = "Say hi";
    let msgs = json!([{"role": "user", "content": "hi"}]);
    vec![
        // ---- Responses: creation ----
        row("responses store absent", "POST", "/v1/responses", Stateful)
            .json(json!({"model": m, "input": input})),
        row("responses store true", "POST", "/v1/responses", Stateful)
            .json(json!({"model": m, "input": input, "store": true})),
        row("responses store false", "POST", "/v1/responses", Stateless)
            .json(json!({"model": m, "input": input, "store": false})),
        row("responses stream store false", "POST", "/v1/responses", Stateless)
            .json(json!({"model": m, "input": input, "store": false, "stream": true})),
        row("responses previous_response_id", "POST", "/v1/responses", Stateful)
            .json(json!({"model": m, "input": input, "store": false, "previous_response_id": "resp_123"})),
        row("responses previous_response_id null", "POST", "/v1/responses", Stateless)
            .json(json!({"model": m, "input": input, "store": false, "previous_response_id": null})),
        row("responses conversation string", "POST", "/v1/responses", Stateful)
            .json(json!({"model": m, "input": input, "store": false, "conversation": "conv_123"})),
        row("responses conversation object", "POST", "/v1/responses", Stateful)
            .json(json!({"model": m, "input": input, "store": false, "conversation": {"id": "conv_123"}})),
        row("responses conversation null", "POST", "/v1/responses", Stateless)
            .json(json!({"model": m, "input": input, "store": false, "conversation": null})),
        row("responses store null", "POST", "/v1/responses", Stateful)
            .json(json!({"model": m, "input": input, "store": null})),
        row("responses background", "POST", "/v1/responses", Stateful)
            .json(json!({"model": m, "input": input, "store": false, "background": true})),
        row("responses background false", "POST", "/v1/responses", Stateless)
            .json(json!({"model": m, "input": input, "store": false, "background": false})),
        row("responses prompt", "POST", "/v1/responses", Stateful)
            .json(json!({"model": m, "store": false, "prompt": {"id": "pmpt_123", "version": "2"}})),
        // ---- Responses: stored objects ----
        row("responses get", "GET", "/v1/responses/resp_abc", Stateful),
        row("responses get with query", "GET", "/v1/responses/resp_abc?include[]=file_search_call.results&stream=false", Stateful),
        row("responses delete", "DELETE", "/v1/responses/resp_abc", Stateful),
        row("responses cancel", "POST", "/v1/responses/resp_abc/cancel", Stateful),
        row("responses input_items", "GET", "/v1/responses/resp_abc/input_items?limit=5", Stateful),
        row("input_tokens plain", "POST", "/v1/responses/input_tokens", Stateless)
            .json(json!({"model": m, "input": input})),
        row("input_tokens previous_response_id", "POST", "/v1/responses/input_tokens", Stateful)
            .json(json!({"model": m, "input": input, "previous_response_id": "resp_1"})),
        row("input_tokens conversation", "POST", "/v1/responses/input_tokens", Stateful)
            .json(json!({"model": m, "input": input, "conversation": "conv_1"})),
        row("compact plain", "POST", "/v1/responses/compact", Stateless)
            .json(json!({"model": m, "input": [{"role": "user", "content": "hi"}]})),
        row("compact previous_response_id", "POST", "/v1/responses/compact", Stateful)
            .json(json!({"model": m, "previous_response_id": "resp_1"})),
        row("compact conversation", "POST", "/v1/responses/compact", Stateful)
            .json(json!({"model": m, "conversation": {"id": "conv_1"}})),
        // ---- Conversations ----
        row("conversations create", "POST", "/v1/conversations", Stateful)
            .json(json!({"metadata": {"topic": "x"}})),
        row("conversations get", "GET", "/v1/conversations/conv_1", Stateful),
        row("conversations update", "POST", "/v1/conversations/conv_1", Stateful)
            .json(json!({"metadata": {"topic": "y"}})),
        row("conversations delete", "DELETE", "/v1/conversations/conv_1", Stateful),
        row("conversation items list", "GET", "/v1/conversations/conv_1/items", Stateful),
        row("conversation items add", "POST", "/v1/conversations/conv_1/items", Stateful)
            .json(json!({"items": []})),
        row("conversation item get", "GET", "/v1/conversations/conv_1/items/msg_1", Stateful),
        row("conversation item delete", "DELETE", "/v1/conversations/conv_1/items/msg_1", Stateful),
        // ---- Chat completions ----
        row("chat store true", "POST", "/v1/chat/completions", Stateful)
            .json(json!({"model": m, "messages": msgs, "store": true})),
        row("chat store absent", "POST", "/v1/chat/completions", Stateless)
            .json(json!({"model": m, "messages": msgs})),
        row("chat store false", "POST", "/v1/chat/completions", Stateless)
            .json(json!({"model": m, "messages": msgs, "store": false})),
        row("chat store null", "POST", "/v1/chat/completions", Stateless)
            .json(json!({"model": m, "messages": msgs, "store": null})),
        row("chat stream", "POST", "/v1/chat/completions", Stateless)
            .json(json!({"model": m, "messages": msgs, "stream": true})),
        row("chat list stored", "GET", "/v1/chat/completions?limit=10", Stateful),
        row("chat get stored", "GET", "/v1/chat/completions/chatcmpl-abc", Stateful),
        row("chat update stored", "POST", "/v1/chat/completions/chatcmpl-abc", Stateful)
            .json(json!({"metadata": {"k": "v"}})),
        row("chat delete stored", "DELETE", "/v1/chat/completions/chatcmpl-abc", Stateful),
        row("chat stored messages", "GET", "/v1/chat/completions/chatcmpl-abc/messages", Stateful),
        // ---- Assistants, threads, realtime ----
        row("assistants create", "POST", "/v1/assistants", Stateful).json(json!({"model": m})),
        row("assistants get", "GET", "/v1/assistants/asst_1", Stateful),
        row("threads create", "POST", "/v1/threads", Stateful).json(json!({})),
        row("threads runs", "POST", "/v1/threads/thread_1/runs", Stateful)
            .json(json!({"assistant_id": "asst_1"})),
        row("threads run steps", "GET", "/v1/threads/thread_1/runs/run_1/steps", Stateful),
        row("threads messages", "GET", "/v1/threads/thread_1/messages", Stateful),
        row("realtime client_secrets", "POST", "/v1/realtime/client_secrets", Stateful)
            .json(json!({"session": {"type": "realtime"}})),
        row("realtime calls", "POST", "/v1/realtime/calls", Stateful)
            .raw("application/sdp", b"v=0\r\n"),
        row("realtime sessions", "POST", "/v1/realtime/sessions", Stateful).json(json!({})),
        row("realtime transcription_sessions", "POST", "/v1/realtime/transcription_sessions", Stateful)
            .json(json!({})),
        // ---- Server-side resources ----
        row("files upload", "POST", "/v1/files", Stateful)
            .raw("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--b--\r\n"),
        row("files list", "GET", "/v1/files", Stateful),
        row("files content", "GET", "/v1/files/file-abc/content", Stateful),
        row("files delete", "DELETE", "/v1/files/file-abc", Stateful),
        row("uploads", "POST", "/v1/uploads", Stateful)
            .json(json!({"filename": "a.jsonl", "purpose": "batch", "bytes": 10, "mime_type": "text/jsonl"})),
        row("uploads parts", "POST", "/v1/uploads/upload_1/parts", Stateful)
            .raw("application/octet-stream", b"part"),
        row("vector_stores create", "POST", "/v1/vector_stores", Stateful).json(json!({"name": "vs"})),
        row("vector_stores search", "POST", "/v1/vector_stores/vs_1/search", Stateful)
            .json(json!({"query": "q"})),
        row("batches", "POST", "/v1/batches", Stateful)
            .json(json!({"input_file_id": "file-1", "endpoint": "/v1/chat/completions", "completion_window": "24h"})),
        row("batches get", "GET", "/v1/batches/batch_1", Stateful),
        row("containers", "POST", "/v1/containers", Stateful).json(json!({"name": "c"})),
        row("container files", "GET", "/v1/containers/cntr_1/files", Stateful),
        row("evals", "POST", "/v1/evals", Stateful).json(json!({"name": "e"})),
        row("evals runs", "GET", "/v1/evals/eval_1/runs", Stateful),
        row("fine_tuning jobs", "POST", "/v1/fine_tuning/jobs", Stateful)
            .json(json!({"model": m, "training_file": "file-1"})),
        row("fine_tuning checkpoints", "GET", "/v1/fine_tuning/jobs/ftjob_1/checkpoints", Stateful),
        row("skills", "GET", "/v1/skills", Stateful),
        row("skills versions", "POST", "/v1/skills/skill_1/versions", Stateful)
            .raw("application/zip", b"PK\x03\x04"),
        row("videos", "POST", "/v1/videos", Stateful).json(json!({"prompt": "a cat"})),
        row("videos content", "GET", "/v1/videos/video_1/content", Stateful),
        // ---- Stateless APIs ----
        row("completions", "POST", "/v1/completions", Stateless)
            .json(json!({"model": "gpt-3.5-turbo-instruct", "prompt": "hi"})),
        row("embeddings", "POST", "/v1/embeddings", Stateless)
            .json(json!({"model": "text-embedding-3-small", "input": ["a", "b"]})),
        row("moderations", "POST", "/v1/moderations", Stateless)
            .json(json!({"input": "hi"})),
        row("audio speech", "POST", "/v1/audio/speech", Stateless)
            .json(json!({"model": "tts-1", "input": "hi", "voice": "alloy"})),
        row("audio transcriptions", "POST", "/v1/audio/transcriptions", Stateless)
            .raw("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b--\r\n"),
        row("audio translations", "POST", "/v1/audio/translations", Stateless)
            .raw("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b--\r\n"),
        row("images generations", "POST", "/v1/images/generations", Stateless)
            .json(json!({"model": "gpt-image-1", "prompt": "a cat"})),
        row("images edits", "POST", "/v1/images/edits", Stateless)
            .raw("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nx\r\n--b--\r\n"),
        row("models", "GET", "/v1/models", Stateless),
        row("models get", "GET", "/v1/models/gpt-4o", Stateless),
        // ---- Bedrock runtime (native paths, outside the OpenAI base) ----
        row("bedrock converse", "POST", "/model/anthropic.claude-3-5-sonnet-20240620-v1:0/converse", Stateless)
            .json(json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}]})),
        row("bedrock converse-stream", "POST", "/model/amazon.nova-pro-v1:0/converse-stream", Stateless)
            .json(json!({"messages": []})),
        row("bedrock invoke", "POST", "/model/amazon.titan-embed-text-v2:0/invoke", Stateless)
            .json(json!({"inputText": "hi"})),
        row("bedrock invoke stream", "POST", "/model/amazon.nova-pro-v1:0/invoke-with-response-stream", Stateless)
            .json(json!({"messages": []})),
        row("bedrock async-invoke start", "POST", "/async-invoke", Stateful)
            .json(json!({"modelId": "amazon.nova-reel-v1:0", "modelInput": {}, "outputDataConfig": {}})),
        row("bedrock async-invoke get", "GET", "/async-invoke/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aasync-invoke%2Fabc", Stateful),
        row("bedrock async-invoke list", "GET", "/async-invoke?maxResults=5", Stateful),
        // ---- AgentCore runtime ----
        row("agentcore invocations", "POST", &format!("/runtimes/{ARN}/invocations?qualifier=DEFAULT"), Stateful)
            .json(json!({"prompt": "hi"})),
        row("agentcore stop session", "POST", &format!("/runtimes/{ARN}/stopruntimesession?qualifier=DEFAULT"), Stateful)
            .json(json!({})),
        // ---- Anthropic ----
        row("anthropic messages", "POST", "/v1/messages", Stateless)
            .header("anthropic-version", "2023-06-01")
            .json(json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": msgs})),
        row("anthropic messages container", "POST", "/v1/messages", Stateful)
            .header("anthropic-version", "2023-06-01")
            .json(json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": msgs, "container": "container_011"})),
        row("anthropic message batches", "POST", "/v1/messages/batches", Stateful)
            .json(json!({"requests": []})),
        row("anthropic message batch results", "GET", "/v1/messages/batches/msgbatch_1/results", Stateful),
        // ---- Header markers ----
        row("mcp session header", "POST", "/mcp", Stateful)
            .header("mcp-session-id", "1868a90c-0000-4000-8000-000000000000")
            .json(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})),
        row("mcp session header on chat", "POST", "/v1/chat/completions", Stateful)
            .header("Mcp-Session-Id", "sess-1")
            .json(json!({"model": m, "messages": msgs})),
        row("agentcore session header", "POST", "/v1/chat/completions", Stateful)
            .header("X-Amzn-Bedrock-AgentCore-Runtime-Session-Id", "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8")
            .json(json!({"model": m, "messages": msgs})),
        // ---- Referenced objects inside an otherwise stateless body ----
        row("responses input_file file_id", "POST", "/v1/responses", Stateful)
            .json(json!({"model": m, "store": false, "input": [{"role": "user", "content": [
                {"type": "input_text", "text": "summarise"},
                {"type": "input_file", "file_id": "file-abc"}]}]})),
        row("responses file_search vector_store_ids", "POST", "/v1/responses", Stateful)
            .json(json!({"model": m, "store": false, "input": input,
                "tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]})),
        row("responses code_interpreter container id", "POST", "/v1/responses", Stateful)
            .json(json!({"model": m, "store": false, "input": input,
                "tools": [{"type": "code_interpreter", "container": "cntr_abc"}]})),
        row("responses code_interpreter container auto", "POST", "/v1/responses", Stateful)
            .json(json!({"model": m, "store": false, "input": input,
                "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}]})),
        row("chat file_id", "POST", "/v1/chat/completions", Stateful)
            .json(json!({"model": m, "messages": [{"role": "user", "content": [
                {"type": "text", "text": "summarise"},
                {"type": "file", "file": {"file_id": "file-abc"}}]}]})),
        row("responses item_reference", "POST", "/v1/responses", Stateful)
            .json(json!({"model": m, "store": false, "input": [{"type": "item_reference", "id": "msg_1"}]})),
        // ---- Transport and path shapes ----
        row("websocket upgrade on responses", "GET", "/v1/responses", Stateful)
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .rule("websocket.upgrade"),
        row("percent-encoded route segment", "GET", "/v1/%72esponses/resp_1", Stateful)
            .rule("responses.stored_object"),
        row("a single trailing slash is accepted", "GET", "/v1/responses/resp_1/", Stateful),
        row("head on models", "HEAD", "/v1/models", Stateless),
        // ---- Not state markers ----
        row("chat observability fields", "POST", "/v1/chat/completions", Stateless)
            .json(json!({"model": m, "messages": msgs, "metadata": {"session": "s1"}, "user": "u1",
                "safety_identifier": "sid", "prompt_cache_key": "pck", "service_tier": "auto",
                "litellm_session_id": "ls1"})),
        row("responses observability fields", "POST", "/v1/responses", Stateless)
            .json(json!({"model": m, "input": input, "store": false, "metadata": {"conversation": "c"},
                "user": "u1", "prompt_cache_key": "pck", "include": ["reasoning.encrypted_content"]})),
        row("tracing headers", "POST", "/v1/chat/completions", Stateless)
            .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .header("x-session-id", "s1")
            .header("helicone-session-id", "h1")
            .header("x-portkey-trace-id", "p1")
            .json(json!({"model": m, "messages": msgs})),
        row("input_file with file_data only", "POST", "/v1/responses", Stateless)
            .json(json!({"model": m, "store": false, "input": [{"role": "user", "content": [
                {"type": "input_file", "filename": "a.pdf", "file_data": "data:application/pdf;base64,AAAA"}]}]})),
        // ---- Azure OpenAI shapes ----
        row("azure classic chat", "POST", "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21", Stateless)
            .json(json!({"messages": msgs})),
        row("azure classic chat store", "POST", "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21", Stateful)
            .json(json!({"messages": msgs, "store": true})),
        row("azure classic embeddings", "POST", "/openai/deployments/emb/embeddings?api-version=2024-10-21", Stateless)
            .json(json!({"input": "x"})),
        row("azure classic responses", "POST", "/openai/responses?api-version=2025-04-01-preview", Stateful)
            .json(json!({"model": "gpt4o", "input": input})),
        row("azure v1 responses store false", "POST", "/openai/v1/responses", Stateless)
            .json(json!({"model": "gpt4o", "input": input, "store": false})),
        row("azure v1 responses stored", "POST", "/openai/v1/responses?api-version=preview", Stateful)
            .json(json!({"model": "gpt4o", "input": input})),
        row("azure v1 chat", "POST", "/openai/v1/chat/completions", Stateless)
            .json(json!({"model": "gpt4o", "messages": msgs})),
        row("azure v1 files", "GET", "/openai/v1/files", Stateful),
        // ---- Unknown ----
        row("unknown path under base", "POST", "/v1/brand-new-endpoint", Stateless)
            .json(json!({"model": m})),
        row("unknown path outside base", "GET", "/status/ping?x=1", Stateless),
        row("root", "GET", "/", Stateless),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_table_routes_each_class_to_its_upstream_only() {
    let h = Harness::start().await;
    let rows = protocol_table();
    assert!(rows.len() >= 40, "the table must cover PROTOCOL.md");
    let failures = check_rows(&h, &h.client, &rows).await;
    assert_no_failures(failures, rows.len());
    h.shutdown().await;
}

#[tokio::test]
async fn upstream_url_path_replaces_the_base_path() {
    let h = Harness::with_config(
        r#"
        [upstreams.primary]
        url = "http://{primary}/openai/v1"
        [upstreams.secondary]
        url = "http://{secondary}/mantle/v1/"
        "#,
    )
    .await;
    let rows = vec![
        row("chat", "POST", "/v1/chat/completions", Stateless)
            .json(json!({"model": "m", "messages": []}))
            .upstream_path("/openai/v1/chat/completions"),
        row(
            "chat with query",
            "POST",
            "/v1/chat/completions?api-version=2025-01-01&x=a%20b",
            Stateless,
        )
        .json(json!({"model": "m", "messages": []}))
        .upstream_path("/openai/v1/chat/completions?api-version=2025-01-01&x=a%20b"),
        row(
            "stored response",
            "GET",
            "/v1/responses/resp_1?include[]=x",
            Stateful,
        )
        .upstream_path("/mantle/v1/responses/resp_1?include[]=x"),
        row("conversations", "POST", "/v1/conversations", Stateful)
            .json(json!({}))
            .upstream_path("/mantle/v1/conversations"),
        row("base itself", "GET", "/v1", Stateless).upstream_path("/openai/v1"),
        row(
            "outside base",
            "POST",
            "/model/m1/converse?trace=1",
            Stateless,
        )
        .json(json!({"messages": []}))
        .upstream_path("/model/m1/converse?trace=1"),
        row(
            "prefix that is not a segment",
            "GET",
            "/v1beta/models",
            Stateless,
        )
        .upstream_path("/v1beta/models"),
        row(
            "outside base stateful",
            "POST",
            &format!("/runtimes/{ARN}/invocations?qualifier=DEFAULT"),
            Stateful,
        )
        .json(json!({}))
        .upstream_path(&format!("/runtimes/{ARN}/invocations?qualifier=DEFAULT")),
    ];
    let failures = check_rows(&h, &h.client, &rows).await;
    assert_no_failures(failures, rows.len());
    h.shutdown().await;
}

#[tokio::test]
async fn custom_base_path() {
    let h = Harness::with_config(
        r#"
        [server]
        base_path = "/api"
        "#,
    )
    .await;
    let rows = vec![
        row(
            "chat under /api",
            "POST",
            "/api/chat/completions",
            Stateless,
        )
        .json(json!({"model": "m", "messages": []}))
        .upstream_path("/v1/chat/completions"),
        row(
            "chat store under /api",
            "POST",
            "/api/chat/completions?q=1",
            Stateful,
        )
        .json(json!({"model": "m", "messages": [], "store": true}))
        .upstream_path("/v1/chat/completions?q=1"),
        row("responses under /api", "POST", "/api/responses", Stateful)
            .json(json!({"model": "m", "input": "x"}))
            .upstream_path("/v1/responses"),
        row(
            "responses get under /api",
            "GET",
            "/api/responses/resp_1",
            Stateful,
        )
        .upstream_path("/v1/responses/resp_1"),
        row("files under /api", "GET", "/api/files", Stateful).upstream_path("/v1/files"),
        row(
            "embeddings under /api",
            "POST",
            "/api/embeddings",
            Stateless,
        )
        .json(json!({"input": "x"}))
        .upstream_path("/v1/embeddings"),
    ];
    let failures = check_rows(&h, &h.client, &rows).await;
    assert_no_failures(failures, rows.len());
    h.shutdown().await;
}

#[tokio::test]
async fn operator_rules_come_before_builtins() {
    let h = Harness::with_config(
        r#"
        [[rules]]
        name = "custom-jobs"
        class = "stateful"
        methods = ["POST"]
        path = "/v1/custom/{id}/*"

        [[rules]]
        name = "pinned-tenant"
        class = "stateful"
        header_equals = { x-tenant = "pinned" }

        [[rules]]
        name = "agent-session"
        class = "stateful"
        methods = ["POST"]
        path = "/v1/chat/completions"
        body_present = ["/metadata/agent_session"]

        [[rules]]
        name = "sticky-tier"
        class = "stateful"
        methods = ["POST"]
        path = "/v1/chat/completions"
        body_equals = { "/metadata/tier" = "sticky" }

        [[rules]]
        name = "sticky-header"
        class = "stateful"
        header_present = ["x-sticky-session"]

        [[rules]]
        name = "modelless-embeddings"
        class = "stateful"
        methods = ["POST"]
        path = "/v1/embeddings"
        body_absent = ["/model"]

        [[rules]]
        name = "force-stateless-eval"
        class = "stateless"
        path = "/v1/evals/dry-run"
        "#,
    )
    .await;
    let msgs = json!([{"role": "user", "content": "hi"}]);
    let rows = vec![
        row("custom path", "POST", "/v1/custom/job-7/run", Stateful)
            .json(json!({"x": 1}))
            .rule("custom-jobs"),
        row(
            "custom path deeper",
            "POST",
            "/v1/custom/job-7/run/now?x=1",
            Stateful,
        )
        .json(json!({"x": 1}))
        .rule("custom-jobs"),
        row(
            "custom path wrong method",
            "GET",
            "/v1/custom/job-7/run",
            Stateless,
        ),
        row("custom path no tail", "POST", "/v1/custom", Stateless).json(json!({})),
        row("tenant header", "POST", "/v1/chat/completions", Stateful)
            .header("x-tenant", "pinned")
            .json(json!({"model": "m", "messages": msgs}))
            .rule("pinned-tenant"),
        row(
            "tenant header other value",
            "POST",
            "/v1/chat/completions",
            Stateless,
        )
        .header("x-tenant", "floating")
        .json(json!({"model": "m", "messages": msgs})),
        row("body present", "POST", "/v1/chat/completions", Stateful)
            .json(json!({"model": "m", "messages": msgs, "metadata": {"agent_session": "a1"}}))
            .rule("agent-session"),
        row("body equals", "POST", "/v1/chat/completions", Stateful)
            .json(json!({"model": "m", "messages": msgs, "metadata": {"tier": "sticky"}}))
            .rule("sticky-tier"),
        row(
            "body equals other value",
            "POST",
            "/v1/chat/completions",
            Stateless,
        )
        .json(json!({"model": "m", "messages": msgs, "metadata": {"tier": "normal"}})),
        row(
            "operator stateless beats builtin stateful",
            "POST",
            "/v1/evals/dry-run",
            Stateless,
        )
        .json(json!({}))
        .rule("force-stateless-eval"),
        row("header present", "GET", "/v1/models", Stateful)
            .header("x-sticky-session", "")
            .rule("sticky-header"),
        row(
            "body absent on a head-decided route",
            "POST",
            "/v1/embeddings",
            Stateful,
        )
        .json(json!({"input": "x"}))
        .rule("modelless-embeddings"),
        row(
            "body absent does not hold",
            "POST",
            "/v1/embeddings",
            Stateless,
        )
        .json(json!({"input": "x", "model": "e"}))
        .rule("stateless.endpoints"),
        row("builtins still apply", "POST", "/v1/responses", Stateful)
            .json(json!({"model": "m", "input": "x"})),
    ];
    let failures = check_rows(&h, &h.client, &rows).await;
    assert_no_failures(failures, rows.len());
    h.shutdown().await;
}

#[tokio::test]
async fn disabled_builtin_prompt_rule() {
    let h = Harness::with_config(
        r#"
        [classifier]
        disable = ["responses.prompt"]
        "#,
    )
    .await;
    let rows = vec![
        row(
            "prompt no longer a marker",
            "POST",
            "/v1/responses",
            Stateless,
        )
        .json(json!({"model": "m", "store": false, "prompt": {"id": "pmpt_1"}})),
        row("store still a marker", "POST", "/v1/responses", Stateful)
            .json(json!({"model": "m", "prompt": {"id": "pmpt_1"}})),
    ];
    let failures = check_rows(&h, &h.client, &rows).await;
    assert_no_failures(failures, rows.len());
    h.shutdown().await;
}

#[tokio::test]
async fn decision_headers_can_be_turned_off() {
    let h = Harness::with_config(
        r#"
        [server]
        decision_headers = false
        "#,
    )
    .await;
    let stateless = h
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "m", "messages": []}),
        )
        .await;
    let stateful = h.get("/v1/responses/resp_1").await;
    for (reply, mock) in [(&stateless, "primary"), (&stateful, "secondary")] {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.header("x-mock-provider"), Some(mock));
        for name in [
            "x-switchyard-class",
            "x-switchyard-upstream",
            "x-switchyard-rule",
            "x-switchyard-marker",
        ] {
            assert!(
                reply.headers.get(name).is_none(),
                "{name} must be absent with decision_headers = false, got {:?}",
                reply.headers.get(name)
            );
        }
        assert!(reply.header("x-request-id").is_some(), "x-request-id stays");
    }
    assert_eq!(h.primary.request_count(), 1);
    assert_eq!(h.secondary.request_count(), 1);
    // Gateway errors carry no decision headers either.
    let bad = h.post_json_with("/v1/responses", &[], "{not json").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.headers.get("x-switchyard-class").is_none());
    h.shutdown().await;
}

#[tokio::test]
async fn decision_headers_name_rule_and_marker() {
    let h = Harness::start().await;
    let reply = h
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "m", "messages": [], "store": true}),
        )
        .await;
    assert_eq!(reply.header("x-switchyard-class"), Some("stateful"));
    assert_eq!(reply.header("x-switchyard-upstream"), Some("secondary"));
    let marker = reply.header("x-switchyard-marker").unwrap_or_default();
    assert!(
        marker.contains("store"),
        "the marker names the body member that decided: {marker:?}"
    );
    let rule = reply.header("x-switchyard-rule").unwrap_or_default();
    assert!(
        rule.contains("chat"),
        "the rule names the chat table: {rule:?}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn builtins_off_leaves_operator_rules_and_default() {
    let h = Harness::with_config(
        r#"
        [classifier]
        builtins = false

        [[rules]]
        name = "only-files"
        class = "stateful"
        path = "/v1/files/*"
        "#,
    )
    .await;
    let rows = vec![
        row(
            "stored response is now default",
            "POST",
            "/v1/responses",
            Stateless,
        )
        .json(json!({"model": "m", "input": "x"}))
        .rule("default"),
        row(
            "invalid json is not read",
            "POST",
            "/v1/responses",
            Stateless,
        )
        .raw("application/json", b"{not json")
        .rule("default"),
        row("mcp header ignored", "GET", "/v1/models", Stateless)
            .header("mcp-session-id", "s")
            .rule("default"),
        row("operator rule", "POST", "/v1/files", Stateful)
            .raw("application/octet-stream", b"abc")
            .rule("only-files"),
    ];
    let failures = check_rows(&h, &h.client, &rows).await;
    assert_no_failures(failures, rows.len());
    h.shutdown().await;
}

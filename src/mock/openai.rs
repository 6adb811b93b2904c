//! Generated OpenAI answers: chat completions, responses and embeddings, as JSON objects and
//! as SSE events, shaped so the official SDKs parse them.

use bytes::Bytes;
use serde_json::{json, Value};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh id with the given prefix (`chatcmpl-…`, `resp_…`).
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// What a generating call needs from the request.
pub(crate) struct Gen<'a> {
    pub(crate) provider: &'a str,
    pub(crate) req: &'a Value,
    pub(crate) body_len: usize,
    /// Number of content tokens.
    pub(crate) tokens: usize,
}

impl Gen<'_> {
    pub(crate) fn model(&self) -> &str {
        self.req
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("mock-model")
    }

    pub(crate) fn stream(&self) -> bool {
        self.req.get("stream").and_then(Value::as_bool) == Some(true)
    }

    /// Prompt tokens: a rough four bytes per token, at least one.
    fn prompt_tokens(&self) -> u64 {
        (self.body_len as u64 / 4).max(1)
    }

    /// The i-th content token; the first five say who answered.
    fn token(&self, i: usize) -> String {
        const TAIL: [&str; 5] = [" lorem", " ipsum", " dolor", " sit", " amet"];
        match i {
            0 => "Hello".to_owned(),
            1 => " from".to_owned(),
            2 => " mock".to_owned(),
            3 => " provider".to_owned(),
            4 => format!(" {}", self.provider),
            _ => TAIL[(i - 5) % TAIL.len()].to_owned(),
        }
    }

    fn text(&self) -> String {
        (0..self.tokens).map(|i| self.token(i)).collect()
    }

    // ---- chat completions ----

    fn chat_usage(&self) -> Value {
        let prompt = self.prompt_tokens();
        let completion = self.tokens as u64;
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        })
    }

    pub(crate) fn chat_completion(&self) -> Value {
        json!({
            "id": new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": now_secs(),
            "model": self.model(),
            "system_fingerprint": "fp_mock",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": self.text(), "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": self.chat_usage(),
        })
    }

    /// `data: {chunk}` events: role, one per token, finish, usage if asked, `[DONE]`.
    pub(crate) fn chat_stream(&self) -> Vec<Bytes> {
        let include_usage = self
            .req
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        let id = new_id("chatcmpl-");
        let created = now_secs();
        let chunk = |choices: Value| {
            let mut c = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model(),
                "system_fingerprint": "fp_mock",
                "choices": choices,
            });
            if include_usage {
                set(&mut c, "usage", Value::Null);
            }
            c
        };
        let choice = |delta: Value, finish: Value| json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        let mut events = Vec::with_capacity(self.tokens + 4);
        events.push(data_event(&chunk(choice(
            json!({"role": "assistant", "content": "", "refusal": null}),
            Value::Null,
        ))));
        for i in 0..self.tokens {
            events.push(data_event(&chunk(choice(
                json!({"content": self.token(i)}),
                Value::Null,
            ))));
        }
        events.push(data_event(&chunk(choice(json!({}), json!("stop")))));
        if include_usage {
            let mut last = chunk(json!([]));
            set(&mut last, "usage", self.chat_usage());
            events.push(data_event(&last));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        events
    }

    // ---- responses ----

    fn responses_usage(&self) -> Value {
        let input = self.prompt_tokens();
        let output = self.tokens as u64;
        json!({
            "input_tokens": input,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input + output,
        })
    }

    fn output_text_part(text: &str) -> Value {
        json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    }

    fn message_item(id: &str, status: &str, content: Value) -> Value {
        json!({"id": id, "type": "message", "status": status, "role": "assistant", "content": content})
    }

    /// A response object with the given status, output and usage.
    fn response_object(&self, id: &str, status: &str, output: Value, usage: Value) -> Value {
        let conversation = match self.req.get("conversation") {
            Some(Value::String(id)) => json!({"id": id}),
            Some(v @ Value::Object(_)) => v.clone(),
            _ => Value::Null,
        };
        let field = |name: &str, default: Value| self.req.get(name).cloned().unwrap_or(default);
        json!({
            "id": id,
            "object": "response",
            "created_at": now_secs(),
            "status": status,
            "background": field("background", json!(false)),
            "error": null,
            "incomplete_details": null,
            "instructions": field("instructions", Value::Null),
            "max_output_tokens": field("max_output_tokens", Value::Null),
            "model": self.model(),
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": field("previous_response_id", Value::Null),
            "conversation": conversation,
            "reasoning": {"effort": null, "summary": null},
            "store": field("store", json!(true)),
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "user": null,
            "metadata": field("metadata", json!({})),
        })
    }

    /// A completed response for this request (or with the given id and status, for the
    /// retrieve and cancel routes).
    pub(crate) fn response(&self, id: Option<&str>, status: &str) -> Value {
        let id = id.map_or_else(|| new_id("resp_"), str::to_owned);
        let item = Self::message_item(
            &new_id("msg_"),
            "completed",
            json!([Self::output_text_part(&self.text())]),
        );
        self.response_object(&id, status, json!([item]), self.responses_usage())
    }

    /// `event: <type>` + `data: {…}` events from `response.created` to `response.completed`.
    pub(crate) fn response_stream(&self) -> Vec<Bytes> {
        let id = new_id("resp_");
        let msg = new_id("msg_");
        let text = self.text();
        let mut seq = 0u64;
        let mut events = Vec::with_capacity(self.tokens + 8);
        let mut push = |kind: &str, mut data: Value| {
            set(&mut data, "type", json!(kind));
            set(&mut data, "sequence_number", json!(seq));
            seq += 1;
            events.push(named_event(kind, &data));
        };
        let pending = self.response_object(&id, "in_progress", json!([]), Value::Null);
        push("response.created", json!({"response": pending}));
        push("response.in_progress", json!({"response": pending}));
        push(
            "response.output_item.added",
            json!({"output_index": 0, "item": Self::message_item(&msg, "in_progress", json!([]))}),
        );
        let at = |extra: Value| {
            let mut v = json!({"item_id": msg, "output_index": 0, "content_index": 0});
            if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
                v.extend(extra);
            }
            v
        };
        push(
            "response.content_part.added",
            at(json!({"part": Self::output_text_part("")})),
        );
        for i in 0..self.tokens {
            push(
                "response.output_text.delta",
                at(json!({"delta": self.token(i), "logprobs": []})),
            );
        }
        push(
            "response.output_text.done",
            at(json!({"text": text, "logprobs": []})),
        );
        let part = Self::output_text_part(&text);
        push(
            "response.content_part.done",
            at(json!({"part": part.clone()})),
        );
        let item = Self::message_item(&msg, "completed", json!([part]));
        push(
            "response.output_item.done",
            json!({"output_index": 0, "item": item.clone()}),
        );
        let done = self.response_object(&id, "completed", json!([item]), self.responses_usage());
        push("response.completed", json!({"response": done}));
        events
    }

    // ---- embeddings ----

    /// One embedding per input (a string, a token array, or an array of either).
    pub(crate) fn embeddings(&self) -> Value {
        const MAX_INPUTS: usize = 10_000;
        let inputs = match self.req.get("input") {
            Some(Value::Array(items)) if items.first().is_some_and(Value::is_number) => 1,
            Some(Value::Array(items)) => items.len().min(MAX_INPUTS),
            _ => 1,
        };
        let dims = self
            .req
            .get("dimensions")
            .and_then(Value::as_u64)
            .filter(|d| (1..=4096).contains(d))
            .map_or(8, |d| d as usize);
        let base64 = self.req.get("encoding_format").and_then(Value::as_str) == Some("base64");
        let data: Vec<Value> = (0..inputs)
            .map(|index| {
                let vector = embedding_vector(index, dims);
                let embedding = if base64 {
                    let bytes: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                    json!(base64_encode(&bytes))
                } else {
                    json!(vector)
                };
                json!({"object": "embedding", "index": index, "embedding": embedding})
            })
            .collect();
        let prompt = self.prompt_tokens();
        json!({
            "object": "list",
            "data": data,
            "model": self.model(),
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        })
    }
}

/// A deterministic vector: component j of input i is `(i + 1) * 0.01 + j * 0.1`.
#[allow(clippy::cast_precision_loss)]
fn embedding_vector(index: usize, dims: usize) -> Vec<f32> {
    (0..dims)
        .map(|j| (index + 1) as f32 * 0.01 + j as f32 * 0.1)
        .collect()
}

/// Set `key` on a JSON object (no-op on anything else, unlike `value[key] = …`).
pub(crate) fn set(object: &mut Value, key: &str, value: Value) {
    if let Some(object) = object.as_object_mut() {
        object.insert(key.to_owned(), value);
    }
}

/// `data: <json>\n\n`.
pub(crate) fn data_event(data: &Value) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

/// `event: <kind>\ndata: <json>\n\n`.
pub(crate) fn named_event(kind: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

/// Standard base64 (RFC 4648, with padding).
pub(crate) fn base64_encode(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sextet = |n: u32, shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        out.push(sextet(n, 18));
        out.push(sextet(n, 12));
        out.push(if chunk.len() > 1 { sextet(n, 6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(n, 0) } else { '=' });
    }
    out
}

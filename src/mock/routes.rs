//! Routing: the API path behind any deployment prefix, and the answer for each OpenAI route
//! the mock knows (everything else gets a JSON echo).

use std::sync::Mutex;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::openai::{new_id, now_secs, Gen};

/// At most this many uploaded file objects are kept for `GET /files`.
const MAX_FILES: usize = 1_000;

/// An answer before headers and controls are applied.
pub(crate) enum Reply {
    Json(StatusCode, Value),
    /// `text/event-stream`, one frame per event.
    Sse(Vec<Bytes>),
    /// Raw bytes with a content type.
    Raw(&'static str, Bytes),
}

/// The API path segments behind the prefix: everything after the first `/v1`,
/// `/openai/v1`, `/openai/deployments/{d}` or `/openai`, or the whole path if none is present.
pub(crate) fn api_segments(path: &str) -> Vec<&str> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for (i, seg) in segs.iter().enumerate() {
        let rest = |skip: usize| {
            segs.get(i + skip..)
                .map(<[&str]>::to_vec)
                .unwrap_or_default()
        };
        match *seg {
            "v1" => return rest(1),
            "openai" => {
                return match (segs.get(i + 1), segs.get(i + 2)) {
                    (Some(&"v1"), _) => rest(2),
                    (Some(&"deployments"), Some(_)) => rest(3),
                    _ => rest(1),
                };
            }
            _ => {}
        }
    }
    segs
}

/// Everything a route may look at.
pub(crate) struct RouteCtx<'a> {
    pub(crate) provider: &'a str,
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) body: &'a Bytes,
    pub(crate) tokens: usize,
    pub(crate) files: &'a Mutex<Vec<Value>>,
}

impl RouteCtx<'_> {
    fn gen<'v>(&'v self, req: &'v Value) -> Gen<'v> {
        Gen {
            provider: self.provider,
            req,
            body_len: self.body.len(),
            tokens: self.tokens,
        }
    }
}

fn ok(value: Value) -> Reply {
    Reply::Json(StatusCode::OK, value)
}

fn list(data: Vec<Value>) -> Value {
    let first = data.first().and_then(|v| v.get("id")).cloned();
    let last = data.last().and_then(|v| v.get("id")).cloned();
    json!({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": false})
}

/// Answer one request.
pub(crate) fn route(ctx: &RouteCtx<'_>) -> Reply {
    let req: Value = serde_json::from_slice(ctx.body).unwrap_or(Value::Null);
    let gen = ctx.gen(&req);
    let segs = api_segments(ctx.path);
    let m = ctx.method;
    match segs.as_slice() {
        ["chat", "completions"] if m == Method::POST && gen.stream() => {
            Reply::Sse(gen.chat_stream())
        }
        ["chat", "completions"] if m == Method::POST => ok(gen.chat_completion()),
        ["responses"] if m == Method::POST && gen.stream() => Reply::Sse(gen.response_stream()),
        ["responses"] if m == Method::POST => ok(gen.response(None, "completed")),
        ["responses", "input_tokens"] if m == Method::POST => ok(json!({
            "object": "response.input_tokens",
            "input_tokens": (ctx.body.len() / 4).max(1),
        })),
        ["responses", id] if m == Method::GET => ok(gen.response(Some(id), "completed")),
        ["responses", id] if m == Method::DELETE => {
            ok(json!({"id": id, "object": "response", "deleted": true}))
        }
        ["responses", id, "cancel"] if m == Method::POST => ok(gen.response(Some(id), "cancelled")),
        ["responses", _, "input_items"] if m == Method::GET => ok(list(vec![])),
        ["conversations", rest @ ..] => conversations(m, rest, &req),
        ["embeddings"] if m == Method::POST => ok(gen.embeddings()),
        ["files", rest @ ..] => files(ctx, rest),
        ["models"] if m == Method::GET => ok(json!({
            "object": "list",
            "data": [model("mock-gpt"), model("mock-embedding")],
        })),
        ["models", id] if m == Method::GET => ok(model(id)),
        _ => ok(json!({
            "object": "mock.echo",
            "provider": ctx.provider,
            "method": m.as_str(),
            "path": ctx.path,
            "api_path": format!("/{}", segs.join("/")),
            "body_bytes": ctx.body.len(),
        })),
    }
}

fn model(id: &str) -> Value {
    json!({"id": id, "object": "model", "created": 1_700_000_000u64, "owned_by": "switchyard-mock"})
}

fn conversation(id: &str, req: &Value) -> Value {
    let metadata = req.get("metadata").cloned().unwrap_or_else(|| json!({}));
    json!({"id": id, "object": "conversation", "created_at": now_secs(), "metadata": metadata})
}

fn conversations(m: &Method, rest: &[&str], req: &Value) -> Reply {
    match rest {
        [] if m == Method::POST => ok(conversation(&new_id("conv_"), req)),
        [id] if m == Method::GET || m == Method::POST => ok(conversation(id, req)),
        [id] if m == Method::DELETE => {
            ok(json!({"id": id, "object": "conversation.deleted", "deleted": true}))
        }
        [_, "items"] if m == Method::GET || m == Method::POST => ok(list(vec![])),
        [_, "items", item] if m == Method::GET => ok(json!({
            "type": "message",
            "id": item,
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_text", "text": "hello"}],
        })),
        [id, "items", _] if m == Method::DELETE => ok(conversation(id, &Value::Null)),
        _ => not_found(),
    }
}

fn not_found() -> Reply {
    Reply::Json(
        StatusCode::NOT_FOUND,
        json!({"error": {"message": "no such mock route", "type": "invalid_request_error", "code": "not_found"}}),
    )
}

fn file_object(id: &str, bytes: usize, filename: &str, purpose: &str) -> Value {
    json!({
        "id": id,
        "object": "file",
        "bytes": bytes,
        "created_at": now_secs(),
        "expires_at": null,
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "status_details": null,
    })
}

fn files(ctx: &RouteCtx<'_>, rest: &[&str]) -> Reply {
    let m = ctx.method;
    let store = || ctx.files.lock().unwrap_or_else(|e| e.into_inner());
    match rest {
        [] if m == Method::POST => {
            let (filename, purpose) = multipart_fields(ctx.body, ctx.content_type);
            let file = file_object(
                &new_id("file-"),
                ctx.body.len(),
                filename.as_deref().unwrap_or("upload"),
                purpose.as_deref().unwrap_or("assistants"),
            );
            let mut files = store();
            if files.len() >= MAX_FILES {
                files.remove(0);
            }
            files.push(file.clone());
            ok(file)
        }
        [] if m == Method::GET => {
            let mut data = store().clone();
            data.reverse(); // newest first, like the API
            let mut page = list(data);
            if let Some(page) = page.as_object_mut() {
                page.remove("first_id");
                page.remove("last_id");
            }
            ok(page)
        }
        [id] if m == Method::GET => {
            let known = store()
                .iter()
                .find(|f| f.get("id").and_then(Value::as_str) == Some(id))
                .cloned();
            ok(known.unwrap_or_else(|| file_object(id, 17, "upload", "assistants")))
        }
        [id] if m == Method::DELETE => {
            store().retain(|f| f.get("id").and_then(Value::as_str) != Some(id));
            ok(json!({"id": id, "object": "file", "deleted": true}))
        }
        [_, "content"] if m == Method::GET => Reply::Raw(
            "application/octet-stream",
            Bytes::from_static(b"mock file content"),
        ),
        _ => not_found(),
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return (from <= haystack.len()).then_some(from);
    }
    haystack
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The uploaded file's name and the `purpose` field of a multipart body, when easy to find.
fn multipart_fields(body: &[u8], content_type: Option<&str>) -> (Option<String>, Option<String>) {
    if !content_type.is_some_and(|ct| ct.starts_with("multipart/form-data")) {
        return (None, None);
    }
    let text = |bytes: &[u8]| {
        let s = String::from_utf8_lossy(bytes).trim().to_owned();
        (!s.is_empty() && s.len() <= 255).then_some(s)
    };
    let filename = find(body, b"filename=\"", 0).and_then(|start| {
        let start = start + b"filename=\"".len();
        let end = find(body, b"\"", start)?;
        text(body.get(start..end)?)
    });
    let purpose = find(body, b"name=\"purpose\"", 0).and_then(|at| {
        let start = find(body, b"\r\n\r\n", at)? + 4;
        let end = find(body, b"\r\n", start)?;
        text(body.get(start..end)?)
    });
    (filename, purpose)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_path_behind_prefixes() {
        let cases = [
            ("/v1/chat/completions", "chat/completions"),
            ("/openai/v1/responses/r1", "responses/r1"),
            (
                "/openai/deployments/gpt4o/chat/completions",
                "chat/completions",
            ),
            ("/openai/responses", "responses"),
            ("/embeddings", "embeddings"),
            ("/tenant/a/v1/files/", "files"),
            ("/openai/deployments", "deployments"),
            ("/", ""),
            ("", ""),
        ];
        for (path, want) in cases {
            assert_eq!(api_segments(path).join("/"), want, "{path}");
        }
    }

    #[test]
    fn multipart_name_and_purpose() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--b\r\n\
            Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhello\r\n--b--\r\n";
        let (name, purpose) = multipart_fields(body, Some("multipart/form-data; boundary=b"));
        assert_eq!(name.as_deref(), Some("a.txt"));
        assert_eq!(purpose.as_deref(), Some("batch"));
        assert_eq!(
            multipart_fields(b"filename=\"", Some("multipart/form-data")),
            (None, None)
        );
        assert_eq!(multipart_fields(body, None), (None, None));
    }
}

//! Helpers for provider-adapter tests: a chat body, and requests carrying the client's own
//! credentials, with a check that only the gateway's reach the upstream.

use serde_json::json;
use switchyard::mock::RecordedRequest;

use super::{Harness, Reply};

pub const CLIENT_CREDENTIALS: [(&str, &str); 3] = [
    ("authorization", "Bearer client-secret"),
    ("api-key", "client-api-key"),
    ("x-api-key", "client-x-api-key"),
];

pub fn chat(model: &str) -> String {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string()
}

/// POST a JSON body with the client's own credentials attached.
pub async fn post_with_client_credentials(h: &Harness, path: &str, body: String) -> Reply {
    h.post_json_with(path, &CLIENT_CREDENTIALS, body).await
}

/// Assert that the one request `upstream` saw carries exactly the gateway's credentials:
/// `want` set, every other credential header the client sent gone.
#[track_caller]
pub fn assert_credentials(req: &RecordedRequest, want: (&str, &str)) {
    let (name, value) = want;
    assert_eq!(
        req.header(name),
        Some(value),
        "{name} on {}",
        req.path_and_query
    );
    for (client_name, _) in CLIENT_CREDENTIALS {
        if client_name != name {
            assert_eq!(
                req.header(client_name),
                None,
                "the client's {client_name} must not reach the upstream"
            );
        }
    }
}

//! The classifier on arbitrary requests: never panics, and every outcome keeps its promises.
//!
//! Input: an HTTP/1-like text, so seeds are readable requests and libFuzzer's mutations stay
//! meaningful. The first line is `METHOD PATH` (path with its query), then `name: value`
//! header lines, a blank line, and the body (every remaining byte). Invalid methods become
//! POST; header lines that are not a valid name and value are skipped.
//!
//! Checked on each of three classifiers (`shared.rs`):
//! - inspect, then finish on the body when it asks for one: no panic;
//! - a decision's route, rule and marker are from the classifier's bounded sets; a refusal's
//!   route too;
//! - `classify` agrees with inspect + finish, and a second run gives the same result;
//! - the body scan agrees with serde_json: a document serde_json's own skipping parser
//!   rejects is never classified; one it parses into a `Value` is never `invalid_json`, and is
//!   `not_an_object` exactly when it is not an object;
//! - `inject_include_usage`: its output is the same JSON value plus
//!   `stream_options.include_usage = true`, and classifies like the original on
//!   `POST /v1/chat/completions`.
#![no_main]

mod shared;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use switchyard::classify::{Decision, Inspection, Unclassifiable, UnclassifiableReason};
use switchyard::observe::{inject_include_usage, request_state_id};

struct Request<'a> {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: &'a [u8],
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse(data: &[u8]) -> Request<'_> {
    let (head, body) = match find(data, b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().unwrap_or_default();
    let (method, path) = match first.iter().position(|b| *b == b' ') {
        Some(at) => (&first[..at], &first[at + 1..]),
        None => (first, &b"/"[..]),
    };
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(line[..colon].trim_ascii());
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii_start());
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    Request {
        method: Method::from_bytes(method).unwrap_or(Method::POST),
        path: String::from_utf8_lossy(path).into_owned(),
        headers,
        body,
    }
}

/// What serde_json makes of a body, for the differential check of the scan.
enum Json {
    /// Even `IgnoredAny` (no number parsing, the scanner's way of skipping) rejects it.
    Invalid,
    /// Parsed into a value.
    Value(serde_json::Value),
    /// Skips cleanly but does not parse into a `Value` (a number out of f64 range).
    SkipsOnly,
}

fn json(body: &[u8]) -> Json {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => Json::Value(value),
        Err(_) => match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => Json::SkipsOnly,
            Err(_) => Json::Invalid,
        },
    }
}

fn check_finished(name: &str, body: &[u8], result: &Result<Decision, Unclassifiable>) {
    use UnclassifiableReason as R;
    let reason = result.as_ref().err().map(|e| &e.reason);
    match json(body) {
        Json::Invalid => assert!(
            matches!(reason, Some(R::InvalidJson(_) | R::DuplicateKey(_))),
            "{name}: serde_json rejects the body, the classifier gave {result:?}"
        ),
        Json::Value(value) if value.is_object() => assert!(
            !matches!(reason, Some(R::InvalidJson(_) | R::NotAnObject)),
            "{name}: serde_json parses an object, the classifier gave {result:?}"
        ),
        Json::Value(_) => assert!(
            matches!(reason, Some(R::NotAnObject)),
            "{name}: a JSON non-object, the classifier gave {result:?}"
        ),
        Json::SkipsOnly => {}
    }
}

fn check(request: &Request<'_>) {
    for fixture in shared::fixtures() {
        let classifier = &fixture.classifier;
        let name = fixture.name;
        let (method, path, headers) = (&request.method, &*request.path, &request.headers);
        let inspection = classifier.inspect(method, path, headers);
        fixture.check_route(inspection.route());
        let result = match inspection {
            Inspection::Decided(decision) => Ok(decision),
            Inspection::Unclassifiable(err) => {
                assert!(
                    !matches!(
                        err.reason,
                        UnclassifiableReason::InvalidJson(_)
                            | UnclassifiableReason::NotAnObject
                            | UnclassifiableReason::DuplicateKey(_)
                            | UnclassifiableReason::InvalidMarker(_)
                    ),
                    "{name}: a body reason from the head: {err:?}"
                );
                Err(err)
            }
            Inspection::NeedsBody(pending) => {
                let route = pending.route();
                let result = pending.finish(classifier, request.body);
                if let Err(err) = &result {
                    assert_eq!(err.route, route, "{name}: the route changed in finish");
                }
                if let Ok(decision) = &result {
                    assert_eq!(decision.route, route, "{name}: the route changed in finish");
                }
                check_finished(name, request.body, &result);
                result
            }
        };
        match &result {
            Ok(decision) => fixture.check_decision(decision),
            Err(err) => {
                fixture.check_route(err.route);
                assert!(!err.reason.code().is_empty());
            }
        }
        let again = classifier.classify(method, path, headers, request.body);
        assert_eq!(
            again, result,
            "{name}: classify differs from inspect + finish"
        );
    }
}

/// `inject_include_usage` keeps every other byte and the classification.
fn check_inject(body: &[u8]) {
    let Some(out) = inject_include_usage(body) else {
        return;
    };
    let Ok(mut want) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let got: serde_json::Value = match serde_json::from_slice(&out) {
        Ok(value) => value,
        Err(e) => panic!(
            "inject made invalid JSON ({e}): {:?}",
            String::from_utf8_lossy(&out)
        ),
    };
    let Some(object) = want.as_object_mut() else {
        panic!(
            "inject changed a non-object: {:?}",
            String::from_utf8_lossy(body)
        );
    };
    let options = object
        .entry("stream_options")
        .or_insert_with(|| serde_json::json!({}));
    if let Some(options) = options.as_object_mut() {
        options.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
    }
    assert_eq!(got, want, "inject changed more than stream_options");
    let headers = HeaderMap::new();
    for fixture in shared::fixtures() {
        let path = "/v1/chat/completions";
        let before = fixture
            .classifier
            .classify(&Method::POST, path, &headers, body);
        let after = fixture
            .classifier
            .classify(&Method::POST, path, &headers, &out);
        assert_eq!(
            before, after,
            "{}: inject changed the classification",
            fixture.name
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let request = parse(data);
    check(&request);
    check_inject(request.body);
    let _ = request_state_id(&request.path, Some(request.body));
});

//! Property tests of the classifier (issue #7), with bounded case counts so the file runs in
//! seconds in debug builds:
//!
//! - how a body is written never changes its decision (class, rule, marker, route): key order
//!   at every level, whitespace between tokens, compact or pretty, unrelated extra members
//!   (whose values may nest marker names where no rule looks), and JSON escapes in keys and
//!   string values, which the scanner decodes (`classify/body.rs`: keys are looked up
//!   decoded; README: "escaped keys are decoded"). A marker key written once plain and once
//!   escaped is therefore a duplicate and is refused;
//! - the decision on the chat completions and Responses routes is the one the rule table of
//!   `classify/mod.rs` names (a small model of the table), and embeddings ignore the body;
//! - any bytes as a body, and any method, path and headers, give a decision from the bounded
//!   sets or a clean refusal, never a panic;
//! - classifying the same request twice, or with a second classifier built from the same
//!   settings, gives the same result.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::fmt::Write as _;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Map, Value};
use switchyard::classify::{
    builtin_rule_names, Class, Classifier, ClassifierSettings, Decision, Inspection, MarkerKind,
    RuleSpec, Unclassifiable, UnclassifiableReason, DEFAULT_RULE,
};

// ---------------------------------------------------------------------------------------------
// Classifiers

fn settings(rules: Vec<RuleSpec>) -> ClassifierSettings {
    ClassifierSettings {
        base_path: "/v1".to_owned(),
        builtins: true,
        disabled_builtins: Vec::new(),
        rules,
    }
}

/// Operator rules with head and body conditions. Their body keys (`x_tenant`, `x_tier`) are
/// never generated as unrelated members.
fn operator_rules() -> Vec<RuleSpec> {
    let rule = |name: &str, class| RuleSpec {
        name: name.to_owned(),
        class,
        methods: Vec::new(),
        path: None,
        header_present: Vec::new(),
        header_equals: Vec::new(),
        body_present: Vec::new(),
        body_absent: Vec::new(),
        body_equals: Vec::new(),
    };
    vec![
        RuleSpec {
            methods: vec![Method::POST],
            path: Some("/v1/agents/{id}/*".parse().unwrap()),
            header_present: vec![HeaderName::from_static("x-tenant-session")],
            ..rule("tenant-sessions", Class::Stateful)
        },
        RuleSpec {
            methods: vec![Method::POST],
            body_present: vec!["/x_tenant/pin".parse().unwrap()],
            ..rule("pinned", Class::Stateful)
        },
        RuleSpec {
            methods: vec![Method::POST, Method::PUT],
            header_equals: vec![(
                HeaderName::from_static("x-tier"),
                HeaderValue::from_static("gold"),
            )],
            body_equals: vec![("/x_tier".parse().unwrap(), json!("gold"))],
            body_absent: vec!["/store".parse().unwrap()],
            ..rule("gold", Class::Stateless)
        },
    ]
}

/// The built-ins alone (the properties of body formatting), and with operator rules.
fn builtins() -> Classifier {
    Classifier::new(settings(Vec::new()))
}

fn with_rules() -> Classifier {
    Classifier::new(settings(operator_rules()))
}

/// Every rule name a decision of [`with_rules`] may carry.
fn rule_names() -> HashSet<String> {
    let mut names: HashSet<String> = builtin_rule_names().iter().map(|n| n.to_string()).collect();
    names.insert(DEFAULT_RULE.to_owned());
    names.extend(operator_rules().into_iter().map(|r| r.name));
    names
}

/// A result keeps the classifier's promises: a route from `route_labels()`, a known rule, a
/// `none` marker exactly for `default`; a refusal of the body only after a body was needed.
fn check_result(
    classifier: &Classifier,
    names: &HashSet<String>,
    result: &Result<Decision, Unclassifiable>,
) {
    let route = match result {
        Ok(decision) => {
            assert!(names.contains(&*decision.rule), "{decision:?}");
            assert_eq!(
                &*decision.rule == DEFAULT_RULE,
                decision.marker.kind == MarkerKind::Default && decision.class == Class::Stateless,
                "{decision:?}"
            );
            decision.route
        }
        Err(err) => {
            let codes = [
                "invalid_json",
                "not_an_object",
                "duplicate_key",
                "encoded_body",
                "invalid_marker",
                "ambiguous_path",
            ];
            assert!(codes.contains(&err.reason.code()), "{err:?}");
            err.route
        }
    };
    assert!(
        classifier.route_labels().any(|(id, _)| id == route),
        "route {route:?} is not in route_labels()"
    );
}

fn classify(classifier: &Classifier, path: &str, body: &[u8]) -> Result<Decision, Unclassifiable> {
    classifier.classify(&Method::POST, path, &HeaderMap::new(), body)
}

// ---------------------------------------------------------------------------------------------
// Bodies: logical members, and the many ways to write them

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Responses,
    Chat,
    Embeddings,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Route::Responses => "/v1/responses",
            Route::Chat => "/v1/chat/completions",
            Route::Embeddings => "/v1/embeddings",
        }
    }
}

/// Top-level members in the order written; keys are unique.
type Members = Vec<(String, Value)>;

fn optional(
    key: &'static str,
    values: Vec<Value>,
) -> impl Strategy<Value = Option<(String, Value)>> {
    let values = proptest::sample::select(values);
    proptest::option::weighted(0.4, values.prop_map(move |v| (key.to_owned(), v)))
}

fn text() -> impl Strategy<Value = String> {
    // Marker names and their values as plain text must never matter.
    prop_oneof![
        "\\PC{0,12}",
        Just("store".to_owned()),
        Just("item_reference".to_owned()),
        Just("\"previous_response_id\": \"resp_1\"".to_owned()),
        Just("\u{e9}\u{1F600}\\\n\t\"".to_owned()),
    ]
}

fn responses_input_item() -> impl Strategy<Value = Value> {
    prop_oneof![
        text()
            .prop_map(|t| json!({"role": "user", "content": [{"type": "input_text", "text": t}]})),
        text().prop_map(|t| json!({"type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": t, "annotations": []}]})),
        Just(json!({"role": "user", "content": [{"type": "input_file", "file_id": "file-abc"}]})),
        Just(
            json!({"role": "user", "content": [{"type": "input_image", "file_id": null, "image_url": "https://x/y.png"}]})
        ),
        Just(json!({"type": "item_reference", "id": "msg_123"})),
        Just(json!({"type": "function_call_output", "call_id": "c1", "output": "{\"ok\":true}"})),
        Just(json!({"type": "computer_call_output", "call_id": "c2",
            "output": {"type": "computer_screenshot", "file_id": "file-shot"}})),
    ]
}

fn tool() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"type": "function", "name": "lookup",
            "parameters": {"type": "object", "properties": {"store": {"type": "boolean"}}}})),
        Just(json!({"type": "web_search"})),
        Just(json!({"type": "file_search", "vector_store_ids": ["vs_1"]})),
        Just(json!({"type": "code_interpreter", "container": {"type": "auto"}})),
        Just(json!({"type": "code_interpreter", "container": "cntr_1"})),
        Just(json!({"type": "image_generation", "input_image_mask": {"file_id": "file-mask"}})),
        Just(json!({"type": "image_generation", "input_image_mask": {"image_url": "https://x"}})),
    ]
}

fn chat_message() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(|t| json!({"role": "user", "content": t})),
        text().prop_map(|t| json!({"role": "system", "content": [{"type": "text", "text": t}]})),
        Just(
            json!({"role": "user", "content": [{"type": "file", "file": {"file_id": "file-abc"}}]})
        ),
        Just(
            json!({"role": "user", "content": [{"type": "file", "file": {"file_data": "data:..."}}]})
        ),
        Just(
            json!({"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
            "type": "function", "function": {"name": "f", "arguments": "{\"store\":true}"}}]})
        ),
    ]
}

fn responses_body() -> impl Strategy<Value = Members> {
    let flags = vec![json!(true), json!(false), Value::Null];
    (
        optional("store", flags.clone()),
        optional(
            "previous_response_id",
            vec![json!("resp_68af"), Value::Null],
        ),
        optional(
            "conversation",
            vec![json!("conv_1"), json!({"id": "conv_1"}), Value::Null],
        ),
        optional("background", flags),
        optional(
            "prompt",
            vec![json!({"id": "pmpt_1", "version": "2"}), Value::Null],
        ),
        prop_oneof![
            Just(None),
            text().prop_map(|t| Some(("input".to_owned(), json!(t)))),
            proptest::collection::vec(responses_input_item(), 0..4)
                .prop_map(|items| Some(("input".to_owned(), Value::Array(items)))),
        ],
        proptest::option::of(
            proptest::collection::vec(tool(), 0..3)
                .prop_map(|tools| ("tools".to_owned(), Value::Array(tools))),
        ),
    )
        .prop_map(|(a, b, c, d, e, f, g)| {
            let mut members = vec![("model".to_owned(), json!("gpt-5"))];
            members.extend([a, b, c, d, e, f, g].into_iter().flatten());
            members
        })
}

fn chat_body() -> impl Strategy<Value = Members> {
    (
        optional("store", vec![json!(true), json!(false), Value::Null]),
        proptest::collection::vec(chat_message(), 0..4),
        proptest::option::of(
            proptest::collection::vec(tool(), 0..3)
                .prop_map(|tools| ("tools".to_owned(), Value::Array(tools))),
        ),
    )
        .prop_map(|(store, messages, tools)| {
            let mut members = vec![
                ("model".to_owned(), json!("gpt-4o")),
                ("messages".to_owned(), Value::Array(messages)),
            ];
            members.extend([store, tools].into_iter().flatten());
            members
        })
}

fn embeddings_body() -> impl Strategy<Value = Members> {
    (
        prop_oneof![
            text().prop_map(Value::String),
            proptest::collection::vec(text().prop_map(Value::String), 1..3).prop_map(Value::Array),
        ],
        // Markers of other routes mean nothing here.
        optional("store", vec![json!(true), json!("yes")]),
        optional("previous_response_id", vec![json!("resp_1")]),
    )
        .prop_map(|(input, store, previous)| {
            let mut members = vec![
                ("model".to_owned(), json!("text-embedding-3-small")),
                ("input".to_owned(), input),
                ("encoding_format".to_owned(), json!("float")),
            ];
            members.extend([store, previous].into_iter().flatten());
            members
        })
}

fn routed_body() -> impl Strategy<Value = (Route, Members)> {
    prop_oneof![
        2 => responses_body().prop_map(|m| (Route::Responses, m)),
        2 => chat_body().prop_map(|m| (Route::Chat, m)),
        1 => embeddings_body().prop_map(|m| (Route::Embeddings, m)),
    ]
}

/// Any JSON value, with marker names among its keys and strings (they sit where no rule
/// looks, so they must not count).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    let key = prop_oneof![
        "[a-z_]{1,8}",
        Just("store".to_owned()),
        Just("previous_response_id".to_owned()),
        Just("file_id".to_owned()),
        Just("type".to_owned()),
        Just("input".to_owned()),
    ];
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Unrelated top-level members: observability fields and other keys no rule reads.
fn extras() -> impl Strategy<Value = Members> {
    let key = prop_oneof![
        proptest::sample::select(vec![
            "metadata",
            "user",
            "safety_identifier",
            "prompt_cache_key",
            "service_tier",
            "include",
            "temperature",
            "top_p",
            "max_output_tokens",
            "parallel_tool_calls",
            "truncation",
            "reasoning",
            "stream",
            "stream_options",
            "seed",
            "n",
        ])
        .prop_map(str::to_owned),
        "x-[a-z]{1,6}",
    ];
    proptest::collection::vec((key, any_json()), 0..5)
}

/// How a document is written: whitespace runs taken in turn between tokens, a seed that
/// orders the keys of nested objects, and which characters of keys and strings are escaped.
#[derive(Clone, Debug)]
struct Style {
    whitespace: Vec<String>,
    order_seed: u64,
    escape_seed: u64,
    escape_keys: bool,
    escape_strings: bool,
}

fn style() -> impl Strategy<Value = Style> {
    (
        proptest::collection::vec("[ \t\r\n]{0,3}", 1..8),
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(whitespace, order_seed, escape_seed, escape_keys, escape_strings)| Style {
                whitespace,
                order_seed,
                escape_seed,
                escape_keys,
                escape_strings,
            },
        )
}

fn hash(seed: u64, text: &str, extra: u64) -> u64 {
    // FNV-1a: stable and good enough to shuffle a handful of keys.
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed ^ extra.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

struct Writer<'s> {
    style: &'s Style,
    out: String,
    turn: usize,
}

impl Writer<'_> {
    fn ws(&mut self) {
        let run = &self.style.whitespace[self.turn % self.style.whitespace.len()];
        self.turn += 1;
        self.out.push_str(run);
    }

    /// A JSON string; with `escape`, some characters (chosen by the seed) as `\uXXXX`.
    fn string(&mut self, s: &str, escape: bool) {
        self.out.push('"');
        for (i, c) in s.chars().enumerate() {
            let forced = matches!(c, '"' | '\\') || (c as u32) < 0x20;
            if forced || (escape && hash(self.style.escape_seed, s, i as u64).is_multiple_of(2)) {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(self.out, "\\u{unit:04x}").unwrap();
                }
            } else {
                self.out.push(c);
            }
        }
        self.out.push('"');
    }

    fn members<'v>(&mut self, members: impl IntoIterator<Item = (&'v String, &'v Value)>) {
        self.out.push('{');
        let mut first = true;
        for (key, value) in members {
            if !first {
                self.ws();
                self.out.push(',');
            }
            first = false;
            self.ws();
            self.string(key, self.style.escape_keys);
            self.ws();
            self.out.push(':');
            self.ws();
            self.value(value);
        }
        self.ws();
        self.out.push('}');
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_by_key(|(k, _)| hash(self.style.order_seed, k, 0));
                self.members(entries);
            }
            Value::Array(items) => {
                self.out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.ws();
                        self.out.push(',');
                    }
                    self.ws();
                    self.value(item);
                }
                self.ws();
                self.out.push(']');
            }
            Value::String(s) => self.string(s, self.style.escape_strings),
            other => self.out.push_str(&other.to_string()),
        }
    }
}

/// `members` (top level in the given order) written in `style`.
fn write_body(members: &Members, style: &Style) -> String {
    let mut writer = Writer {
        style,
        out: String::new(),
        turn: 0,
    };
    writer.ws();
    writer.members(members.iter().map(|(k, v)| (k, v)));
    writer.ws();
    writer.out
}

fn compact(members: &Members) -> String {
    let map: Map<String, Value> = members.iter().cloned().collect();
    serde_json::to_string(&Value::Object(map)).unwrap()
}

fn pretty(members: &Members) -> String {
    let map: Map<String, Value> = members.iter().cloned().collect();
    serde_json::to_string_pretty(&Value::Object(map)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// A model of the rule table (classify/mod.rs) for the generated bodies

/// Whether a value `pointer` reaches (`*`: every element of an array) is present, not null.
fn reaches(value: &Value, pointer: &[&str], test: &dyn Fn(&Value) -> bool) -> bool {
    match pointer.split_first() {
        None => test(value),
        Some((&"*", rest)) => value
            .as_array()
            .is_some_and(|items| items.iter().any(|v| reaches(v, rest, test))),
        Some((key, rest)) => value
            .as_object()
            .and_then(|m| m.get(*key))
            .is_some_and(|v| reaches(v, rest, test)),
    }
}

fn present(body: &Value, pointer: &str) -> bool {
    let segs: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    reaches(body, &segs, &|v| !v.is_null())
}

fn equals(body: &Value, pointer: &str, want: &Value) -> bool {
    let segs: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    reaches(body, &segs, &|v| v == want)
}

/// The rule (and class) the table gives a generated body on `route`.
fn expected(route: Route, body: &Value) -> (&'static str, Class) {
    use Class::{Stateful, Stateless};
    let file_reference = [
        "/input/*/content/*/file_id",
        "/input/*/output/*/file_id",
        "/input/*/output/file_id",
        "/messages/*/content/*/file/file_id",
        "/messages/*/content/*/file_id",
        "/messages/*/content/*/source/file_id",
        "/messages/*/content/*/content/*/source/file_id",
        "/tools/*/input_image_mask/file_id",
    ]
    .iter()
    .any(|p| present(body, p));
    let references = [
        (file_reference, "body.file_reference"),
        (
            present(body, "/tools/*/vector_store_ids"),
            "body.vector_store",
        ),
        (present(body, "/tools/*/container"), "body.container"),
        (
            equals(body, "/input/*/type", &json!("item_reference")),
            "body.item_reference",
        ),
    ];
    let reference = references
        .iter()
        .find(|(hit, _)| *hit)
        .map(|(_, rule)| *rule);
    match route {
        Route::Embeddings => ("stateless.endpoints", Stateless),
        Route::Responses => {
            let chain = [
                (
                    present(body, "/previous_response_id"),
                    "responses.previous_response_id",
                ),
                (present(body, "/conversation"), "responses.conversation"),
                (
                    equals(body, "/background", &json!(true)),
                    "responses.background",
                ),
                (present(body, "/prompt"), "responses.prompt"),
            ];
            if let Some((_, rule)) = chain.iter().find(|(hit, _)| *hit) {
                return (rule, Stateful);
            }
            if let Some(rule) = reference {
                return (rule, Stateful);
            }
            if equals(body, "/store", &json!(false)) {
                ("responses.stateless", Stateless)
            } else {
                ("responses.store", Stateful)
            }
        }
        Route::Chat => {
            if equals(body, "/store", &json!(true)) {
                return ("chat.store", Stateful);
            }
            match reference {
                Some(rule) => (rule, Stateful),
                None => ("chat.stateless", Stateless),
            }
        }
    }
}

/// `extras` whose keys the body does not have yet, inserted at positions chosen by `at`.
fn merge(members: &Members, extras: &Members, at: &[Index]) -> Members {
    let mut out = members.clone();
    for (i, (key, value)) in extras.iter().enumerate() {
        if out.iter().any(|(k, _)| k == key) {
            continue;
        }
        let position = at.get(i).map_or(out.len(), |ix| ix.index(out.len() + 1));
        out.insert(position, (key.clone(), value.clone()));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    /// Order, whitespace, pretty or compact, unrelated members and escapes never change a
    /// body's decision; the decision is the table's.
    #[test]
    fn how_a_body_is_written_never_changes_its_decision(
        (route, members) in routed_body(),
        shuffled in any::<u64>(),
        style in style(),
        extra in extras(),
        at in proptest::collection::vec(any::<Index>(), 5),
    ) {
        let classifier = builtins();
        let path = route.path();
        let baseline = classify(&classifier, path, compact(&members).as_bytes());
        let decision = match &baseline {
            Ok(decision) => decision.clone(),
            Err(err) => panic!("{route:?} {members:?}: {err}"),
        };
        let value = Value::Object(members.iter().cloned().collect());
        let (rule, class) = expected(route, &value);
        prop_assert_eq!(&*decision.rule, rule, "{:?}", value);
        prop_assert_eq!(decision.class, class);

        let mut reordered = members.clone();
        reordered.sort_by_key(|(k, _)| hash(shuffled, k, 1));
        let merged = merge(&reordered, &extra, &at);
        let plain = Style { escape_keys: false, escape_strings: false, ..style.clone() };
        let variants = [
            ("pretty", pretty(&members)),
            ("reordered", write_body(&reordered, &plain)),
            ("extra members", write_body(&merged, &plain)),
            ("escaped", write_body(&merged, &style)),
        ];
        for (name, body) in &variants {
            let got = classify(&classifier, path, body.as_bytes());
            prop_assert_eq!(&got, &baseline, "{}: {}", name, body);
        }
        // The same request twice, and on a second classifier: the same decision.
        let body = &variants[3].1;
        let again = classify(&builtins(), path, body.as_bytes());
        prop_assert_eq!(&classify(&classifier, path, body.as_bytes()), &again);
    }

    /// A marker key written twice, once escaped, is one key twice: refused as a duplicate.
    /// An unrelated key written the same way is not looked at, so not refused.
    #[test]
    fn an_escaped_marker_key_is_the_same_key(
        marker in proptest::sample::select(vec![
            "store", "previous_response_id", "conversation", "background", "prompt",
        ]),
        unrelated in proptest::sample::select(vec!["metadata", "user", "temperature"]),
        style in style(),
        escaped_first in any::<bool>(),
    ) {
        let classifier = builtins();
        let escaped = Style { escape_keys: true, escape_strings: false, ..style.clone() };
        // At least one character escaped, whatever the seed.
        let mut writer = Writer { style: &escaped, out: String::new(), turn: 0 };
        writer.string(marker, true);
        let key = if writer.out == format!("\"{marker}\"") {
            let mut chars = marker.chars();
            let first = chars.next().unwrap();
            format!("\"\\u{:04x}{}\"", first as u32, chars.as_str())
        } else {
            writer.out
        };
        let value = if marker == "store" || marker == "background" { "false" } else { "null" };
        let (a, b) = (format!("{key}:{value}"), format!("\"{marker}\":{value}"));
        let (first, second) = if escaped_first { (a, b) } else { (b, a) };
        let body = format!("{{\"model\":\"m\",{first},\"input\":\"hi\",{second}}}");
        let got = classify(&classifier, "/v1/responses", body.as_bytes());
        prop_assert!(
            matches!(&got, Err(e) if e.reason == UnclassifiableReason::DuplicateKey(format!("/{marker}"))),
            "{} -> {:?}", body, got
        );

        let mut writer = Writer { style: &escaped, out: String::new(), turn: 0 };
        writer.string(unrelated, true);
        let body = format!("{{{}:1,\"{unrelated}\":2,\"store\":false}}", writer.out);
        let got = classify(&classifier, "/v1/responses", body.as_bytes());
        prop_assert_eq!(got.map(|d| d.rule.to_string()).ok(), Some("responses.stateless".to_owned()), "{}", body);
    }
}

/// Bytes near JSON: a written body with a few bytes replaced, inserted or removed.
fn mangled() -> impl Strategy<Value = Vec<u8>> {
    let edits = proptest::collection::vec((any::<Index>(), any::<u8>(), 0u8..3), 1..4);
    ((routed_body(), style()), edits).prop_map(|(((_, members), style), edits)| {
        let mut bytes = write_body(&members, &style).into_bytes();
        for (at, byte, kind) in edits {
            let i = at.index(bytes.len() + 1);
            match kind {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ if i < bytes.len() => {
                    bytes.remove(i);
                }
                _ => bytes.push(byte),
            }
        }
        bytes
    })
}

fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        mangled(),
        "[\\[\\]{}\",:0-9a-z \\\\]{0,64}".prop_map(String::into_bytes),
        any_json().prop_map(|v| v.to_string().into_bytes()),
    ]
}

const BODY_PATHS: &[&str] = &[
    "/v1/responses",
    "/v1/responses/input_tokens",
    "/v1/responses/compact",
    "/v1/chat/completions",
    "/v1/messages",
    "/v1/embeddings",
    "/v1/agents/a/b",
    "/openai/deployments/d/chat/completions?api-version=2024-10-21",
];

fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        proptest::sample::select(vec![
            "v1",
            "openai",
            "deployments",
            "responses",
            "input_tokens",
            "compact",
            "chat",
            "completions",
            "conversations",
            "files",
            "content",
            "threads",
            "runs",
            "realtime",
            "models",
            "embeddings",
            "messages",
            "batches",
            "model",
            "converse",
            "invoke",
            "async-invoke",
            "runtimes",
            "invocations",
            "agents",
            "resp_1",
            "Responses",
            "V1",
            "",
            ".",
            "..",
            "%2e",
            "%2F",
            "%2f",
            "%5C",
            "%3B",
            ";",
            "%",
            "%zz",
            "%72esponses",
            "arn%3Aaws%3Ax%3Aruntime%2Fa",
            "a%00b",
            "\u{e9}",
        ])
        .prop_map(str::to_owned),
        "[!-~]{0,6}",
    ];
    prop_oneof![
        4 => (proptest::collection::vec(segment, 0..7), proptest::option::of("[!-~]{0,8}"))
            .prop_map(|(segs, query)| {
                let mut path = format!("/{}", segs.join("/"));
                if let Some(query) = query {
                    path.push('?');
                    path.push_str(&query);
                }
                path
            }),
        1 => any::<String>(),
        1 => "\\PC{0,40}",
    ]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        proptest::sample::select(vec![
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::HEAD,
            Method::OPTIONS,
        ]),
        "[A-Za-z]{1,8}".prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap()),
    ]
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    let name = prop_oneof![
        proptest::sample::select(vec![
            "mcp-session-id",
            "x-amzn-bedrock-agentcore-runtime-session-id",
            "upgrade",
            "connection",
            "content-encoding",
            "anthropic-version",
            "x-tenant-session",
            "x-tier",
            "content-type",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9-]{1,12}",
    ];
    let value = prop_oneof![
        proptest::sample::select(vec![
            "",
            " ",
            "\t",
            "websocket",
            "WebSocket, h2c",
            "gzip",
            "identity",
            "identity, br",
            "gold",
            "sess-1",
            "2023-06-01",
        ])
        .prop_map(str::to_owned),
        "[ -~]{0,16}",
    ];
    proptest::collection::vec((name, value), 0..5).prop_map(|pairs| {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.append(n, v);
            }
        }
        headers
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any bytes as the body of any body route: a decision or a refusal naming the body (or
    /// the path/encoding), never a panic; and the same again on a second run.
    #[test]
    fn any_body_gives_a_decision_or_a_clean_refusal(
        body in body_bytes(),
        path in proptest::sample::select(BODY_PATHS),
    ) {
        let classifier = with_rules();
        let names = rule_names();
        let mut headers = HeaderMap::new();
        headers.insert("x-tier", HeaderValue::from_static("gold"));
        let inspection = classifier.inspect(&Method::POST, path, &headers);
        let route = inspection.route();
        let result = match inspection {
            Inspection::Decided(decision) => Ok(decision),
            Inspection::Unclassifiable(err) => Err(err),
            Inspection::NeedsBody(pending) => pending.finish(&classifier, &body),
        };
        check_result(&classifier, &names, &result);
        if let Err(err) = &result {
            prop_assert_eq!(err.route, route);
        }
        // Every POST reads the body here (rule `pinned` has a body condition on any path), so
        // a body serde_json cannot even skip is never classified.
        if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
            prop_assert!(result.is_err(), "{:?} classified {:?} on {}", String::from_utf8_lossy(&body), result, path);
        }
        prop_assert_eq!(&classifier.classify(&Method::POST, path, &headers, &body), &result);
        prop_assert_eq!(&with_rules().classify(&Method::POST, path, &headers, &body), &result);
    }

    /// Any method, path and headers: a decision, a body request or a refusal, never a panic;
    /// the route is from the bounded set; the same again on a second run and classifier.
    #[test]
    fn any_head_gives_a_decision_or_a_clean_refusal(
        method in method(),
        path in path(),
        headers in headers(),
        body in prop_oneof![
            Just(b"{}".to_vec()),
            Just(br#"{"store":false,"x_tenant":{"pin":1}}"#.to_vec()),
            body_bytes(),
        ],
    ) {
        let classifier = with_rules();
        let names = rule_names();
        let inspection = classifier.inspect(&method, &path, &headers);
        let route = inspection.route();
        let result = match inspection {
            Inspection::Decided(decision) => Ok(decision),
            Inspection::Unclassifiable(err) => {
                prop_assert!(
                    matches!(err.reason, UnclassifiableReason::AmbiguousPath | UnclassifiableReason::Encoded(_)),
                    "{:?}", err
                );
                Err(err)
            }
            Inspection::NeedsBody(pending) => pending.finish(&classifier, &body),
        };
        check_result(&classifier, &names, &result);
        match &result {
            Ok(decision) => prop_assert_eq!(decision.route, route),
            Err(err) => prop_assert_eq!(err.route, route),
        }
        prop_assert_eq!(&classifier.classify(&method, &path, &headers, &body), &result);
        prop_assert_eq!(&with_rules().classify(&method, &path, &headers, &body), &result);
    }
}

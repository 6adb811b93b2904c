//! Structure-aware config fuzzing: a valid config (the shipped files and a fixture with every
//! kind of operator rule) parsed into a TOML tree, then mutated where the values are (replace
//! a value, remove or add a key, duplicate an array element) with values chosen to sit on the
//! edges of the validators (durations, sizes, addresses, URLs, header names, pointers, path
//! patterns, huge and negative numbers). The text it prints goes through
//! `Config::from_toml_str_with_env` (every `${VAR}` resolves): an error or a config, never a
//! panic. A config that validates must also build its classifiers (main and shadow) and
//! classify a few requests.
#![no_main]

use arbitrary::{Result, Unstructured};
use http::{HeaderMap, Method};
use libfuzzer_sys::fuzz_target;
use switchyard::classify::Classifier;
use switchyard::config::Config;
use toml::Value;

/// Valid starting points. Upstreams use plain HTTP where the original does not need TLS, so
/// most runs do not load the platform's trust store.
const SEEDS: &[&str] = &[
    include_str!("../../config/switchyard.toml"),
    include_str!("../../config/demo.toml"),
    include_str!("../../config/reference.toml"),
    include_str!("../../config/azure-bedrock-api-key.toml"),
    include_str!("../../config/azure-bedrock-sigv4.toml"),
    include_str!("../corpus/config/fixture-rules.toml"),
];

const KEYS: &[&str] = &[
    "access_log",
    "accounting",
    "admin",
    "affinity",
    "allow_plain",
    "api_key",
    "api_version",
    "audit",
    "auth",
    "balance",
    "base_path",
    "bearer_token",
    "bearer_token_file",
    "body_absent",
    "body_equals",
    "body_present",
    "builtins",
    "ca",
    "capacity",
    "cert",
    "class",
    "classifier",
    "client_ca",
    "connect",
    "danger_accept_invalid_certs",
    "decision_headers",
    "deployments",
    "disable",
    "drain_timeout",
    "eject_after",
    "eject_for",
    "endpoints",
    "first_byte",
    "format",
    "forward_client_credentials",
    "h2_max_concurrent_streams",
    "header_equals",
    "header_present",
    "header_read_timeout",
    "health",
    "http2",
    "idle",
    "inject_include_usage",
    "interval",
    "key",
    "kind",
    "level",
    "limits",
    "listen",
    "log",
    "max_body_bytes",
    "max_connections",
    "max_header_bytes",
    "methods",
    "models",
    "name",
    "on_endpoint_down",
    "on_full",
    "path",
    "queue",
    "region",
    "reload",
    "request",
    "retries",
    "routing",
    "rules",
    "server",
    "service",
    "session_headers",
    "set_headers",
    "shadow",
    "stateful",
    "stateless",
    "store",
    "timeout",
    "timeouts",
    "tls",
    "tokens",
    "ttl",
    "unclassifiable",
    "url",
    "watch",
    "weight",
    "workers",
];

const STRINGS: &[&str] = &[
    "",
    " ",
    "0",
    "0s",
    "1ms",
    "100ms",
    "1ns",
    "30s",
    "5m",
    "30d",
    "18446744073709551615s",
    "999999999999h",
    "-1s",
    "1.5s",
    "0 B",
    "1 B",
    "32 MiB",
    "1 TiB",
    "16 EiB",
    "99999999999 GiB",
    "-1",
    "127.0.0.1:0",
    "127.0.0.1:8080",
    "[::1]:8080",
    "0.0.0.0:65535",
    "127.0.0.1:65536",
    "localhost:80",
    "http://127.0.0.1:18081/v1",
    "https://example.com/openai/v1",
    "http://127.0.0.1:1/openai/deployments",
    "http://[::1]:1/",
    "ftp://x/",
    "http://",
    "http://${DEMO_PRIMARY}/v1",
    "${UNSET_VAR}",
    "$$",
    "${",
    "/v1",
    "/",
    "//",
    "/v1/",
    "/a/../b",
    "/v1/agents/{id}/*",
    "/v1/*/x",
    "/{",
    "/{}",
    "/%2F",
    "/%zz",
    "/v1/custom/{kind}/*",
    "/metadata/pin",
    "/input/*/type",
    "/input/0/x",
    "/a~1b/~0",
    "~2",
    "*",
    "/tools/*",
    "x-tenant-session",
    "mcp-session-id",
    "Bad Header",
    "connection",
    "host",
    "content-length",
    "stateful",
    "stateless",
    "reject",
    "POST",
    "GET",
    "get",
    "BAD METHOD",
    "p2c",
    "round_robin",
    "redis",
    "memory",
    "fail",
    "rebalance",
    "block",
    "drop",
    "json",
    "human",
    "info",
    "trace",
    "openai",
    "azure_openai",
    "bedrock",
    "sigv4",
    "api_key",
    "responses.store",
    "default",
    "chat.store",
    "nonexistent.rule",
    "primary",
    "secondary",
    "redis://127.0.0.1:6379/0",
    "audit/x.jsonl",
    "\u{0}",
    "\n",
    "é",
    "\u{202e}",
];

/// A value on the edges of the validators, or anything.
fn value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    Ok(match u.int_in_range(0..=9u8)? {
        0..=3 => Value::String((*u.choose(STRINGS)?).to_owned()),
        4 => Value::String(u.arbitrary()?),
        5 => Value::Integer(*u.choose(&[
            0,
            1,
            -1,
            2,
            100,
            256,
            257,
            65535,
            65536,
            i64::from(u32::MAX),
            i64::MAX,
            i64::MIN,
        ])?),
        6 => Value::Integer(u.arbitrary()?),
        7 => Value::Boolean(u.arbitrary()?),
        8 if depth < 2 => {
            let n = u.int_in_range(0..=3u8)?;
            Value::Array((0..n).map(|_| value(u, depth + 1)).collect::<Result<_>>()?)
        }
        8 => Value::Float(u.arbitrary()?),
        _ if depth < 2 => {
            let mut table = toml::map::Map::new();
            for _ in 0..u.int_in_range(0..=3u8)? {
                table.insert((*u.choose(KEYS)?).to_owned(), value(u, depth + 1)?);
            }
            Value::Table(table)
        }
        _ => Value::String(u.arbitrary()?),
    })
}

/// Every place a mutation may act on: the path of keys and array indexes to a value.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

fn places(value: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    out.push(at.clone());
    match value {
        Value::Table(table) => {
            for (key, child) in table {
                at.push(Step::Key(key.clone()));
                places(child, at, out);
                at.pop();
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                at.push(Step::Index(i));
                places(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn get_mut<'v>(mut value: &'v mut Value, path: &[Step]) -> Option<&'v mut Value> {
    for step in path {
        value = match (step, value) {
            (Step::Key(key), Value::Table(table)) => table.get_mut(key)?,
            (Step::Index(i), Value::Array(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

fn mutate(u: &mut Unstructured<'_>, doc: &mut Value) -> Result<()> {
    let mut all = Vec::new();
    places(doc, &mut Vec::new(), &mut all);
    let path = u.choose(&all)?.clone();
    let action = u.int_in_range(0..=5u8)?;
    let new = value(u, 0)?;
    if action == 4 {
        // Remove the value from its parent.
        if let Some((last, parent)) = path.split_last() {
            match (last, get_mut(doc, parent)) {
                (Step::Key(key), Some(Value::Table(table))) => {
                    table.remove(key);
                }
                (Step::Index(i), Some(Value::Array(items))) if *i < items.len() => {
                    items.remove(*i);
                }
                _ => {}
            }
        }
        return Ok(());
    }
    let key = (*u.choose(KEYS)?).to_owned();
    let Some(target) = get_mut(doc, &path) else {
        return Ok(());
    };
    match (action, target) {
        (5, Value::Table(table)) => {
            table.insert(key, new);
        }
        (5, Value::Array(items)) => {
            if let Some(first) = items.first().cloned() {
                items.push(first);
            }
        }
        (_, target) => *target = new,
    }
    Ok(())
}

fn check(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let seed = *u.choose(SEEDS)?;
    let Ok(mut doc) = seed.parse::<Value>() else {
        panic!("a seed config is not TOML");
    };
    for _ in 0..u.int_in_range(1..=4u8)? {
        mutate(&mut u, &mut doc)?;
    }
    let Ok(text) = toml::to_string(&doc) else {
        return Ok(());
    };
    let lookup = |name: &str| match name {
        "DEMO_PRIMARY" | "DEMO_SECONDARY" => Some("127.0.0.1:18081".to_owned()),
        "UNSET_VAR" => None,
        _ => Some("fuzz-secret".to_owned()),
    };
    match Config::from_toml_str_with_env(&text, &lookup) {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(config) => {
            let headers = HeaderMap::new();
            let body = br#"{"model":"m","store":false,"metadata":{"pin":"x"},"input":[{"type":"item_reference"}]}"#;
            for settings in std::iter::once(config.classifier).chain(config.shadow) {
                let classifier = Classifier::new(settings);
                for path in [
                    "/v1/responses",
                    "/v1/chat/completions",
                    "/v1/agents/a/b",
                    "/x",
                ] {
                    let _ = classifier.classify(&Method::POST, path, &headers, body);
                }
                assert!(classifier.route_labels().count() > 0);
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(data);
});

//! Route labels: bounded whatever the client sends, dense ids, expected templates present.

use std::collections::HashSet;

use super::super::{Classifier, RouteId};
use super::{classifier, run, settings};

const WORDS: &[&str] = &[
    "v1",
    "openai",
    "deployments",
    "responses",
    "conversations",
    "items",
    "chat",
    "completions",
    "messages",
    "batches",
    "files",
    "content",
    "model",
    "converse",
    "runtimes",
    "invocations",
    "async-invoke",
    "realtime",
    "calls",
    "threads",
    "runs",
    "steps",
    "models",
    "images",
    "audio",
    "input_tokens",
    "compact",
    "cancel",
    "input_items",
    "api",
    "",
    "%2F",
    "%zz",
    "a%20b",
    "x.y",
    "...",
    "{id}",
    "*",
    "other",
    "fine_tuning",
    "jobs",
    "vector_stores",
    "search",
];

/// A deterministic pseudo-random generator (no dependency needed).
fn lcg(state: &mut u64) -> usize {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*state >> 33) as usize
}

#[test]
fn random_paths_map_to_known_labels() {
    for c in [
        classifier(),
        Classifier::new(settings("/api")),
        Classifier::new(settings("")),
    ] {
        let known: HashSet<&str> = c.route_labels().map(|(_, l)| l).collect();
        assert!(known.contains("other"));
        assert!(known.len() < 700, "{} labels", known.len());
        let mut seen = HashSet::new();
        let mut state = 7u64;
        for _ in 0..20_000 {
            let depth = lcg(&mut state) % 9;
            let mut path = String::new();
            for _ in 0..depth {
                path.push('/');
                let pick = lcg(&mut state);
                if pick.is_multiple_of(5) {
                    path.push_str(&format!("id_{}", pick % 100_000));
                } else {
                    path.push_str(WORDS[pick % WORDS.len()]);
                }
            }
            let route = match run(&c, "GET", &path, &[], "") {
                Ok(d) => d.route,
                Err(e) => e.route,
            };
            let label = c.route_label(route);
            assert!(known.contains(label), "{path} → {label}");
            seen.insert(label.to_owned());
        }
        assert!(
            seen.len() > 20,
            "the generator should reach many templates: {seen:?}"
        );
    }
}

#[test]
fn ids_are_dense_and_labels_unique() {
    let c = classifier();
    let labels: Vec<(RouteId, &str)> = c.route_labels().collect();
    for (i, (id, label)) in labels.iter().enumerate() {
        assert_eq!(id.index(), i);
        assert_eq!(c.route_label(*id), *label);
    }
    let unique: HashSet<&str> = labels.iter().map(|(_, l)| *l).collect();
    assert_eq!(unique.len(), labels.len());
    assert_eq!(labels[0], (RouteId::OTHER, "other"));
    for expected in [
        "/v1/chat/completions",
        "/v1/responses/{id}",
        "/v1/responses/{id}/input_items",
        "/openai/deployments/{deployment}/chat/completions",
        "/openai/v1/files/{id}/content",
        "/openai/responses",
        "/model/{id}/converse",
        "/v1/model/{id}/converse",
        "/runtimes/{arn}/invocations",
        "/v1/messages/batches/*",
    ] {
        assert!(unique.contains(expected), "{expected}");
    }
    // Bedrock shapes live at the root and under the base only.
    assert!(!unique.contains("/openai/v1/model/{id}/converse"));
    assert!(!unique.contains("/runtimes/*/responses"));
    assert!(!unique.contains("/responses"));
}

/// `/v1` is a built-in prefix: a base of `/v1` is one prefix, and every base keeps a
/// bounded table of unique labels.
#[test]
fn the_v1_prefix_under_every_base() {
    let mut sizes = Vec::new();
    for base in [
        "/v1",
        "/api",
        "",
        "/openai/v1",
        "/openai",
        "/openai/deployments",
        "/v1/x",
        "/gateway/openai/v1",
    ] {
        let c = Classifier::new(settings(base));
        let labels: Vec<&str> = c.route_labels().map(|(_, l)| l).collect();
        let unique: HashSet<&str> = labels.iter().copied().collect();
        assert_eq!(
            unique.len(),
            labels.len(),
            "duplicate labels under {base:?}"
        );
        assert!(labels.len() < 700, "{base:?}: {} labels", labels.len());
        for label in ["/v1/responses", "/v1/responses/{id}", "/v1/files/*"] {
            let n = labels.iter().filter(|l| **l == label).count();
            assert_eq!(n, 1, "{label} under {base:?}");
        }
        // AWS routes under `/v1` only when it is the base.
        assert_eq!(
            unique.contains("/v1/model/{id}/converse"),
            base == "/v1",
            "{base:?}"
        );
        let d = run(&c, "POST", "/v1/responses", &[], r#"{"store":false}"#).unwrap();
        assert_eq!(c.route_label(d.route), "/v1/responses", "{base:?}");
        assert_eq!(&*d.rule, "responses.stateless", "{base:?}");
        sizes.push((base, labels.len()));
    }
    // A base of `/v1` adds no second copy of the `/v1` table.
    let size = |b: &str| sizes.iter().find(|(base, _)| *base == b).map(|(_, n)| *n);
    assert!(size("/v1") < size("/api"), "{sizes:?}");
}

#[test]
fn unknown_ids_fall_back_to_other() {
    let c = classifier();
    let beyond = c.route_labels().count();
    let id = c.route_labels().last().unwrap().0;
    assert!(id.index() + 1 == beyond);
    assert_eq!(c.route_label(RouteId(u16::MAX)), "other");
}

#[test]
fn very_long_paths_still_classify() {
    let c = classifier();
    let long: String = std::iter::repeat_n("/seg", 5_000).collect();
    let d = run(&c, "GET", &format!("/v1/files{long}"), &[], "").unwrap();
    assert_eq!(c.route_label(d.route), "/v1/files/*");
    assert_eq!(&*d.rule, "resources");
    let d = run(&c, "GET", &long, &[], "").unwrap();
    assert_eq!(c.route_label(d.route), "other");
    let err = run(&c, "GET", &format!("{long}/%2e%2e"), &[], "").unwrap_err();
    assert_eq!(err.reason.code(), "ambiguous_path");
}

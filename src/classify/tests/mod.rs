//! Tests of the classifier as a whole: one table row per built-in rule, body edge cases,
//! operator rules, route-label bounds and ambiguous paths.

mod body_edges;
mod builtin_table;
mod labels;
mod operator;
mod paths;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::{Class, Classifier, ClassifierSettings, Decision, Inspection, RuleSpec};

pub(super) fn settings(base: &str) -> ClassifierSettings {
    ClassifierSettings {
        base_path: base.to_owned(),
        builtins: true,
        disabled_builtins: Vec::new(),
        rules: Vec::new(),
    }
}

/// Built-ins on, base "/v1".
pub(super) fn classifier() -> Classifier {
    Classifier::new(settings("/v1"))
}

pub(super) fn with_rules(rules: Vec<RuleSpec>) -> Classifier {
    Classifier::new(ClassifierSettings {
        rules,
        ..settings("/v1")
    })
}

pub(super) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

pub(super) fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).unwrap()
}

/// Classifies and checks that `inspect` and `classify` agree.
pub(super) fn run(
    c: &Classifier,
    m: &str,
    path: &str,
    hdrs: &[(&str, &str)],
    body: &str,
) -> Result<Decision, super::Unclassifiable> {
    let (m, h) = (method(m), headers(hdrs));
    let result = c.classify(&m, path, &h, body.as_bytes());
    match c.inspect(&m, path, &h) {
        Inspection::Decided(d) => assert_eq!(Ok(&d), result.as_ref(), "{path}"),
        Inspection::Unclassifiable(u) => assert_eq!(Err(&u), result.as_ref(), "{path}"),
        Inspection::NeedsBody(p) => {
            assert_eq!(p.finish(c, body.as_bytes()), result, "{path}");
        }
    }
    result
}

/// One expected classification.
pub(super) struct Row {
    pub method: &'static str,
    pub path: &'static str,
    pub headers: &'static [(&'static str, &'static str)],
    pub body: &'static str,
    pub class: Class,
    pub rule: &'static str,
    /// `Marker`'s Display: "body:/store", "header:mcp-session-id", "none".
    pub marker: &'static str,
    pub route: &'static str,
}

/// Runs every row and reports all mismatches at once.
pub(super) fn check_rows(c: &Classifier, rows: &[Row]) {
    let mut failures = Vec::new();
    for row in rows {
        let got = match run(c, row.method, row.path, row.headers, row.body) {
            Ok(d) => format!(
                "{} {} {} {}",
                d.class,
                d.rule,
                d.marker,
                c.route_label(d.route)
            ),
            Err(e) => format!("unclassifiable: {e}"),
        };
        let want = format!("{} {} {} {}", row.class, row.rule, row.marker, row.route);
        if got != want {
            failures.push(format!(
                "{} {} {:?} {}\n    want {want}\n    got  {got}",
                row.method, row.path, row.headers, row.body
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

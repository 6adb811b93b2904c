//! Operator rules: each condition kind, AND, first match, order against the built-ins,
//! when the body is needed, disabled built-ins and `builtins = false`.

use http::{HeaderName, HeaderValue, Method};
use serde_json::json;

use super::super::{
    Class, Classifier, ClassifierSettings, Inspection, MarkerKind, RuleSpec,
    UnclassifiableReason as Why,
};
use super::{classifier, headers, method, run, settings, with_rules};

fn rule(name: &str, class: Class) -> RuleSpec {
    RuleSpec {
        name: name.to_owned(),
        class,
        methods: Vec::new(),
        path: None,
        header_present: Vec::new(),
        header_equals: Vec::new(),
        body_present: Vec::new(),
        body_absent: Vec::new(),
        body_equals: Vec::new(),
    }
}

fn hname(s: &str) -> HeaderName {
    HeaderName::from_bytes(s.as_bytes()).unwrap()
}

/// (class, rule, marker) or the refusal code.
fn outcome(c: &Classifier, m: &str, path: &str, h: &[(&str, &str)], body: &str) -> String {
    match run(c, m, path, h, body) {
        Ok(d) => format!("{} {} {}", d.class, d.rule, d.marker),
        Err(e) => e.reason.code().to_owned(),
    }
}

#[test]
fn each_head_condition_kind() {
    let mut by_method = rule("by-method", Class::Stateful);
    by_method.methods = vec![Method::PUT, Method::PATCH];
    let mut by_path = rule("by-path", Class::Stateful);
    by_path.path = Some("/v1/custom/{id}/*".parse().unwrap());
    let mut by_header = rule("by-header", Class::Stateful);
    by_header.header_present = vec![hname("x-sticky")];
    let mut by_value = rule("by-value", Class::Stateful);
    by_value.header_equals = vec![(hname("x-tier"), HeaderValue::from_static("gold"))];
    let c = with_rules(vec![by_method, by_path, by_header, by_value]);

    assert_eq!(outcome(&c, "PUT", "/x", &[], ""), "stateful by-method none");
    assert_eq!(outcome(&c, "GET", "/x", &[], ""), "stateless default none");
    assert_eq!(
        outcome(&c, "GET", "/v1/custom/a/b/c", &[], ""),
        "stateful by-path path:/v1/custom/{id}/*"
    );
    assert_eq!(
        outcome(&c, "GET", "/v1/custom/a/", &[], ""),
        "stateful by-path path:/v1/custom/{id}/*"
    );
    // Ambiguous paths are refused before any operator rule.
    assert_eq!(
        outcome(&c, "GET", "//v1/custom/a/", &[], ""),
        "ambiguous_path"
    );
    assert_eq!(
        outcome(&c, "GET", "/v1/custom", &[], ""),
        "stateless default none"
    );
    assert_eq!(
        outcome(&c, "GET", "/x", &[("X-Sticky", "")], ""),
        "stateful by-header header:x-sticky"
    );
    assert_eq!(
        outcome(
            &c,
            "GET",
            "/x",
            &[("x-tier", "silver"), ("x-tier", "gold")],
            ""
        ),
        "stateful by-value header:x-tier"
    );
    assert_eq!(
        outcome(&c, "GET", "/x", &[("x-tier", "Gold")], ""),
        "stateless default none"
    );
}

#[test]
fn each_body_condition_kind() {
    let mut present = rule("present", Class::Stateful);
    present.path = Some("/v1/custom".parse().unwrap());
    present.body_present = vec!["/metadata/tier".parse().unwrap()];
    let mut absent = rule("absent", Class::Stateful);
    absent.path = Some("/v1/absent".parse().unwrap());
    absent.body_absent = vec!["/session".parse().unwrap()];
    let mut equals = rule("equals", Class::Stateful);
    equals.path = Some("/v1/equals".parse().unwrap());
    equals.body_equals = vec![
        ("/mode".parse().unwrap(), json!("sticky")),
        ("/n".parse().unwrap(), json!(1)),
        ("/flag".parse().unwrap(), json!(true)),
        ("/gone".parse().unwrap(), json!(null)),
    ];
    let c = with_rules(vec![present, absent, equals]);

    let p = |body: &str| outcome(&c, "POST", "/v1/custom", &[], body);
    assert_eq!(
        p(r#"{"metadata":{"tier":"a"}}"#),
        "stateful present body:/metadata/tier"
    );
    assert_eq!(p(r#"{"metadata":{"tier":null}}"#), "stateless default none");
    assert_eq!(p(r#"{"metadata":{}}"#), "stateless default none");
    assert_eq!(p(r#"{"tier":"a"}"#), "stateless default none");
    assert_eq!(p("[]"), "not_an_object");

    let a = |body: &str| outcome(&c, "POST", "/v1/absent", &[], body);
    assert_eq!(a("{}"), "stateful absent body:/session");
    assert_eq!(a(r#"{"session":null}"#), "stateful absent body:/session");
    assert_eq!(a(r#"{"session":"s"}"#), "stateless default none");

    let e = |body: &str| outcome(&c, "POST", "/v1/equals", &[], body);
    let all = r#"{"mode":"sticky","n":1,"flag":true,"gone":null}"#;
    assert_eq!(e(all), "stateful equals body:/mode");
    assert_eq!(
        e(r#"{"mode":"st\u0069cky","n":1.0,"flag":true,"gone":null}"#),
        "stateful equals body:/mode"
    );
    assert_eq!(
        e(r#"{"mode":"sticky","n":1e0,"flag":true,"gone":null}"#),
        "stateful equals body:/mode"
    );
    assert_eq!(
        e(r#"{"mode":"sticky","n":2,"flag":true,"gone":null}"#),
        "stateless default none"
    );
    assert_eq!(
        e(r#"{"mode":"sticky","n":"1","flag":true,"gone":null}"#),
        "stateless default none"
    );
    assert_eq!(
        e(r#"{"mode":"sticky","n":1,"flag":1,"gone":null}"#),
        "stateless default none"
    );
    assert_eq!(
        e(r#"{"mode":"sticky","n":1,"flag":true}"#),
        "stateless default none"
    );
}

#[test]
fn all_conditions_must_hold_and_the_first_match_wins() {
    let mut both = rule("both", Class::Stateful);
    both.methods = vec![Method::POST];
    both.path = Some("/v1/embeddings".parse().unwrap());
    both.header_present = vec![hname("x-a")];
    both.body_equals = vec![("/input/0".parse().unwrap(), json!("pin"))];
    let mut second = rule("second", Class::Stateful);
    second.header_present = vec![hname("x-a")];
    let mut third = rule("third", Class::Stateless);
    third.header_present = vec![hname("x-a")];
    let c = with_rules(vec![both, second, third]);
    let pin = r#"{"input":["pin","b"]}"#;
    let o = |m: &str, h: &[(&str, &str)], body: &str| outcome(&c, m, "/v1/embeddings", h, body);
    assert_eq!(
        o("POST", &[("x-a", "1")], pin),
        "stateful both body:/input/0"
    );
    assert_eq!(
        o("POST", &[("x-a", "1")], r#"{"input":["b","pin"]}"#),
        "stateful second header:x-a"
    );
    assert_eq!(o("PUT", &[("x-a", "1")], pin), "stateful second header:x-a");
    assert_eq!(
        o("POST", &[], pin),
        "stateless stateless.endpoints path:/v1/embeddings"
    );
}

#[test]
fn operator_rules_come_before_builtins() {
    let mut gold = rule("tier-gold", Class::Stateless);
    gold.path = Some("/v1/responses".parse().unwrap());
    gold.header_equals = vec![(hname("x-tier"), HeaderValue::from_static("gold"))];
    let mut pinned = rule("pinned", Class::Stateful);
    pinned.path = Some("/v1/embeddings".parse().unwrap());
    let c = with_rules(vec![gold, pinned]);
    let gold = [("x-tier", "gold")];
    assert_eq!(
        outcome(&c, "POST", "/v1/responses", &gold, "not json"),
        "stateless tier-gold header:x-tier"
    );
    assert_eq!(
        outcome(&c, "POST", "/v1/embeddings", &[], "{}"),
        "stateful pinned path:/v1/embeddings"
    );
    // Even before the header built-ins.
    assert_eq!(
        outcome(
            &c,
            "POST",
            "/v1/responses",
            &[("x-tier", "gold"), ("mcp-session-id", "m")],
            ""
        ),
        "stateless tier-gold header:x-tier"
    );
    assert_eq!(
        outcome(
            &c,
            "POST",
            "/v1/responses",
            &[("x-tier", "silver")],
            r#"{"store":false}"#
        ),
        "stateless responses.stateless body:/store"
    );
}

#[test]
fn the_body_is_needed_only_when_head_conditions_match() {
    let mut custom = rule("custom", Class::Stateful);
    custom.methods = vec![Method::POST];
    custom.path = Some("/v1/custom/*".parse().unwrap());
    custom.body_present = vec!["/tier".parse().unwrap()];
    let c = with_rules(vec![custom]);
    let inspect = |m: &str, p: &str| c.inspect(&method(m), p, &headers(&[]));
    assert!(matches!(
        inspect("GET", "/v1/custom/x"),
        Inspection::Decided(_)
    ));
    assert!(matches!(
        inspect("POST", "/v1/models"),
        Inspection::Decided(_)
    ));
    let Inspection::NeedsBody(pending) = inspect("POST", "/v1/custom/x") else {
        panic!("needs body")
    };
    let d = pending.finish(&c, br#"{"tier":1}"#).unwrap();
    assert_eq!(
        (d.class, &*d.rule, d.marker.kind),
        (Class::Stateful, "custom", MarkerKind::Body)
    );
    // Not matching falls through to the default; a bad body is refused.
    assert_eq!(
        outcome(&c, "POST", "/v1/custom/x", &[], "{}"),
        "stateless default none"
    );
    assert_eq!(outcome(&c, "POST", "/v1/custom/x", &[], ""), "invalid_json");
    let gz = [("content-encoding", "gzip")];
    assert_eq!(
        outcome(&c, "POST", "/v1/custom/x", &gz, "{}"),
        "encoded_body"
    );
}

#[test]
fn finish_continues_with_later_rules_then_builtins() {
    let mut first = rule("first", Class::Stateless);
    first.path = Some("/v1/responses".parse().unwrap());
    first.body_equals = vec![("/metadata/route".parse().unwrap(), json!("primary"))];
    let mut second = rule("second", Class::Stateful);
    second.path = Some("/v1/responses".parse().unwrap());
    second.body_present = vec!["/metadata/pin".parse().unwrap()];
    let c = with_rules(vec![first, second]);
    let o = |body: &str| outcome(&c, "POST", "/v1/responses", &[], body);
    assert_eq!(
        o(r#"{"metadata":{"route":"primary"}}"#),
        "stateless first body:/metadata/route"
    );
    assert_eq!(
        o(r#"{"store":false,"metadata":{"pin":"x"}}"#),
        "stateful second body:/metadata/pin"
    );
    assert_eq!(
        o(r#"{"metadata":{}}"#),
        "stateful responses.store body:/store"
    );
    assert_eq!(
        o(r#"{"store":false}"#),
        "stateless responses.stateless body:/store"
    );
    // Body rules are evaluated before the built-ins refuse a non-boolean `store`.
    assert_eq!(
        o(r#"{"store":"no","metadata":{"pin":"x"}}"#),
        "stateful second body:/metadata/pin"
    );
    assert_eq!(o(r#"{"store":"no"}"#), "invalid_marker");
    // A head-decided built-in still waits for the earlier body rule.
    let mut any = rule("any-post", Class::Stateful);
    any.methods = vec![Method::POST];
    any.body_present = vec!["/pin".parse().unwrap()];
    let c = with_rules(vec![any]);
    assert_eq!(
        outcome(&c, "POST", "/v1/embeddings", &[], r#"{"pin":1}"#),
        "stateful any-post body:/pin"
    );
    assert_eq!(
        outcome(&c, "POST", "/v1/embeddings", &[], r#"{"input":"x"}"#),
        "stateless stateless.endpoints path:/v1/embeddings"
    );
}

#[test]
fn marker_is_the_first_body_then_header_then_path_condition() {
    let mut r = rule("r", Class::Stateful);
    r.path = Some("/x/*".parse().unwrap());
    r.header_equals = vec![(hname("x-b"), HeaderValue::from_static("1"))];
    r.header_present = vec![hname("x-a")];
    r.body_equals = vec![("/e".parse().unwrap(), json!(1))];
    r.body_absent = vec!["/d".parse().unwrap()];
    let mut no_body = r.clone();
    no_body.body_equals.clear();
    no_body.body_absent.clear();
    let mut path_only = rule("p", Class::Stateful);
    path_only.path = Some("/y".parse().unwrap());
    let h = [("x-a", ""), ("x-b", "1")];
    let c = with_rules(vec![r]);
    assert_eq!(
        outcome(&c, "POST", "/x", &h, r#"{"e":1}"#),
        "stateful r body:/d"
    );
    let c = with_rules(vec![no_body, path_only]);
    assert_eq!(outcome(&c, "POST", "/x", &h, ""), "stateful r header:x-a");
    assert_eq!(outcome(&c, "POST", "/y", &[], ""), "stateful p path:/y");
}

#[test]
fn wildcard_and_index_pointers() {
    let mut system = rule("system-first", Class::Stateful);
    system.path = Some("/v1/chat/completions".parse().unwrap());
    system.body_equals = vec![("/messages/0/role".parse().unwrap(), json!("system"))];
    let mut tool = rule("any-tool", Class::Stateful);
    tool.path = Some("/v1/chat/completions".parse().unwrap());
    tool.body_equals = vec![("/messages/*/role".parse().unwrap(), json!("tool"))];
    let c = with_rules(vec![system, tool]);
    let o = |body: &str| outcome(&c, "POST", "/v1/chat/completions", &[], body);
    assert_eq!(
        o(r#"{"messages":[{"role":"system"},{"role":"user"}]}"#),
        "stateful system-first body:/messages/0/role"
    );
    assert_eq!(
        o(r#"{"messages":[{"role":"user"},{"role":"system"}]}"#),
        "stateless chat.stateless body:/store"
    );
    assert_eq!(
        o(r#"{"messages":[{"role":"user"},{"role":"tool"}]}"#),
        "stateful any-tool body:/messages/*/role"
    );
    assert_eq!(
        o(r#"{"messages":{"0":{"role":"system"}}}"#),
        "stateful system-first body:/messages/0/role"
    );
    assert_eq!(
        o(r#"{"messages":{"x":{"role":"tool"}}}"#),
        "stateless chat.stateless body:/store"
    );
    // The built-in `/messages/*/content/*/file/file_id` still works alongside.
    assert_eq!(
        o(r#"{"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"f"}}]}]}"#),
        "stateful body.file_reference body:/messages/*/content/*/file/file_id"
    );
}

#[test]
fn disabled_builtins_are_skipped() {
    let disabled = |names: &[&str]| {
        Classifier::new(ClassifierSettings {
            disabled_builtins: names.iter().map(|s| s.to_string()).collect(),
            ..settings("/v1")
        })
    };
    let prompt = r#"{"store":false,"prompt":{"id":"pmpt_1"}}"#;
    assert_eq!(
        outcome(&classifier(), "POST", "/v1/responses", &[], prompt),
        "stateful responses.prompt body:/prompt"
    );
    let c = disabled(&["responses.prompt"]);
    assert_eq!(
        outcome(&c, "POST", "/v1/responses", &[], prompt),
        "stateless responses.stateless body:/store"
    );
    let c = disabled(&["header.mcp_session"]);
    assert_eq!(
        outcome(&c, "GET", "/v1/models", &[("mcp-session-id", "m")], ""),
        "stateless stateless.endpoints path:/v1/models"
    );
    let c = disabled(&["conversations", "default", "no.such.rule"]);
    assert_eq!(
        outcome(&c, "GET", "/v1/conversations/c", &[], ""),
        "stateless default none"
    );
    let c = disabled(&["anthropic.resources"]);
    let ant = [("anthropic-version", "2023-06-01")];
    assert_eq!(
        outcome(&c, "GET", "/v1/files", &ant, ""),
        "stateful resources path:/v1/files"
    );
    let c = disabled(&["responses.store"]);
    assert_eq!(
        outcome(&c, "POST", "/v1/responses", &[], "{}"),
        "stateless responses.stateless body:/store"
    );
    // Only fields a rule that is on reads are checked for booleans.
    let c = disabled(&["responses.store"]);
    assert_eq!(
        outcome(&c, "POST", "/v1/responses", &[], r#"{"store":0}"#),
        "stateless responses.stateless body:/store"
    );
    assert_eq!(
        outcome(&c, "POST", "/v1/responses", &[], r#"{"background":0}"#),
        "invalid_marker"
    );
    assert_eq!(
        outcome(&c, "POST", "/v1/chat/completions", &[], r#"{"store":0}"#),
        "invalid_marker"
    );
    let c = disabled(&["chat.store", "responses.background"]);
    assert_eq!(
        outcome(
            &c,
            "POST",
            "/v1/chat/completions",
            &[],
            r#"{"store":"true"}"#
        ),
        "stateless chat.stateless body:/store"
    );
    assert_eq!(
        outcome(
            &c,
            "POST",
            "/v1/responses",
            &[],
            r#"{"store":false,"background":1}"#
        ),
        "stateless responses.stateless body:/store"
    );
    assert_eq!(
        outcome(&c, "POST", "/v1/responses", &[], r#"{"store":1}"#),
        "invalid_marker"
    );
    let c = disabled(&["websocket.upgrade"]);
    assert_eq!(
        outcome(&c, "GET", "/v1/responses", &[("upgrade", "websocket")], ""),
        "stateful responses.stored_object path:/v1/responses"
    );
    // With every rule of a body route disabled, nothing reads the body.
    let c = disabled(&[
        "chat.store",
        "chat.stateless",
        "body.file_reference",
        "body.vector_store",
        "body.container",
        "body.item_reference",
    ]);
    let inspected = c.inspect(&method("POST"), "/v1/chat/completions", &headers(&[]));
    assert!(
        matches!(inspected, Inspection::Decided(ref d) if &*d.rule == "default"),
        "{inspected:?}"
    );
    // A disabled rule's body place is not scanned, so its duplicates are not refused.
    let c = disabled(&["responses.previous_response_id"]);
    assert_eq!(
        outcome(
            &c,
            "POST",
            "/v1/responses",
            &[],
            r#"{"store":false,"previous_response_id":"a","previous_response_id":"b"}"#
        ),
        "stateless responses.stateless body:/store"
    );
}

#[test]
fn builtins_off_leaves_operator_rules_and_default() {
    let mut pin = rule("pin", Class::Stateful);
    pin.body_present = vec!["/store".parse().unwrap()];
    pin.path = Some("/v1/responses".parse().unwrap());
    let off = |rules| {
        Classifier::new(ClassifierSettings {
            builtins: false,
            rules,
            ..settings("/v1")
        })
    };
    let c = off(Vec::new());
    for (m, p, h) in [
        ("POST", "/v1/responses", vec![]),
        ("GET", "/v1/conversations/c", vec![]),
        ("GET", "/v1/models", vec![("mcp-session-id", "x")]),
        ("GET", "/v1/responses", vec![("upgrade", "websocket")]),
    ] {
        let d = c.inspect(&method(m), p, &headers(&h));
        assert!(
            matches!(d, Inspection::Decided(ref d) if &*d.rule == "default" && d.class == Class::Stateless),
            "{p}: {d:?}"
        );
    }
    let c = off(vec![pin]);
    assert_eq!(
        outcome(&c, "POST", "/v1/responses", &[], r#"{"store":true}"#),
        "stateful pin body:/store"
    );
    assert_eq!(
        outcome(&c, "POST", "/v1/responses", &[], r#"{"input":"x"}"#),
        "stateless default none"
    );
    // Route labels do not depend on the rules.
    let d = run(&c, "POST", "/v1/responses", &[], "{}").unwrap();
    assert_eq!(c.route_label(d.route), "/v1/responses");
}

#[test]
fn many_operator_rules_spill_past_the_inline_sets() {
    let rules: Vec<RuleSpec> = (0..200)
        .map(|i| {
            let mut r = rule(&format!("r{i}"), Class::Stateful);
            r.path = Some("/v1/custom".parse().unwrap());
            r.body_equals = vec![(format!("/k{i}").parse().unwrap(), json!(i))];
            r
        })
        .collect();
    let c = with_rules(rules);
    assert_eq!(
        outcome(&c, "POST", "/v1/custom", &[], r#"{"k199":199}"#),
        "stateful r199 body:/k199"
    );
    assert_eq!(
        outcome(&c, "POST", "/v1/custom", &[], r#"{"k150":150,"k3":3}"#),
        "stateful r3 body:/k3"
    );
    assert_eq!(
        outcome(&c, "POST", "/v1/custom", &[], r#"{"k150":1}"#),
        "stateless default none"
    );
    let err = run(&c, "POST", "/v1/custom", &[], r#"{"k190":1,"k190":2}"#).unwrap_err();
    assert_eq!(err.reason, Why::DuplicateKey("/k190".into()));
}

#[test]
fn classifier_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Classifier>();
    check::<super::super::PendingBody>();
}

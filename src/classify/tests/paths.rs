//! Ambiguous request paths: every shape two parsers could read differently is refused, and
//! the near misses next to each one are still classified, under several bases and the Azure
//! prefixes. Plus a no-panic sweep over random paths.

use std::collections::HashSet;

use super::super::{Classifier, UnclassifiableReason as Why};
use super::{run, settings};

const REFUSED: &str = "refused";

/// The URL-encoded runtime ARN an AgentCore client sends.
const ARN: &str =
    "arn%3Aaws%3Abedrock-agentcore%3Aus-east-1%3A123456789012%3Aruntime%2Fmy_agent-abc";
/// The same, lowercase escapes.
const ARN_LOWER: &str =
    "arn%3aaws%3abedrock-agentcore%3aus-east-1%3a123456789012%3aruntime%2fmy_agent-abc";
/// A Bedrock application inference profile ARN, as boto3 encodes a `modelId`.
const PROFILE: &str = "arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aapplication-inference-profile%2Fab12";

/// "class rule marker route", or "refused" (after checking how the refusal looks).
fn outcome(c: &Classifier, m: &str, path: &str) -> String {
    match run(c, m, path, &[], "{}") {
        Ok(d) => format!(
            "{} {} {} {}",
            d.class,
            d.rule,
            d.marker,
            c.route_label(d.route)
        ),
        Err(e) => {
            assert_eq!(e.reason, Why::AmbiguousPath, "{path}");
            assert_eq!(e.reason.code(), "ambiguous_path");
            assert_eq!(c.route_label(e.route), "other", "{path}");
            assert_eq!(
                e.to_string(),
                "request path is ambiguous (empty, '.' or '..' segments, encoded '/' or '\\', \
                 ';', bad percent-encoding or a case variant of a known path); upstreams may \
                 read it differently"
            );
            REFUSED.to_owned()
        }
    }
}

/// Decided from the route: "class rule path:label label".
fn by_path(class: &str, rule: &str, label: &str) -> String {
    format!("{class} {rule} path:{label} {label}")
}

fn check(c: &Classifier, rows: &[(&str, String, String)]) -> usize {
    let mut failures = Vec::new();
    for (m, path, want) in rows {
        let got = outcome(c, m, path);
        if got != *want {
            failures.push(format!("{m} {path}\n    want {want}\n    got  {got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    rows.len()
}

/// Rows for a configured base `b` ("/v1", "/api"), labelled under that base.
fn base_rows(b: &str) -> Vec<(&'static str, String, String)> {
    let refused = |m: &'static str, p: String| (m, p, REFUSED.to_owned());
    let file = by_path("stateful", "resources", &format!("{b}/files/{{id}}"));
    let files = by_path("stateful", "resources", &format!("{b}/files"));
    let runtime = by_path(
        "stateful",
        "agentcore.runtime",
        &format!("{b}/runtimes/{{arn}}/invocations"),
    );
    vec![
        // 1. Empty segments; one trailing '/' is fine.
        refused("POST", format!("/{b}/responses")),
        refused("GET", format!("{b}//files")),
        refused("GET", format!("{b}/files//")),
        refused("GET", format!("{b}/files//file-abc")),
        refused("GET", format!("{b}/files///?x=1")),
        ("GET", format!("{b}/files/"), files.clone()),
        ("GET", format!("{b}/files/?after=x//y"), files.clone()),
        ("GET", format!("{b}/files/file-abc/"), file.clone()),
        // 2. Encoded '/' or '\', raw '\'.
        refused("POST", format!("{b}/responses/..%2Fembeddings")),
        refused("POST", format!("{b}/responses/%2e%2e%2fembeddings")),
        refused("POST", format!("{b}/responses/%2E%2E%2Fembeddings")),
        refused("GET", format!("{b}/files%2Ffile-abc")),
        refused("GET", format!("{b}/files%2ffile-abc")),
        refused("GET", format!("{b}/files/file-abc%2Fcontent")),
        refused("GET", format!("{b}%2Ffiles")),
        refused("GET", format!("{b}/files%5Cfile-abc")),
        refused("GET", format!("{b}/files%5cfile-abc")),
        refused("GET", format!("{b}/files\\file-abc")),
        refused("GET", format!("{b}\\files")),
        refused("POST", format!("{b}/responses/..\\embeddings")),
        // Encoded '?' and '#' would cut the path if an upstream decoded and re-parsed.
        refused("POST", format!("{b}/responses%3F")),
        refused("GET", format!("{b}/files/file-abc%23x")),
        // 3. Dot segments, raw or encoded.
        refused("POST", format!("{b}/files/../responses")),
        refused("POST", format!("{b}/./responses")),
        refused("GET", format!("{b}/files/%2e%2e")),
        refused("GET", format!("{b}/files/.%2E/")),
        ("GET", format!("{b}/files/a.b"), file.clone()),
        ("GET", format!("{b}/files/..."), file.clone()),
        ("GET", format!("{b}/files/%2e%2e%2e"), file.clone()),
        // 4. Path parameters.
        refused("GET", format!("{b}/files;x=1")),
        refused("GET", format!("{b}/files/file-abc;v=2")),
        refused("GET", format!("{b};x/files")),
        refused("GET", format!("{b}/files%3Bx=1")),
        refused("GET", format!("{b}/files%3bx=1")),
        ("GET", format!("{b}/files?x=1;y=2"), files.clone()),
        // 5. Invalid percent-encoding (or escapes that are not UTF-8).
        refused("GET", format!("{b}/files/%zz")),
        refused("GET", format!("{b}/files/file-%4")),
        refused("GET", format!("{b}/files/file-%")),
        refused("GET", format!("{b}/files/%g1")),
        refused("GET", format!("{b}/files/%ff")),
        refused("GET", format!("{b}/files/%C0%AE%C0%AE")),
        ("GET", format!("{b}/files/caf%C3%A9"), file.clone()),
        ("GET", format!("{b}/files/a%25b"), file.clone()),
        // 6. NUL and control bytes, decoded or raw.
        refused("GET", format!("{b}/files/file-abc%00")),
        refused("GET", format!("{b}/files/file%0Aabc")),
        refused("GET", format!("{b}/files/file%0dabc")),
        refused("GET", format!("{b}/files/file%1Fabc")),
        refused("GET", format!("{b}/files/file%7Fabc")),
        refused("GET", format!("{b}/files/file\u{1}abc")),
        // Decoding that cannot change the split is fine.
        ("GET", format!("{b}/files/file-abc%20x"), file.clone()),
        ("GET", format!("{b}/files/file-%41bc"), file.clone()),
        ("GET", format!("{b}/%66iles/file-abc"), file.clone()),
        // `Files`: a case variant of a known path.
        ("GET", format!("{b}/%46iles/file-abc"), REFUSED.to_owned()),
        // AgentCore: the encoded ARN right after `runtimes`, under the base or at the root.
        ("POST", format!("{b}/runtimes/{ARN}/invocations"), runtime),
        (
            "POST",
            format!("{b}/runtimes/{ARN_LOWER}/stopruntimesession?qualifier=DEFAULT"),
            by_path(
                "stateful",
                "agentcore.runtime",
                &format!("{b}/runtimes/{{arn}}/stopruntimesession"),
            ),
        ),
        (
            "POST",
            format!("/runtimes/{ARN}/invocations"),
            by_path(
                "stateful",
                "agentcore.runtime",
                "/runtimes/{arn}/invocations",
            ),
        ),
        (
            "GET",
            format!("/runtimes/{ARN}"),
            by_path("stateful", "agentcore.runtime", "/runtimes/*"),
        ),
        refused("POST", format!("{b}/runtimes/..%2Fembeddings/invocations")),
        refused("POST", format!("{b}/runtimes/arn%2F..%2F..%2Fembeddings")),
        refused("POST", format!("{b}/runtimes/arn%2F.%2Fx/invocations")),
        refused("POST", format!("{b}/runtimes/arn%2F%2Fx/invocations")),
        refused("POST", format!("{b}/runtimes/%2Farn/invocations")),
        refused("POST", format!("{b}/runtimes/arn%2F/invocations")),
        refused("POST", format!("{b}/runtimes/arn%5Cx/invocations")),
        refused("POST", format!("{b}/runtimes/arn%2Fx;y/invocations")),
        refused("POST", format!("{b}/runtimes/arn%2Fx%00/invocations")),
        refused("POST", format!("{b}/runtimes/{ARN}/{ARN}/invocations")),
        refused("POST", format!("{b}/runtimes/x/{ARN}/invocations")),
        refused("POST", format!("{b}/runtimes/x/runtimes/{ARN}/invocations")),
        // Not the route's ARN slot: an upstream that decodes '%2F' would see another route.
        refused("GET", format!("{b}/files/runtimes/{ARN}")),
        refused("GET", format!("{b}/responses/runtimes/{ARN}")),
        refused("GET", format!("/x{b}/runtimes/{ARN}/invocations")),
        // Bedrock model and invocation ARNs.
        (
            "POST",
            format!("{b}/model/{PROFILE}/converse"),
            by_path(
                "stateless",
                "bedrock.invoke",
                &format!("{b}/model/{{id}}/converse"),
            ),
        ),
        (
            "POST",
            format!("/model/{PROFILE}/invoke"),
            by_path("stateless", "bedrock.invoke", "/model/{id}/invoke"),
        ),
        (
            "GET",
            "/async-invoke/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aasync-invoke%2Fabc".to_owned(),
            by_path("stateful", "bedrock.async_invoke", "/async-invoke/{arn}"),
        ),
        // The decoded form is the same call (and the same rule).
        (
            "POST",
            "/model/arn:aws:bedrock:us-east-1:1:application-inference-profile/ab12/invoke"
                .to_owned(),
            by_path("stateless", "bedrock.invoke", "/model/{id}/invoke"),
        ),
        refused("POST", format!("{b}/model/x%2F..%2F..%2Fembeddings/invoke")),
        refused("POST", format!("{b}/model/x%2F..%2Fy/invoke")),
    ]
}

fn default_other() -> String {
    "stateless default none other".to_owned()
}

/// The OpenAI-style Azure prefixes (any base): `/openai/v1`, `/openai/deployments/{d}`,
/// `/openai`.
fn azure_rows() -> Vec<(&'static str, String, String)> {
    let refused = |m: &'static str, p: &str| (m, p.to_owned(), REFUSED.to_owned());
    let ok = |m: &'static str, p: &str, want: String| (m, p.to_owned(), want);
    let dep = "/openai/deployments/{deployment}";
    vec![
        refused("POST", "/openai/v1/responses/..%2Fembeddings"),
        refused("POST", "/openai/v1/responses/%2e%2e%2fembeddings"),
        refused("GET", "/openai/v1/files%2Ffile-abc"),
        refused("POST", "//openai/v1/responses"),
        refused("POST", "/openai//v1/responses"),
        refused("GET", "/openai/v1/files;x=1"),
        refused("GET", "/openai/v1/files/%zz"),
        refused("GET", "/openai/v1/files/file-abc%00"),
        refused(
            "POST",
            "/openai/deployments/gpt4o%2F..%2F..%2Fv1/embeddings",
        ),
        refused(
            "POST",
            "/openai/deployments/gpt4o/embeddings%2F..%2Fresponses",
        ),
        refused("POST", "/openai/deployments//embeddings"),
        refused("POST", "/openai/deployments/gpt4o;v=1/embeddings"),
        refused("POST", "/openai/deployments/gpt4o/%2e%2e/responses"),
        refused(
            "POST",
            "/openai/deployments/gpt4o\\..\\responses?api-version=2024-10-21",
        ),
        refused("GET", "/openai/files%2Ffile-abc"),
        refused(
            "GET",
            "/openai/responses/resp_1;x?api-version=2025-04-01-preview",
        ),
        refused("GET", "/openai/responses/resp_1%3B"),
        // AWS ARN slots do not exist under the Azure prefixes.
        refused("POST", &format!("/openai/runtimes/{ARN}/invocations")),
        refused("POST", &format!("/openai/v1/runtimes/{ARN}/invocations")),
        refused("POST", &format!("/openai/v1/model/{PROFILE}/invoke")),
        ok(
            "POST",
            "/openai/deployments/gpt4o/embeddings/?api-version=2024-10-21",
            by_path(
                "stateless",
                "stateless.endpoints",
                &format!("{dep}/embeddings"),
            ),
        ),
        ok(
            "POST",
            "/openai/deployments/gpt%2D4o/embeddings",
            by_path(
                "stateless",
                "stateless.endpoints",
                &format!("{dep}/embeddings"),
            ),
        ),
        ok(
            "GET",
            "/openai/v1/files/file-abc%20x",
            by_path("stateful", "resources", "/openai/v1/files/{id}"),
        ),
        ok(
            "GET",
            "/openai/files/",
            by_path("stateful", "resources", "/openai/files"),
        ),
        ok(
            "GET",
            "/openai/responses/resp_%41?api-version=2025-04-01-preview",
            by_path(
                "stateful",
                "responses.stored_object",
                "/openai/responses/{id}",
            ),
        ),
    ]
}

#[test]
fn ambiguous_paths_under_each_base_and_prefix() {
    let mut count = 0;
    for base in ["/v1", "/api"] {
        let c = Classifier::new(settings(base));
        count += check(&c, &base_rows(base));
        count += check(&c, &azure_rows());
    }
    assert!(count > 200, "{count} rows");
}

#[test]
fn the_root_base_refuses_the_same_shapes() {
    let c = Classifier::new(settings(""));
    let rows = vec![
        ("POST", "//responses".to_owned(), REFUSED.to_owned()),
        ("GET", "/files%2Ffile-abc".to_owned(), REFUSED.to_owned()),
        (
            "POST",
            "/responses/..%2Fembeddings".to_owned(),
            REFUSED.to_owned(),
        ),
        ("GET", "/files;x=1".to_owned(), REFUSED.to_owned()),
        (
            "GET",
            "/files/".to_owned(),
            by_path("stateful", "resources", "/files"),
        ),
        (
            "POST",
            format!("/runtimes/{ARN}/invocations"),
            by_path(
                "stateful",
                "agentcore.runtime",
                "/runtimes/{arn}/invocations",
            ),
        ),
    ];
    check(&c, &rows);
}

/// A path that matches no template as sent, but does once ASCII-lowercased, is refused: a
/// case-insensitive front end (Azure APIM) would route it as the known endpoint. Capitals in
/// parameter segments do not matter: those paths match as sent.
#[test]
fn case_variants_of_known_paths_are_refused() {
    let refused = |m: &'static str, p: &str| (m, p.to_owned(), REFUSED.to_owned());
    let ok = |m: &'static str, p: &str, want: String| (m, p.to_owned(), want);
    let dep = "/openai/deployments/{deployment}";
    let mut count = 0;
    for base in ["/v1", "/api", ""] {
        let c = Classifier::new(settings(base));
        let rows = vec![
            refused("POST", "/openai/v1/Responses"),
            refused("POST", "/v1/Files"),
            refused("GET", "/v1/FILES/file-1"),
            refused("POST", "/openai/deployments/d/Chat/Completions"),
            refused("POST", "/openai/deployments/D/chat/COMPLETIONS"),
            refused("POST", "/V1/Responses"),
            refused("POST", "/V1/responses"),
            refused("GET", "/OpenAI/v1/models"),
            refused("POST", "/openai/Responses?api-version=2025-04-01-preview"),
            refused("POST", "/v1/%52esponses"),
            refused("POST", "/v1/messages/Count_Tokens"),
            refused("GET", "/v1/Messages/batches/b1"),
            refused("POST", "/Model/m/converse"),
            refused("POST", "/model/m/Converse"),
            refused("GET", "/Async-Invoke"),
            refused("POST", "/Runtimes/x/invocations"),
            ok(
                "POST",
                "/openai/deployments/GPT-4o/chat/completions",
                "stateless chat.stateless body:/store /openai/deployments/{deployment}/chat/completions"
                    .to_owned(),
            ),
            ok(
                "POST",
                "/openai/deployments/MyDeployment/embeddings",
                by_path(
                    "stateless",
                    "stateless.endpoints",
                    &format!("{dep}/embeddings"),
                ),
            ),
            ok(
                "GET",
                "/v1/files/File-ABC/content",
                by_path("stateful", "resources", "/v1/files/{id}/content"),
            ),
            ok(
                "GET",
                "/v1/models/ft:gpt-4o-mini:Org::ABC",
                by_path("stateless", "stateless.endpoints", "/v1/models/{id}"),
            ),
            ok(
                "GET",
                "/v1/responses/Resp_ABC",
                by_path("stateful", "responses.stored_object", "/v1/responses/{id}"),
            ),
            // Matches `/responses/{id}` as sent: classified as sent.
            ok(
                "POST",
                "/v1/responses/Compact",
                by_path("stateful", "responses.stored_object", "/v1/responses/{id}"),
            ),
            ok(
                "POST",
                "/model/Anthropic.Claude-3/invoke",
                by_path("stateless", "bedrock.invoke", "/model/{id}/invoke"),
            ),
            ok(
                "POST",
                "/runtimes/arn:aws:bedrock-agentcore:us-east-1:1:runtime/My_Agent/invocations",
                by_path(
                    "stateful",
                    "agentcore.runtime",
                    "/runtimes/{arn}/invocations",
                ),
            ),
            // Unknown in any case: `default`.
            ok("GET", "/Healthz", default_other()),
            ok("POST", "/V2/Responses", default_other()),
            ok("GET", "/v1/Custom/Thing", default_other()),
            ok("GET", "/v1/models/A/B", default_other()),
        ];
        count += check(&c, &rows);
    }
    assert!(count > 80);
}

/// With base `/openai/deployments`, `/openai/deployments/runtimes/…` is both an AgentCore
/// path (under the base) and a deployment named `runtimes`; an encoded ARN there is accepted
/// only if spreading it at its '/' still reads as AgentCore.
#[test]
fn spreading_the_arn_must_not_change_the_family() {
    let c = Classifier::new(settings("/openai/deployments"));
    let rows = vec![
        (
            "POST",
            format!("/openai/deployments/runtimes/{ARN}/invocations"),
            by_path(
                "stateful",
                "agentcore.runtime",
                "/openai/deployments/runtimes/{arn}/invocations",
            ),
        ),
        // Spread: deployment `runtimes`, `/images/x/invocations` (stateless images).
        (
            "POST",
            "/openai/deployments/runtimes/images%2Fx/invocations".to_owned(),
            REFUSED.to_owned(),
        ),
        // Spread: deployment `model`, `/files/x/invoke` (files, stateful; unspread: Bedrock).
        (
            "POST",
            "/openai/deployments/model/files%2Fx/invoke".to_owned(),
            REFUSED.to_owned(),
        ),
    ];
    check(&c, &rows);
}

/// The invariant itself, end to end: whenever a path with an encoded ARN is accepted, the
/// same path with its `%2F` decoded into separators (what a decoding upstream would route)
/// gets the same class from the same rule. Bases include ones that overlap the Azure
/// prefixes or are named like an ARN parent.
#[test]
fn accepted_encoded_arns_classify_like_their_decoded_form() {
    let bases = [
        "/v1",
        "/api",
        "",
        "/openai",
        "/openai/v1",
        "/openai/deployments",
        "/runtimes",
        "/model",
    ];
    let heads = [
        "",
        "/v1",
        "/api",
        "/openai",
        "/openai/v1",
        "/openai/deployments",
        "/openai/deployments/d",
        "/runtimes",
        "/model",
    ];
    let arns = [
        ARN,
        PROFILE,
        "images%2Fx",
        "files%2Fx",
        "embeddings%2Fx",
        "responses%2Fr",
        "chat%2Fcompletions",
        "runtimes%2Fx",
    ];
    let tails = [
        "",
        "/invocations",
        "/stopruntimesession",
        "/invoke",
        "/converse",
    ];
    let (mut accepted, mut refused) = (0, 0);
    for base in bases {
        let c = Classifier::new(settings(base));
        for head in heads {
            for parent in ["runtimes", "model", "async-invoke"] {
                for arn in arns {
                    for tail in tails {
                        let path = format!("{head}/{parent}/{arn}{tail}");
                        let Ok(raw) = run(&c, "POST", &path, &[], "{}") else {
                            refused += 1;
                            continue;
                        };
                        accepted += 1;
                        let decoded = path.replace("%2F", "/");
                        let spread = run(&c, "POST", &decoded, &[], "{}").unwrap();
                        assert_eq!(
                            (raw.class, &*raw.rule),
                            (spread.class, &*spread.rule),
                            "base {base:?}: {path} vs {decoded}"
                        );
                    }
                }
            }
        }
    }
    assert!(accepted > 100 && refused > 1_000, "{accepted} / {refused}");
}

/// Operator rules never see an ambiguous path; an ARN literal in a pattern matches the
/// encoded ARN as one segment.
#[test]
fn operator_patterns_follow_the_same_rules() {
    use super::super::{PathPattern, PatternError};
    for bad in [
        "/v1/files%2Fx",
        "/v1/files;x",
        "/v1/files%3Bx",
        "/v1/%zz",
        "/v1/a%00",
        "/v1/a\\b",
        "/runtimes/a%2F..%2Fb",
    ] {
        let err = bad.parse::<PathPattern>().unwrap_err();
        assert!(
            matches!(
                err,
                PatternError::AmbiguousSegment(_) | PatternError::DotSegment
            ),
            "{bad}: {err}"
        );
    }
    let err = "/v1/files;x".parse::<PathPattern>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "segment \"files;x\" never matches: requests with '\\', ';', control bytes, bad \
         percent-encoding or an encoded '/', '?' or '#' (outside an ARN) are refused"
    );
    let mut rule = super::super::RuleSpec {
        name: "pinned-agent".to_owned(),
        class: super::super::Class::Stateless,
        methods: Vec::new(),
        path: Some(format!("/runtimes/{ARN}/invocations").parse().unwrap()),
        header_present: Vec::new(),
        header_equals: Vec::new(),
        body_present: Vec::new(),
        body_absent: Vec::new(),
        body_equals: Vec::new(),
    };
    let c = super::with_rules(vec![rule.clone()]);
    let hit = format!(
        "stateless pinned-agent path:/runtimes/{ARN}/invocations /runtimes/{{arn}}/invocations"
    );
    assert_eq!(
        outcome(&c, "POST", &format!("/runtimes/{ARN_LOWER}/invocations")),
        hit
    );
    assert_eq!(
        outcome(&c, "POST", &format!("//runtimes/{ARN}/invocations")),
        REFUSED
    );
    rule.path = Some("/v1/files/*".parse().unwrap());
    let c = super::with_rules(vec![rule]);
    assert_eq!(outcome(&c, "GET", "/v1/files%2Fx"), REFUSED);
    assert_eq!(outcome(&c, "GET", "/v1//files/x"), REFUSED);
}

/// A deterministic pseudo-random generator (no dependency needed).
fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

/// Bytes that matter to path parsing, plus letters and a few segment words.
const PIECES: &[&str] = &[
    "/",
    "/",
    "/",
    "%",
    "%2F",
    "%2f",
    "%5C",
    "%3B",
    "%2e",
    "%2E",
    ".",
    "..",
    ";",
    "\\",
    "?",
    "#",
    "%00",
    "%0a",
    "%ff",
    "%C3%A9",
    "é",
    "a",
    "Z",
    "0",
    "9",
    "f",
    "F",
    "%4",
    "v1",
    "files",
    "responses",
    "runtimes",
    "model",
    "async-invoke",
    "invocations",
    "invoke",
    "openai",
    "deployments",
    "embeddings",
    "%3A",
    "arn",
    "\u{7f}",
    "\u{0}",
    " ",
    "\t",
    "%%",
];

const WORDS: &[&str] = &[
    "v1",
    "api",
    "openai",
    "deployments",
    "d",
    "responses",
    "files",
    "file-1",
    "runtimes",
    "invocations",
    "model",
    "invoke",
    "converse",
    "async-invoke",
    "embeddings",
    "chat",
    "completions",
    "conversations",
    "threads",
    ARN,
    PROFILE,
    "arn%3Ax%2Fy",
];

/// Random byte strings (made UTF-8 lossily, as `&str` is what the classifier takes) and
/// random mixes of significant pieces: never a panic, and anything accepted is free of the
/// refused shapes outside an ARN slot.
#[test]
fn random_paths_never_panic_and_accepted_ones_are_plain() {
    let classifiers = [
        Classifier::new(settings("/v1")),
        Classifier::new(settings("/api")),
        Classifier::new(settings("")),
        Classifier::new(settings("/openai/deployments")),
    ];
    let mut state = 0x5eed_u64;
    let mut accepted = 0usize;
    let mut labels = HashSet::new();
    for round in 0..40_000 {
        let path = if round % 3 == 0 {
            let len = (lcg(&mut state) % 48) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| (lcg(&mut state) & 0xff) as u8).collect();
            let mut p = String::from_utf8_lossy(&bytes).into_owned();
            if lcg(&mut state).is_multiple_of(2) {
                p.insert(0, '/');
            }
            p
        } else if round % 3 == 1 {
            let n = (lcg(&mut state) % 14) as usize;
            let mut p = String::new();
            for _ in 0..n {
                p.push_str(PIECES[(lcg(&mut state) as usize) % PIECES.len()]);
            }
            p
        } else {
            // Mostly well-formed segments, now and then a significant piece inside one.
            let n = (lcg(&mut state) % 6) as usize + 1;
            let mut p = String::new();
            for _ in 0..n {
                p.push('/');
                p.push_str(WORDS[(lcg(&mut state) as usize) % WORDS.len()]);
                if lcg(&mut state).is_multiple_of(4) {
                    p.push_str(PIECES[(lcg(&mut state) as usize) % PIECES.len()]);
                }
            }
            p
        };
        let c = &classifiers[round % classifiers.len()];
        for m in ["GET", "POST"] {
            let Ok(d) = run(c, m, &path, &[], "{}") else {
                continue;
            };
            accepted += 1;
            let label = c.route_label(d.route).to_owned();
            let segs = path.split(['?', '#']).next().unwrap_or("");
            let lower = segs.to_ascii_lowercase();
            let slot = ["/runtimes/", "/model/", "/async-invoke"]
                .iter()
                .any(|s| label.contains(s));
            let bad = segs.contains(';')
                || segs.contains('\\')
                || segs.bytes().any(|b| b.is_ascii_control())
                || segs
                    .trim_start_matches('/')
                    .trim_end_matches('/')
                    .contains("//")
                || segs.starts_with("//")
                || lower
                    .split('/')
                    .map(|s| s.replace("%2e", "."))
                    .any(|s| s == "." || s == "..")
                || ["%3b", "%5c", "%00", "%3f", "%23"]
                    .iter()
                    .any(|e| lower.contains(e))
                || (lower.contains("%2f") && !slot);
            assert!(!bad, "accepted {path:?} as {label}");
            labels.insert(label);
        }
    }
    assert!(accepted > 1_000, "only {accepted} accepted");
    assert!(labels.len() > 10, "{labels:?}");
}

//! Config tests: the issue's minimal file, defaults, and the exact text of every error.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

pub(super) const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:8080"

[admin]
listen = "127.0.0.1:9901"

[upstreams.primary]
url = "http://127.0.0.1:18081/v1"

[upstreams.secondary]
url = "http://127.0.0.1:18082/v1"

[routing]
stateless = "primary"
stateful = "secondary"
"#;

/// A fixed environment for `${VAR}` lookups.
pub(super) fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| map.get(name).cloned()
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str_with_env(text, &env(&[("AZURE_KEY", "sekret-123")]))
}

/// The error text for `MINIMAL` with `from` replaced by `to`.
fn error_with(from: &str, to: &str) -> String {
    assert!(
        MINIMAL.contains(from),
        "test setup: {from:?} not in MINIMAL"
    );
    match load(&MINIMAL.replacen(from, to, 1)) {
        Ok(_) => panic!("expected an error after replacing {from:?} with {to:?}"),
        Err(e) => e.to_string(),
    }
}

/// The error text for `MINIMAL` plus `extra`.
fn error_plus(extra: &str) -> String {
    match load(&format!("{MINIMAL}\n{extra}")) {
        Ok(_) => panic!("expected an error with {extra:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn minimal_file_loads_with_documented_defaults() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.server.listen.unwrap().to_string(), "127.0.0.1:8080");
    assert_eq!(c.server.base_path, "/v1");
    assert!(c.server.decision_headers);
    assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9901");
    assert_eq!(c.limits.max_body_bytes, 32 * 1024 * 1024);
    assert_eq!(c.limits.max_header_bytes, 64 * 1024);
    assert_eq!(c.limits.h2.send_buffer, 64 * 1024);
    assert_eq!(c.limits.unsent_buffer, Some(16 * 1024));
    assert_eq!(c.timeouts.connect, Duration::from_secs(5));
    assert_eq!(c.timeouts.first_byte, Duration::from_secs(300));
    assert_eq!(c.timeouts.idle, Duration::from_secs(120));
    assert_eq!(c.timeouts.request, Duration::from_secs(1800));
    assert_eq!(c.upstreams.len(), 2);
    let primary = &c.upstreams[c.routing.stateless];
    assert_eq!(primary.name, "primary");
    assert_eq!(primary.url.to_string(), "http://127.0.0.1:18081/v1");
    assert_eq!(primary.url.path, "/v1");
    assert!(!primary.http2);
    assert!(primary.forward_client_credentials);
    assert_eq!(c.upstreams[c.routing.stateful].name, "secondary");
    assert_eq!(c.routing.unclassifiable, Unclassifiable::Reject);
    assert!(c.classifier.builtins);
    assert!(c.classifier.rules.is_empty());
    assert_eq!(c.log.format, LogFormat::Human);
    assert!(c.log.access_log);
}

#[test]
fn full_file_loads() {
    let text = r#"
[server]
listen = "[::1]:0"
base_path = "/api/"
decision_headers = false

[limits]
max_body_bytes = "1 MiB"
max_header_bytes = 16384
header_read_timeout = "5s"
h2_send_buffer = "1 MiB"
unsent_buffer = 0

[timeouts]
connect = "250ms"
first_byte = "1m"

[upstreams.azure]
url = "http://127.0.0.1:1/openai/v1/"
http2 = true
http2_max_streams = 250
set_headers = { api-key = "${AZURE_KEY}" }
pool_idle_timeout = "30s"
pool_max_idle_per_host = 8
[upstreams.azure.timeouts]
idle = "10s"

[upstreams.bedrock]
url = "http://127.0.0.1:2"

[routing]
stateless = "azure"
stateful = "bedrock"
unclassifiable = "stateful"

[classifier]
disable = ["responses.prompt"]

[[rules]]
name = "tenant-pinned"
class = "stateful"
methods = ["post"]
path = "/api/custom/{id}/*"
header_present = ["x-tenant"]
header_equals = { x-mode = "stateful" }
body_present = ["/metadata/session"]
body_absent = ["/store"]
body_equals = { "/tier" = "gold", "/n" = 3, "/flag" = true }

[log]
format = "json"
level = "switchyard=debug,warn"
access_log = false
"#;
    let c = load(text).unwrap();
    assert_eq!(c.server.base_path, "/api");
    assert!(!c.server.decision_headers);
    assert_eq!(c.limits.max_body_bytes, 1024 * 1024);
    assert_eq!(c.limits.max_header_bytes, 16384);
    assert_eq!(c.limits.h2.send_buffer, 1024 * 1024);
    assert_eq!(c.limits.unsent_buffer, None);
    assert_eq!(c.limits.header_read_timeout, Duration::from_secs(5));
    let azure = &c.upstreams[c.routing.stateless];
    assert_eq!(azure.url.path, "/openai/v1");
    assert!(azure.http2);
    assert_eq!(azure.set_headers.len(), 1);
    assert_eq!(azure.set_headers[0].0.as_str(), "api-key");
    assert_eq!(azure.set_headers[0].1 .0.to_str().unwrap(), "sekret-123");
    assert!(azure.set_headers[0].1 .0.is_sensitive());
    assert!(
        !azure.forward_client_credentials,
        "setting api-key drops the client's credentials"
    );
    assert_eq!(azure.timeouts.connect, Duration::from_millis(250));
    assert_eq!(azure.timeouts.first_byte, Duration::from_secs(60));
    assert_eq!(azure.timeouts.idle, Duration::from_secs(10));
    assert_eq!(azure.pool_max_idle_per_host, 8);
    assert_eq!(azure.http2_max_streams, 250);
    let bedrock = &c.upstreams[c.routing.stateful];
    assert_eq!(bedrock.http2_max_streams, 100);
    assert_eq!(bedrock.url.path, "");
    assert_eq!(bedrock.timeouts.idle, Duration::from_secs(120));
    assert_eq!(
        c.routing.unclassifiable,
        Unclassifiable::As(Class::Stateful)
    );
    assert_eq!(c.classifier.base_path, "/api");
    assert_eq!(c.classifier.disabled_builtins, ["responses.prompt"]);
    let rule = &c.classifier.rules[0];
    assert_eq!(rule.name, "tenant-pinned");
    assert_eq!(rule.class, Class::Stateful);
    assert_eq!(rule.methods, [http::Method::POST]);
    assert_eq!(rule.body_equals.len(), 3);
    assert_eq!(c.log.format, LogFormat::Json);
    assert!(!c.log.access_log);
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let text = MINIMAL.replace(
        "url = \"http://127.0.0.1:18081/v1\"",
        "url = \"http://127.0.0.1:18081/v1\"\nset_headers = { authorization = \"Bearer ${AZURE_KEY}\" }",
    );
    let c = load(&text).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("sekret-123"), "{debug}");
    assert!(debug.contains("<redacted>"));
}

#[test]
fn syntax_and_unknown_keys_name_the_key() {
    let e = error_with("listen = \"127.0.0.1:8080\"", "lisen = \"127.0.0.1:8080\"");
    assert!(
        e.starts_with("invalid config: TOML parse error at line 3"),
        "{e}"
    );
    assert!(e.contains("unknown field `lisen`"), "{e}");
    let e = error_plus("[upstreams.primary.extra]\nx = 1");
    assert!(
        e.contains("duplicate key") || e.contains("unknown field"),
        "{e}"
    );
    let e = error_plus("[bogus]\nx = 1");
    assert!(e.contains("unknown field `bogus`"), "{e}");
}

#[test]
fn error_texts() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "listen = \"127.0.0.1:8080\"",
            "listen = \"localhost:8080\"",
            r#"server.listen = "localhost:8080": must be an IP address and port, such as "127.0.0.1:8080" or "[::1]:8080""#,
        ),
        (
            "listen = \"127.0.0.1:9901\"",
            "listen = \"127.0.0.1:8080\"",
            r#"admin.listen = "127.0.0.1:8080": must differ from server.listen"#,
        ),
        (
            "url = \"http://127.0.0.1:18081/v1\"",
            "url = \"ftp://127.0.0.1/v1\"",
            r#"upstreams.primary.url = "ftp://127.0.0.1/v1": scheme must be http or https"#,
        ),
        (
            "url = \"http://127.0.0.1:18081/v1\"",
            "url = \"127.0.0.1:18081\"",
            r#"upstreams.primary.url = "127.0.0.1:18081": must be an absolute URL such as "http://127.0.0.1:18081/v1""#,
        ),
        (
            "url = \"http://127.0.0.1:18081/v1\"",
            "url = \"http://user:pw@127.0.0.1:18081/v1\"",
            r#"upstreams.primary.url = "http://user:pw@127.0.0.1:18081/v1": must not carry credentials; use api_key or set_headers with ${ENV_VAR} instead"#,
        ),
        (
            "url = \"http://127.0.0.1:18081/v1\"",
            "url = \"http://127.0.0.1:18081/v1?x=1\"",
            r#"upstreams.primary.url = "http://127.0.0.1:18081/v1?x=1": must not have a query or fragment"#,
        ),
        (
            "url = \"http://127.0.0.1:18081/v1\"",
            "url = \"not a url\"",
            r#"upstreams.primary.url = "not a url": is not a valid URL"#,
        ),
        (
            "stateless = \"primary\"",
            "stateless = \"azure\"",
            r#"routing.stateless = "azure": no upstream has this name (defined: primary, secondary)"#,
        ),
        (
            "stateful = \"secondary\"",
            "stateful = \"primary\"",
            r#"routing.stateful = "primary": must name a different upstream than routing.stateless: each class has its own upstream"#,
        ),
        (
            "url = \"http://127.0.0.1:18082/v1\"",
            "url = \"http://127.0.0.1:18081/v1/\"",
            r#"routing.stateful = "secondary": upstreams.primary and upstreams.secondary have the same url http://127.0.0.1:18081/v1; stateless and stateful traffic must reach different endpoints"#,
        ),
        (
            "stateful = \"secondary\"",
            "stateful = \"secondary\"\nunclassifiable = \"guess\"",
            r#"routing.unclassifiable = "guess": must be one of "reject", "stateless", "stateful""#,
        ),
        (
            "[upstreams.secondary]",
            "[upstreams.Secondary]",
            r#"upstreams.Secondary = "Secondary": an upstream name is 1-64 lowercase letters, digits, '_' or '-' (and not "none"); it becomes a metric label"#,
        ),
    ];
    for (from, to, want) in cases {
        assert_eq!(
            error_with(from, to),
            *want,
            "replacing {from:?} with {to:?}"
        );
    }
}

#[test]
fn limit_and_duration_error_texts() {
    let cases: &[(&str, &str)] = &[
        (
            "[limits]\nmax_body_bytes = \"lots\"",
            r#"limits.max_body_bytes = "lots": must be a positive size such as 1048576, "512 KiB" or "32 MiB""#,
        ),
        (
            "[limits]\nmax_body_bytes = 0",
            "limits.max_body_bytes = 0: must be a positive number of bytes",
        ),
        (
            "[limits]\nmax_body_bytes = \"3 GiB\"",
            "limits.max_body_bytes = 3221225472: must be at most 2 GiB (2147483648)",
        ),
        (
            "[limits]\nmax_header_bytes = 1024",
            "limits.max_header_bytes = 1024: must be between 8 KiB (8192) and 1 MiB (1048576)",
        ),
        (
            "[timeouts]\nconnect = \"soon\"",
            r#"timeouts.connect = "soon": must be a positive duration such as "500ms", "30s" or "5m""#,
        ),
        (
            "[timeouts]\nidle = \"0s\"",
            r#"timeouts.idle = "0s": must be a positive duration such as "500ms", "30s" or "5m""#,
        ),
        (
            "[timeouts]\nrequest = \"8days\"",
            r#"timeouts.request = "8days": must be at most 7 days"#,
        ),
        (
            "[log]\nformat = \"xml\"",
            r#"log.format = "xml": must be "human" or "json""#,
        ),
        (
            "[log]\nlevel = \"=[\"",
            r#"log.level = "=[": must be a tracing filter such as "info" or "switchyard=debug,warn""#,
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(error_plus(extra), *want, "with {extra:?}");
    }
    assert_eq!(
        error_with("[server]\n", "[server]\nbase_path = \"v1\"\n"),
        r#"server.base_path = "v1": must be an absolute path of plain segments (letters, digits, '-', '_', '.', '~'), such as "/v1""#
    );
    assert_eq!(
        error_with(
            "url = \"http://127.0.0.1:18081/v1\"",
            "url = \"http://127.0.0.1:18081/v1\"\n[upstreams.primary.timeouts]\nfirst_byte = \"x\""
        ),
        r#"upstreams.primary.timeouts.first_byte = "x": must be a positive duration such as "500ms", "30s" or "5m""#
    );
}

#[test]
fn env_secret_errors_name_key_and_variable_but_not_values() {
    let with_header = |value: &str| {
        MINIMAL.replace(
            "url = \"http://127.0.0.1:18081/v1\"",
            &format!(
                "url = \"http://127.0.0.1:18081/v1\"\nset_headers = {{ api-key = \"{value}\" }}"
            ),
        )
    };
    let err = |text: String| load(&text).unwrap_err().to_string();
    assert_eq!(
        err(with_header("${MISSING_KEY}")),
        "upstreams.primary.set_headers.api-key: environment variable MISSING_KEY is not set"
    );
    assert_eq!(
        err(with_header("${AZURE_KEY")),
        "upstreams.primary.set_headers.api-key = <redacted>: '${' is not closed by '}'"
    );
    assert_eq!(
        err(with_header("pre$fix")),
        "upstreams.primary.set_headers.api-key = <redacted>: '$' must start '${VAR}', or be doubled as '$$' for a literal '$'"
    );
    assert_eq!(
        err(with_header("${1X}")),
        "upstreams.primary.set_headers.api-key = <redacted>: a variable name is letters, digits and '_', not starting with a digit"
    );
    let bad_value =
        Config::from_toml_str_with_env(&with_header("${K}"), &env(&[("K", "line\nbreak-secret")]))
            .unwrap_err()
            .to_string();
    assert_eq!(
        bad_value,
        "upstreams.primary.set_headers.api-key = <redacted>: is not a valid header value (visible ASCII, spaces and tabs only)"
    );
    assert!(!bad_value.contains("secret"));
    let c = load(&with_header("a$$b-${AZURE_KEY}")).unwrap();
    let value = &c.upstreams[0].set_headers[0].1 .0;
    assert_eq!(value.to_str().unwrap(), "a$b-sekret-123");
    assert_eq!(
        err(with_header("x").replace("api-key", "host")),
        r#"upstreams.primary.set_headers.host = "host": is managed by the gateway and cannot be set"#
    );
}

#[test]
fn url_errors_show_the_url_as_written_not_the_expanded_secret() {
    let text = MINIMAL.replace(
        "url = \"http://127.0.0.1:18081/v1\"",
        "url = \"http://user:${AZURE_KEY}@127.0.0.1:18081/v1\"",
    );
    let e = load(&text).unwrap_err().to_string();
    assert_eq!(
        e,
        r#"upstreams.primary.url = "http://user:${AZURE_KEY}@127.0.0.1:18081/v1": must not carry credentials; use api_key or set_headers with ${ENV_VAR} instead"#
    );
    assert!(!e.contains("sekret"));
    let ok = MINIMAL.replace(
        "url = \"http://127.0.0.1:18081/v1\"",
        "url = \"http://${HOST}/v1\"",
    );
    let c = Config::from_toml_str_with_env(&ok, &env(&[("HOST", "10.0.0.7:8443")])).unwrap();
    assert_eq!(c.upstreams[0].url.to_string(), "http://10.0.0.7:8443/v1");
}

#[test]
fn rule_error_texts() {
    let cases: &[(&str, &str)] = &[
        (
            "[[rules]]\nname = \"r\"\nclass = \"sticky\"\npath = \"/x\"",
            r#"rules[0].class = "sticky": must be "stateless" or "stateful""#,
        ),
        (
            "[[rules]]\nname = \"r\"\nclass = \"stateful\"",
            r#"rules[0] = "r": a rule needs at least one condition (methods, path, header_*, body_*)"#,
        ),
        (
            "[[rules]]\nname = \"has space\"\nclass = \"stateful\"\npath = \"/x\"",
            r#"rules[0].name = "has space": a rule name is 1-64 letters, digits, '_', '.' or '-'; it becomes a metric label"#,
        ),
        (
            "[[rules]]\nname = \"default\"\nclass = \"stateful\"\npath = \"/x\"",
            r#"rules[0].name = "default": is already used by another rule; rule names must be unique"#,
        ),
        (
            "[[rules]]\nname = \"a\"\nclass = \"stateful\"\npath = \"/x\"\n[[rules]]\nname = \"a\"\nclass = \"stateless\"\npath = \"/y\"",
            r#"rules[1].name = "a": is already used by another rule; rule names must be unique"#,
        ),
        (
            "[[rules]]\nname = \"r\"\nclass = \"stateful\"\nmethods = [\"PO ST\"]",
            r#"rules[0].methods[0] = "PO ST": is not an HTTP method"#,
        ),
        (
            "[[rules]]\nname = \"r\"\nclass = \"stateful\"\nheader_present = [\"bad header\"]",
            r#"rules[0].header_present[0] = "bad header": is not a valid HTTP header name"#,
        ),
        (
            "[[rules]]\nname = \"r\"\nclass = \"stateful\"\nmethods = [\"POST\"]\nbody_equals = { \"/a\" = [1] }",
            r#"rules[0].body_equals."/a" = [1]: must be a string, number or boolean"#,
        ),
        (
            "[classifier]\ndisable = [\"default\"]",
            r#"classifier.disable[0] = "default": the default rule cannot be disabled; add a catch-all [[rules]] entry instead"#,
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(error_plus(extra), *want, "with {extra:?}");
    }
    let unknown = error_plus("[classifier]\ndisable = [\"nope\"]");
    assert!(
        unknown.starts_with(r#"classifier.disable[0] = "nope": is not a built-in rule (known: "#),
        "{unknown}"
    );
    // Pattern and pointer errors carry the classifier's own rule text after the key and value.
    let path = error_plus("[[rules]]\nname = \"r\"\nclass = \"stateful\"\npath = \"x\"");
    assert!(path.starts_with(r#"rules[0].path = "x": "#), "{path}");
    let pointer =
        error_plus("[[rules]]\nname = \"r\"\nclass = \"stateful\"\nbody_present = [\"store\"]");
    assert!(
        pointer.starts_with(r#"rules[0].body_present[0] = "store": "#),
        "{pointer}"
    );
    // Body conditions need methods that carry a body, or every GET would be read and refused.
    assert_eq!(
        error_plus("[[rules]]\nname = \"r\"\nclass = \"stateful\"\nbody_present = [\"/a\"]"),
        r#"rules[0].methods = []: a rule with body_* conditions must list only methods that carry a body, such as ["POST"]"#
    );
    assert_eq!(
        error_plus(
            "[[rules]]\nname = \"r\"\nclass = \"stateful\"\nmethods = [\"POST\", \"GET\"]\nbody_absent = [\"/a\"]"
        ),
        r#"rules[0].methods = ["POST", "GET"]: a rule with body_* conditions must list only methods that carry a body, such as ["POST"]"#
    );
}

#[test]
fn missing_file_names_the_path() {
    let e = Config::load(std::path::Path::new("/nonexistent/switchyard.toml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("cannot read config file /nonexistent/switchyard.toml: "),
        "{e}"
    );
}

#[test]
fn workers_default_to_one_per_cpu_and_accept_1_to_256() {
    let c = load(MINIMAL).unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(c.server.workers, cpus.min(defaults::MAX_WORKERS));
    for n in [1, 3, 256] {
        let text = MINIMAL.replacen(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"127.0.0.1:8080\"\nworkers = {n}"),
            1,
        );
        assert_eq!(load(&text).unwrap().server.workers, n);
    }
    for (bad, shown) in [("0", "0"), ("257", "257"), ("-2", "-2")] {
        let e = error_with(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"127.0.0.1:8080\"\nworkers = {bad}"),
        );
        assert_eq!(
            e,
            format!("server.workers = {shown}: must be a whole number from 1 to 256 (omit it for one per CPU)"),
        );
    }
    let e = error_with(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:8080\"\nworkers = \"four\"",
    );
    assert!(
        e.contains("workers = \"four\"") && e.contains("expected i64"),
        "{e}"
    );
}

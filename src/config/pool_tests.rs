//! Config tests for endpoint pools, health checks, `[affinity]` and `[accounting]` (issue #4).

use super::tests::env;
use super::*;

const BASE: &str = r#"
[server]
listen = "127.0.0.1:8080"

[upstreams.primary]
url = "http://127.0.0.1:18081/v1"

[upstreams.secondary]
{SECONDARY}

[routing]
stateless = "primary"
stateful = "secondary"
{EXTRA}
"#;

const POOL: &str = r#"endpoints = [
  { url = "http://127.0.0.1:18082/v1", name = "east" },
  { url = "http://127.0.0.1:18083/v1", weight = 3 },
]"#;

fn load(secondary: &str, extra: &str) -> Result<Config, ConfigError> {
    let text = BASE
        .replace("{SECONDARY}", secondary)
        .replace("{EXTRA}", extra);
    Config::from_toml_str_with_env(&text, &env(&[("REDIS_URL", "redis://10.0.0.1:6379/2")]))
}

fn error(secondary: &str, extra: &str) -> String {
    match load(secondary, extra) {
        Ok(_) => panic!("expected an error for {secondary:?} / {extra:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_single_url_is_a_pool_of_one() {
    let c = load("url = \"http://127.0.0.1:18082/v1\"", "").unwrap();
    let up = &c.upstreams[1];
    assert_eq!(up.endpoints.len(), 1);
    assert_eq!(up.endpoints[0].name, "127.0.0.1:18082");
    assert_eq!(up.endpoints[0].weight, 1);
    assert_eq!(up.balance, Balance::P2c);
    assert_eq!(up.retries, defaults::RETRIES);
    assert_eq!(up.health.active, None);
    assert_eq!(up.health.eject_after, defaults::EJECT_AFTER);
    assert_eq!(
        c.affinity.store,
        AffinityStore::Memory {
            capacity: defaults::AFFINITY_CAPACITY
        }
    );
    assert_eq!(c.affinity.on_endpoint_down, OnEndpointDown::Fail);
    assert_eq!(
        c.affinity.session_headers,
        vec![
            "mcp-session-id",
            "x-amzn-bedrock-agentcore-runtime-session-id"
        ]
    );
    assert!(c.accounting.tokens);
    assert!(!c.accounting.inject_include_usage);
}

#[test]
fn endpoints_names_weights_and_health() {
    let pool = format!(
        "{POOL}\nbalance = \"round_robin\"\nretries = 2\n[upstreams.secondary.health]\npath = \"/v1/models\"\ninterval = \"5s\"\ntimeout = \"1s\"\nhealthy_threshold = 1\nunhealthy_threshold = 4\neject_after = 5\neject_for = \"30s\""
    );
    let c = load(&pool, "").unwrap();
    let up = &c.upstreams[1];
    let names: Vec<(&str, u32)> = up
        .endpoints
        .iter()
        .map(|e| (e.name.as_str(), e.weight))
        .collect();
    assert_eq!(names, [("east", 1), ("127.0.0.1:18083", 3)]);
    assert_eq!(up.url.to_string(), "http://127.0.0.1:18082/v1");
    assert_eq!(up.balance, Balance::RoundRobin);
    assert_eq!(up.retries, 2);
    assert_eq!(
        up.health,
        Health {
            active: Some(ActiveHealth {
                path: "/v1/models".into(),
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(1),
                healthy_threshold: 1,
                unhealthy_threshold: 4,
            }),
            eject_after: 5,
            eject_for: Duration::from_secs(30),
        }
    );
}

#[test]
fn affinity_and_accounting() {
    let c = load(
        POOL,
        "[affinity]\nstore = \"redis\"\nredis_url = \"${REDIS_URL}\"\nttl = \"12h\"\non_endpoint_down = \"rebalance\"\nsession_headers = [\"X-Session-Id\", \"mcp-session-id\"]\n[accounting]\ntokens = false\ninject_include_usage = true",
    )
    .unwrap();
    assert_eq!(
        c.affinity.store,
        AffinityStore::Redis {
            url: "redis://10.0.0.1:6379/2".into(),
            key_prefix: defaults::REDIS_KEY_PREFIX.into(),
            timeout: defaults::REDIS_TIMEOUT,
            local_capacity: defaults::AFFINITY_CAPACITY,
        }
    );
    assert_eq!(c.affinity.ttl, Duration::from_secs(12 * 3600));
    assert_eq!(c.affinity.on_endpoint_down, OnEndpointDown::Rebalance);
    assert_eq!(c.affinity.session_headers.len(), 3);
    assert_eq!(c.affinity.session_headers[2], "x-session-id");
    assert_eq!(
        c.accounting,
        Accounting {
            tokens: false,
            inject_include_usage: true
        }
    );
}

#[test]
fn error_texts() {
    let url = "url = \"http://127.0.0.1:18082/v1\"";
    let cases: &[(&str, &str, &str)] = &[
        (
            "",
            "",
            "upstreams.secondary.url = (missing): set the upstream's url, such as \"https://contoso.openai.azure.com/openai/v1\", or an endpoints list",
        ),
        (
            &format!("{url}\n{POOL}"),
            "",
            "upstreams.secondary.endpoints = [...]: set either url (one endpoint) or endpoints (a pool), not both",
        ),
        (
            "endpoints = []",
            "",
            "upstreams.secondary.endpoints = 0 entries: list between 1 and 64 endpoints",
        ),
        (
            "endpoints = [{ url = \"http://127.0.0.1:1/v1\" }, { url = \"http://127.0.0.1:1/v1\" }]",
            "",
            "upstreams.secondary.endpoints[1].url = \"http://127.0.0.1:1/v1\": the same url is listed twice (http://127.0.0.1:1/v1)",
        ),
        (
            "endpoints = [{ url = \"http://127.0.0.1:1/v1\", name = \"a\" }, { url = \"http://127.0.0.1:2/v1\", name = \"a\" }]",
            "",
            "upstreams.secondary.endpoints[1].url = \"http://127.0.0.1:2/v1\": endpoint names must be unique within an upstream; upstreams.secondary.endpoints[0].url already has it (set name = \"…\")",
        ),
        (
            "endpoints = [{ url = \"http://127.0.0.1:1/v1\", name = \"east side\" }]",
            "",
            "upstreams.secondary.endpoints[0].name = \"east side\": an endpoint name is 1-64 letters, digits, '_', '-', '.' or ':'; it becomes a metric label",
        ),
        (
            "endpoints = [{ url = \"http://127.0.0.1:1/v1\", weight = 0 }]",
            "",
            "upstreams.secondary.endpoints[0].weight = 0: must be between 1 and 100",
        ),
        (
            "endpoints = [{ url = \"ftp://127.0.0.1:1/v1\" }]",
            "",
            "upstreams.secondary.endpoints[0].url = \"ftp://127.0.0.1:1/v1\": scheme must be http or https",
        ),
        (
            "endpoints = [{ url = \"http://127.0.0.1:1/v1\" }, { url = \"https://example.com/v1\" }]",
            "",
            "upstreams.secondary.endpoints[1].url = \"https://example.com/v1\": all endpoints of an upstream use one scheme (http here); TLS settings apply to all of them",
        ),
        (
            "endpoints = [{ url = \"http://127.0.0.1:18081/v1\" }, { url = \"http://127.0.0.1:2/v1\" }]",
            "",
            "routing.stateful = \"secondary\": upstreams.primary and upstreams.secondary have the same url http://127.0.0.1:18081/v1; stateless and stateful traffic must reach different endpoints",
        ),
        (
            &format!("{url}\nbalance = \"random\""),
            "",
            "upstreams.secondary.balance = \"random\": must be \"p2c\" (power of two choices on in-flight requests) or \"round_robin\"",
        ),
        (
            &format!("{url}\nretries = 9"),
            "",
            "upstreams.secondary.retries = 9: must be between 0 and 5",
        ),
        (
            &format!("{url}\n[upstreams.secondary.health]\ninterval = \"1s\""),
            "",
            "upstreams.secondary.health.interval = (set): applies to active health checks; set health.path too, such as \"/openai/v1/models\"",
        ),
        (
            &format!("{url}\n[upstreams.secondary.health]\npath = \"v1/models\""),
            "",
            "upstreams.secondary.health.path = \"v1/models\": must be an absolute path on the endpoint's host, such as \"/openai/v1/models\"",
        ),
        (
            &format!("{url}\n[upstreams.secondary.health]\npath = \"/v1/models\"\ninterval = \"1s\"\ntimeout = \"2s\""),
            "",
            "upstreams.secondary.health.timeout = \"2s\": must not be longer than health.interval",
        ),
        (
            &format!("{url}\n[upstreams.secondary.health]\neject_after = 0"),
            "",
            "upstreams.secondary.health.eject_after = 0: must be between 1 and 100",
        ),
        (
            url,
            "[affinity]\nstore = \"disk\"",
            "affinity.store = \"disk\": must be \"memory\" or \"redis\"",
        ),
        (
            url,
            "[affinity]\nstore = \"redis\"",
            "affinity.redis_url = (missing): store = \"redis\" needs the server's URL, such as \"redis://127.0.0.1:6379/0\" or \"${REDIS_URL}\"",
        ),
        (
            url,
            "[affinity]\nstore = \"redis\"\nredis_url = \"http://x\"",
            "affinity.redis_url = \"http://x\": must be a redis://, rediss://, redis+unix:// or unix:// URL",
        ),
        (
            url,
            "[affinity]\nredis_url = \"redis://x\"",
            "affinity.redis_url = (set): applies to store = \"redis\"",
        ),
        (
            url,
            "[affinity]\nstore = \"redis\"\nredis_url = \"redis://x\"\ncapacity = 5",
            "affinity.capacity = (set): applies to store = \"memory\"; the local cache in front of Redis is redis_local_capacity",
        ),
        (
            url,
            "[affinity]\ncapacity = 0",
            "affinity.capacity = 0: must be between 1 and 100000000 entries",
        ),
        (
            url,
            "[affinity]\nttl = \"2y\"",
            "affinity.ttl = \"2y\": must be a positive duration of at most a year, such as \"30d\" or \"12h\"",
        ),
        (
            url,
            "[affinity]\non_endpoint_down = \"failover\"",
            "affinity.on_endpoint_down = \"failover\": must be \"fail\" (answer 503: the state is on that endpoint) or \"rebalance\"",
        ),
        (
            url,
            "[affinity]\nsession_headers = [\"bad header\"]",
            "affinity.session_headers[0] = \"bad header\": is not a valid header name",
        ),
        (
            url,
            "[affinity]\nstore = \"redis\"\nredis_url = \"redis://x\"\nredis_timeout = \"1m\"",
            "affinity.redis_timeout = \"1m\": must be a positive duration of at most 10s, such as \"100ms\"",
        ),
    ];
    for (secondary, extra, want) in cases {
        assert_eq!(error(secondary, extra), *want, "{secondary} / {extra}");
    }
}

#[test]
fn sigv4_signs_for_each_endpoints_region() {
    let c = load(
        "kind = \"bedrock\"\nauth = \"sigv4\"\nendpoints = [{ url = \"https://bedrock-runtime.us-east-1.amazonaws.com\" }, { url = \"https://bedrock-runtime.eu-west-1.amazonaws.com\" }]",
        "",
    )
    .unwrap();
    let regions: Vec<&str> = c.upstreams[1]
        .endpoints
        .iter()
        .map(|e| match &e.auth {
            UpstreamAuth::SigV4(s) => s.region.as_str(),
            _ => "not sigv4",
        })
        .collect();
    assert_eq!(regions, ["us-east-1", "eu-west-1"]);
}

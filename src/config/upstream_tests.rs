//! Config tests for upstream kinds, credentials, model maps and upstream TLS (issue #3).

use super::tests::env;
use super::*;

/// Two upstreams; `{PRIMARY}` and `{SECONDARY}` are replaced by each test's extra keys.
const BASE: &str = r#"
[server]
listen = "127.0.0.1:8080"

[upstreams.primary]
url = "http://127.0.0.1:18081/v1"
{PRIMARY}

[upstreams.secondary]
url = "http://127.0.0.1:18082/v1"
{SECONDARY}

[routing]
stateless = "primary"
stateful = "secondary"
"#;

fn load_with(primary: &str, secondary: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let text = BASE
        .replace("{PRIMARY}", primary)
        .replace("{SECONDARY}", secondary);
    Config::from_toml_str_with_env(&text, &env(vars))
}

fn load(primary: &str, secondary: &str) -> Result<Config, ConfigError> {
    load_with(
        primary,
        secondary,
        &[("AZURE_KEY", "az-secret"), ("BEDROCK_KEY", "br-secret")],
    )
}

fn error(primary: &str, secondary: &str) -> String {
    match load(primary, secondary) {
        Ok(_) => panic!("expected an error for {primary:?} / {secondary:?}"),
        Err(e) => e.to_string(),
    }
}

fn value(v: &SecretValue) -> &str {
    v.0.to_str().unwrap()
}

#[test]
fn kinds_and_their_credentials() {
    let c = load(
        "kind = \"azure_openai\"\napi_key = \"${AZURE_KEY}\"",
        "kind = \"bedrock\"\nauth = \"api_key\"\napi_key = \"${BEDROCK_KEY}\"",
    )
    .unwrap();
    let (azure, bedrock) = (&c.upstreams[0], &c.upstreams[1]);
    assert_eq!(azure.kind, UpstreamKind::AzureOpenAi);
    assert!(matches!(&azure.auth, UpstreamAuth::ApiKeyHeader(v) if value(v) == "az-secret"));
    assert!(!azure.forward_client_credentials);
    assert_eq!(bedrock.kind, UpstreamKind::Bedrock);
    assert!(matches!(&bedrock.auth, UpstreamAuth::Bearer(v) if value(v) == "Bearer br-secret"));
    assert!(!bedrock.forward_client_credentials);
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("az-secret") && !debug.contains("br-secret"),
        "{debug}"
    );

    // The default kind is openai: api_key is a bearer token; no credentials means the
    // client's own pass through.
    let c = load("api_key = \"${AZURE_KEY}\"", "").unwrap();
    assert_eq!(c.upstreams[0].kind, UpstreamKind::OpenAi);
    assert!(
        matches!(&c.upstreams[0].auth, UpstreamAuth::Bearer(v) if value(v) == "Bearer az-secret")
    );
    assert!(matches!(c.upstreams[1].auth, UpstreamAuth::None));
    assert!(c.upstreams[1].forward_client_credentials);

    let c = load(
        "kind = \"azure_openai\"\nbearer_token_file = \"/var/run/secrets/azure/token\"",
        "kind = \"azure_openai\"\nbearer_token = \"${AZURE_KEY}\"",
    )
    .unwrap();
    assert!(
        matches!(&c.upstreams[0].auth, UpstreamAuth::BearerFile(p) if p.to_str() == Some("/var/run/secrets/azure/token"))
    );
    assert!(
        matches!(&c.upstreams[1].auth, UpstreamAuth::Bearer(v) if value(v) == "Bearer az-secret")
    );
}

#[test]
fn bedrock_api_key_defaults_to_the_aws_environment_variable() {
    let c = load_with(
        "",
        "kind = \"bedrock\"\nauth = \"api_key\"",
        &[("AWS_BEARER_TOKEN_BEDROCK", "from-env\n")],
    )
    .unwrap();
    assert!(
        matches!(&c.upstreams[1].auth, UpstreamAuth::Bearer(v) if value(v) == "Bearer from-env")
    );
    let e = load_with("", "kind = \"bedrock\"\nauth = \"api_key\"", &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "upstreams.secondary.api_key: environment variable AWS_BEARER_TOKEN_BEDROCK is not set"
    );
}

#[test]
fn sigv4_region_and_service_come_from_the_host_or_the_config() {
    let cases = [
        (
            "https://bedrock-runtime.us-east-1.amazonaws.com/openai/v1",
            "bedrock",
            "us-east-1",
        ),
        (
            "https://bedrock-mantle.eu-west-1.api.aws/v1",
            "bedrock-mantle",
            "eu-west-1",
        ),
        (
            "https://bedrock-agentcore.ap-southeast-2.amazonaws.com",
            "bedrock-agentcore",
            "ap-southeast-2",
        ),
        (
            "https://vpce-0abc.bedrock-runtime.us-west-2.vpce.amazonaws.com",
            "bedrock",
            "us-west-2",
        ),
    ];
    for (url, service, region) in cases {
        let secondary = "kind = \"bedrock\"\nauth = \"sigv4\"".to_owned();
        let text = BASE
            .replace("{PRIMARY}", "")
            .replace(
                "url = \"http://127.0.0.1:18082/v1\"",
                &format!("url = \"{url}\""),
            )
            .replace("{SECONDARY}", &secondary);
        let c = Config::from_toml_str_with_env(&text, &env(&[])).unwrap();
        let UpstreamAuth::SigV4(s) = &c.upstreams[1].auth else {
            panic!("{url}: not sigv4");
        };
        assert_eq!(
            (s.service.as_str(), s.region.as_str()),
            (service, region),
            "{url}"
        );
        assert_eq!(s.profile, None);
        assert_eq!(
            c.upstreams[1].auth.describe(),
            format!(
                "SigV4 ({service} in {region}, credentials from the AWS default credential chain)"
            )
        );
    }
    // Explicit settings win; a loopback host needs them.
    let c = load(
        "",
        "kind = \"bedrock\"\nauth = \"sigv4\"\nregion = \"eu-central-1\"\nservice = \"bedrock-mantle\"\nprofile = \"prod\"",
    )
    .unwrap();
    assert_eq!(
        c.upstreams[1].auth.describe(),
        "SigV4 (bedrock-mantle in eu-central-1, credentials from profile \"prod\")"
    );
    assert_eq!(c.upstreams[0].auth.describe(), "client credentials pass");
    let sigv4 = match &c.upstreams[1].auth {
        UpstreamAuth::SigV4(s) => Some(s),
        _ => None,
    };
    assert_eq!(
        sigv4,
        Some(&SigV4Settings {
            region: "eu-central-1".to_owned(),
            service: "bedrock-mantle".to_owned(),
            profile: Some("prod".to_owned()),
        })
    );
}

#[test]
fn model_maps_and_azure_classic() {
    let c = load(
        "kind = \"azure_openai\"\napi_version = \"2024-10-21\"\ndeployments = { \"gpt-4o\" = \"gpt4o-prod\" }\nmodels = { \"gpt-4o-mini\" = \"mini-2024\" }",
        "models = { \"claude\" = \"anthropic.claude-sonnet-4\" }",
    );
    // The classic API wants the /openai base, not /openai/v1 ...
    let e = c.unwrap_err().to_string();
    assert_eq!(
        e,
        r#"upstreams.primary.url = "http://127.0.0.1:18081/v1": with api_version (the classic deployments API) the url is the /openai base, e.g. "https://contoso.openai.azure.com/openai"; the v1 API needs no api_version"#
    );
    // ... which it gets here.
    let text = BASE
        .replace("http://127.0.0.1:18081/v1", "http://127.0.0.1:18081/openai")
        .replace(
            "{PRIMARY}",
            "kind = \"azure_openai\"\napi_version = \"2024-10-21\"\ndeployments = { \"gpt-4o\" = \"gpt4o-prod\" }\nmodels = { \"gpt-4o-mini\" = \"mini-2024\" }",
        )
        .replace("{SECONDARY}", "models = { \"claude\" = \"anthropic.claude-sonnet-4\" }");
    let c = Config::from_toml_str_with_env(&text, &env(&[])).unwrap();
    let classic = c.upstreams[0].azure_classic.as_ref().unwrap();
    assert_eq!(classic.api_version, "2024-10-21");
    assert_eq!(classic.deployments.get("gpt-4o"), Some("gpt4o-prod"));
    assert_eq!(c.upstreams[0].models.get("gpt-4o-mini"), Some("mini-2024"));
    assert_eq!(
        c.upstreams[1].models.get("claude"),
        Some("anthropic.claude-sonnet-4")
    );
    assert!(c.upstreams[1].azure_classic.is_none());
}

#[test]
fn error_texts() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "http2_max_streams = 0",
            "",
            "upstreams.primary.http2_max_streams = 0: must be between 1 and 1000 streams (at most the upstream's SETTINGS_MAX_CONCURRENT_STREAMS)",
        ),
        (
            "",
            "http2_max_streams = 1001",
            "upstreams.secondary.http2_max_streams = 1001: must be between 1 and 1000 streams (at most the upstream's SETTINGS_MAX_CONCURRENT_STREAMS)",
        ),
        (
            "kind = \"vertex\"",
            "",
            r#"upstreams.primary.kind = "vertex": must be one of "openai", "azure_openai", "bedrock""#,
        ),
        (
            "kind = \"azure_openai\"\napi_key = \"${AZURE_KEY}\"\nbearer_token = \"${AZURE_KEY}\"",
            "",
            "upstreams.primary.bearer_token = <redacted>: set only one of api_key, bearer_token",
        ),
        (
            "kind = \"azure_openai\"\napi_key = \"${MISSING}\"",
            "",
            "upstreams.primary.api_key: environment variable MISSING is not set",
        ),
        (
            "kind = \"azure_openai\"\napi_key = \"\"",
            "",
            "upstreams.primary.api_key = <redacted>: must not be empty",
        ),
        (
            "kind = \"azure_openai\"\nregion = \"us-east-1\"",
            "",
            r#"upstreams.primary.region = "us-east-1": is not a setting of kind = "azure_openai" (it belongs to kind = "bedrock")"#,
        ),
        (
            "",
            "kind = \"bedrock\"",
            r#"upstreams.secondary.auth = (missing): a bedrock upstream needs auth = "api_key" or auth = "sigv4""#,
        ),
        (
            "",
            "kind = \"bedrock\"\nauth = \"iam\"",
            r#"upstreams.secondary.auth = "iam": must be "api_key" (a Bedrock API key sent as a bearer token) or "sigv4""#,
        ),
        (
            "",
            "kind = \"bedrock\"\nauth = \"sigv4\"",
            "upstreams.secondary.region = (missing): cannot be derived from the host 127.0.0.1; set it, e.g. region = \"us-east-1\"",
        ),
        (
            "",
            "kind = \"bedrock\"\nauth = \"sigv4\"\nregion = \"us-east-1\"",
            "upstreams.secondary.service = (missing): cannot be derived from the host 127.0.0.1; set the signing name: \"bedrock\", \"bedrock-mantle\" or \"bedrock-agentcore\"",
        ),
        (
            "",
            "kind = \"bedrock\"\nauth = \"sigv4\"\nregion = \"US East\"\nservice = \"bedrock\"",
            r#"upstreams.secondary.region = "US East": must be an AWS region such as "us-east-1""#,
        ),
        (
            "",
            "kind = \"bedrock\"\nauth = \"sigv4\"\nregion = \"us-east-1\"\nservice = \"bedrock\"\napi_key = \"x\"",
            "upstreams.secondary.api_key = <redacted>: only applies with auth = \"api_key\"; SigV4 reads AWS credentials from the environment or the shared credentials file",
        ),
        (
            "",
            "kind = \"bedrock\"\nauth = \"api_key\"\napi_key = \"k\"\nregion = \"us-east-1\"",
            r#"upstreams.secondary.region = "us-east-1": only applies with auth = "sigv4""#,
        ),
        (
            "",
            "kind = \"bedrock\"\nauth = \"api_key\"\napi_key = \"k\"\nforward_client_credentials = true",
            "upstreams.secondary.forward_client_credentials = true: a bedrock upstream never receives the client's credentials",
        ),
        (
            "api_key = \"k\"\nforward_client_credentials = true",
            "",
            "upstreams.primary.forward_client_credentials = true: cannot forward the client's credentials to an upstream that gets its own",
        ),
        (
            "api_key = \"k\"\nset_headers = { authorization = \"Bearer x\" }",
            "",
            r#"upstreams.primary.set_headers.authorization = "authorization": conflicts with api_key: the gateway sets this upstream's credentials"#,
        ),
        (
            "api_version = \"2024-10-21\"",
            "",
            r#"upstreams.primary.api_version = "2024-10-21": only applies to kind = "azure_openai""#,
        ),
        (
            "kind = \"azure_openai\"\ndeployments = { \"gpt-4o\" = \"d\" }",
            "",
            r#"upstreams.primary.deployments = {...}: the classic deployments API needs api_version, e.g. api_version = "2024-10-21""#,
        ),
        (
            "kind = \"azure_openai\"\napi_version = \"2024/10\"",
            "",
            r#"upstreams.primary.api_version = "2024/10": must be an Azure OpenAI API version such as "2024-10-21" or "2025-04-01-preview""#,
        ),
        (
            "models = { \"gpt-4o\" = \"\" }",
            "",
            r#"upstreams.primary.models."gpt-4o" = "": must be the provider's model name: non-empty text without control characters"#,
        ),
        (
            "ca = \"certs/corp.pem\"",
            "",
            "upstreams.primary.ca = (set): only applies to https:// upstreams; the url is http://127.0.0.1:18081/v1",
        ),
        (
            "danger_accept_invalid_certs = true",
            "",
            "upstreams.primary.danger_accept_invalid_certs = (set): only applies to https:// upstreams; the url is http://127.0.0.1:18081/v1",
        ),
    ];
    for (primary, secondary, want) in cases {
        assert_eq!(
            error(primary, secondary),
            *want,
            "{primary:?} / {secondary:?}"
        );
    }
}

#[test]
fn azure_deployment_names_are_checked() {
    let text = BASE
        .replace("http://127.0.0.1:18081/v1", "http://127.0.0.1:18081/openai")
        .replace(
            "{PRIMARY}",
            "kind = \"azure_openai\"\napi_version = \"2024-10-21\"\ndeployments = { \"gpt-4o\" = \"a/b\" }",
        )
        .replace("{SECONDARY}", "");
    let e = Config::from_toml_str_with_env(&text, &env(&[])).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"upstreams.primary.deployments."gpt-4o" = "a/b": must be an Azure deployment name: letters, digits, '-', '_' and '.'"#
    );
}

#[test]
fn https_upstreams_verify_by_default_and_name_bad_ca_files() {
    let text = BASE
        .replace(
            "http://127.0.0.1:18081/v1",
            "https://example.openai.azure.com/openai/v1",
        )
        .replace("{PRIMARY}", "")
        .replace("{SECONDARY}", "");
    let c = Config::from_toml_str_with_env(&text, &env(&[])).unwrap();
    assert!(!c.upstreams[0].danger_accept_invalid_certs);

    let with = |extra: &str| {
        BASE.replace(
            "http://127.0.0.1:18081/v1",
            "https://example.openai.azure.com/openai/v1",
        )
        .replace("{PRIMARY}", extra)
        .replace("{SECONDARY}", "")
    };
    let e = Config::from_toml_str_with_env(&with("ca = \"/nonexistent/ca.pem\""), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(r#"upstreams.primary.ca = "/nonexistent/ca.pem": cannot read the file: "#),
        "{e}"
    );
    let e = Config::from_toml_str_with_env(&with("client_cert = \"/tmp/c.pem\""), &env(&[]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        r#"upstreams.primary.client_cert = "/tmp/c.pem": needs client_key, the certificate's private key"#
    );
    let e = Config::from_toml_str_with_env(
        &with("ca = \"/tmp/ca.pem\"\ndanger_accept_invalid_certs = true"),
        &env(&[]),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        r#"upstreams.primary.ca = "/tmp/ca.pem": has no effect with danger_accept_invalid_certs = true; remove one of them"#
    );
}

#[test]
fn default_ports_are_dropped_from_upstream_urls() {
    let cases = [
        (
            "https://example.openai.azure.com:443/openai/v1",
            "https://example.openai.azure.com/openai/v1",
        ),
        ("http://127.0.0.1:80/v1", "http://127.0.0.1/v1"),
        ("https://[::1]:443/v1", "https://[::1]/v1"),
        ("https://example.com:8443/v1", "https://example.com:8443/v1"),
        ("http://127.0.0.1:443/v1", "http://127.0.0.1:443/v1"),
    ];
    for (url, want) in cases {
        let text = BASE
            .replace("http://127.0.0.1:18081/v1", url)
            .replace("{PRIMARY}", "")
            .replace("{SECONDARY}", "");
        let c = Config::from_toml_str_with_env(&text, &env(&[])).unwrap();
        assert_eq!(c.upstreams[0].url.to_string(), want, "{url}");
    }
}

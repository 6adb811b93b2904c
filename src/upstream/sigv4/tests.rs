//! SigV4 signing against the AWS test suite, header hygiene, expiry and background refresh.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri};

use super::*;

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

/// The AWS SigV4 test suite's fixed inputs (aws-sig-v4-test-suite, shipped with aws-sigv4).
const SUITE_KEY: &str = "AKIDEXAMPLE";
const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const SUITE_TOKEN: &str = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
const SUITE_SCOPE: &str = "Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request";

fn suite_time() -> SystemTime {
    humantime::parse_rfc3339("2015-08-30T12:36:00Z").unwrap()
}

fn suite_settings() -> SigV4Settings {
    SigV4Settings {
        region: "us-east-1".to_owned(),
        service: "service".to_owned(),
        profile: None,
    }
}

fn identity(token: Option<&str>) -> Identity {
    Credentials::new(
        SUITE_KEY,
        SUITE_SECRET,
        token.map(str::to_owned),
        None,
        "test",
    )
    .into()
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// Sign like the gateway does, at the suite's time, and return the resulting headers.
fn sign_at(
    time: SystemTime,
    token: Option<&str>,
    method: &str,
    uri: &str,
    mut map: HeaderMap,
    body: &[u8],
) -> HeaderMap {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let uri: Uri = uri.parse().unwrap();
    let request = Request {
        method: &method,
        uri: &uri,
        body,
    };
    sign_request(
        &identity(token),
        &suite_settings(),
        time,
        &request,
        &mut map,
    )
    .unwrap();
    map
}

fn suite_sign(method: &str, uri: &str, pairs: &[(&str, &str)], body: &[u8]) -> HeaderMap {
    sign_at(suite_time(), None, method, uri, headers(pairs), body)
}

fn text<'a>(map: &'a HeaderMap, name: &str) -> &'a str {
    map.get(name)
        .unwrap_or_else(|| panic!("no {name} header in {map:?}"))
        .to_str()
        .unwrap()
}

fn signed_headers(map: &HeaderMap) -> String {
    let auth = text(map, "authorization");
    let start = auth.find("SignedHeaders=").unwrap() + "SignedHeaders=".len();
    auth[start..].split(',').next().unwrap().to_owned()
}

fn signature(map: &HeaderMap) -> String {
    let auth = text(map, "authorization");
    auth.rsplit("Signature=").next().unwrap().to_owned()
}

fn expected(signed: &str, signature: &str) -> String {
    format!("AWS4-HMAC-SHA256 {SUITE_SCOPE}, SignedHeaders={signed}, Signature={signature}")
}

// ---------------------------------------------------------------------------------------
// The AWS SigV4 test suite (header-signed-request.txt of each case)
// ---------------------------------------------------------------------------------------

#[test]
fn suite_get_vanilla() {
    let out = suite_sign("GET", "https://example.amazonaws.com/", &[], b"");
    assert_eq!(
        text(&out, "authorization"),
        expected(
            "host;x-amz-date",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        )
    );
    assert_eq!(text(&out, "x-amz-date"), "20150830T123600Z");
    assert!(out.get("x-amz-security-token").is_none());
}

#[test]
fn suite_get_vanilla_query_order_key_case() {
    let out = suite_sign(
        "GET",
        "https://example.amazonaws.com/?Param2=value2&Param1=value1",
        &[],
        b"",
    );
    assert_eq!(
        text(&out, "authorization"),
        expected(
            "host;x-amz-date",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        )
    );
}

/// A path segment holding an ARN, as in Bedrock's `/model/{arn}/invoke`: the gateway sends it
/// percent-encoded once and the canonical request encodes it again (every AWS service but S3).
#[test]
fn suite_double_url_encode() {
    let settings = SigV4Settings {
        region: "us-east-2".to_owned(),
        service: "lambda".to_owned(),
        profile: None,
    };
    let method = Method::POST;
    let uri: Uri = "https://lambda.us-east-2.amazonaws.com/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-west-2%3A892717189312%3Afunction%3Amy-rusty-fun/invocations"
        .parse()
        .unwrap();
    let request = Request {
        method: &method,
        uri: &uri,
        body: b"",
    };
    let time = humantime::parse_rfc3339("2021-05-11T15:40:45Z").unwrap();
    let mut out = HeaderMap::new();
    sign_request(&identity(None), &settings, time, &request, &mut out).unwrap();
    assert_eq!(
        text(&out, "authorization"),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20210511/us-east-2/lambda/aws4_request, \
         SignedHeaders=host;x-amz-date, \
         Signature=4b93abbcc68be32bd64c18e2c71150660ab4c29bbd6c32a383a7517a88fc1804"
    );
}

#[test]
fn suite_post_header_key_sort() {
    let out = suite_sign(
        "POST",
        "https://example.amazonaws.com/",
        &[("my-header1", "value1")],
        b"",
    );
    assert_eq!(
        text(&out, "authorization"),
        expected(
            "host;my-header1;x-amz-date",
            "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"
        )
    );
}

#[test]
fn suite_post_x_www_form_urlencoded_signs_the_body() {
    // The original suite's case: content-type signed, body hashed, no content-sha256 header.
    let out = suite_sign(
        "POST",
        "https://example.amazonaws.com/",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"Param1=value1",
    );
    assert_eq!(
        text(&out, "authorization"),
        expected(
            "content-type;host;x-amz-date",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"
        )
    );
}

#[test]
fn suite_get_vanilla_with_session_token() {
    let out = sign_at(
        suite_time(),
        Some(SUITE_TOKEN),
        "GET",
        "https://example.amazonaws.com/",
        HeaderMap::new(),
        b"",
    );
    assert_eq!(
        text(&out, "authorization"),
        expected(
            "host;x-amz-date;x-amz-security-token",
            "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
        )
    );
    assert_eq!(text(&out, "x-amz-security-token"), SUITE_TOKEN);
    assert!(out.get("x-amz-security-token").unwrap().is_sensitive());
    assert!(out.get("authorization").unwrap().is_sensitive());
}

// ---------------------------------------------------------------------------------------
// What is signed, what is stripped
// ---------------------------------------------------------------------------------------

#[test]
fn client_credentials_and_signing_headers_are_replaced() {
    let dirty = suite_sign(
        "POST",
        "https://example.amazonaws.com/",
        &[
            ("authorization", "Bearer client-secret"),
            ("x-amz-date", "19990101T000000Z"),
            ("x-amz-security-token", "client-token"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
            ("host", "attacker.example"),
            ("my-header1", "value1"),
        ],
        b"",
    );
    let clean = suite_sign(
        "POST",
        "https://example.amazonaws.com/",
        &[("my-header1", "value1")],
        b"",
    );
    assert_eq!(dirty, clean, "the client's signing headers leave no trace");
    for (name, value) in &dirty {
        let value = value.to_str().unwrap();
        assert!(
            !value.contains("client") && !value.contains("attacker"),
            "{name}: {value}"
        );
    }
    assert!(dirty.get("host").is_none());
    assert!(dirty.get("x-amz-content-sha256").is_none());
    assert_eq!(dirty.get_all("authorization").iter().count(), 1);
}

#[test]
fn headers_a_proxy_may_rewrite_are_sent_unsigned() {
    let out = suite_sign(
        "POST",
        "https://example.amazonaws.com/",
        &[
            ("content-type", "application/json"),
            ("content-length", "2"),
            ("user-agent", "OpenAI/Python 1.0"),
            ("x-amzn-trace-id", "Root=1-abc"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("expect", "100-continue"),
            ("x-request-id", "req-1"),
        ],
        b"{}",
    );
    assert_eq!(
        signed_headers(&out),
        "content-type;host;x-amz-date;x-request-id"
    );
    assert_eq!(text(&out, "user-agent"), "OpenAI/Python 1.0", "still sent");
    assert_eq!(text(&out, "content-length"), "2", "still sent");
}

#[test]
fn a_header_value_that_is_not_ascii_is_sent_unsigned() {
    let mut map = headers(&[("content-type", "application/json")]);
    map.insert("x-note", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
    let out = sign_at(
        suite_time(),
        None,
        "POST",
        "https://example.amazonaws.com/",
        map,
        b"{}",
    );
    assert_eq!(signed_headers(&out), "content-type;host;x-amz-date");
    assert_eq!(out.get("x-note").unwrap().as_bytes(), b"caf\xc3\xa9");

    // One unreadable value leaves the whole name unsigned: signing the other value alone
    // would not match what AWS sees (both values).
    let mut map = headers(&[("content-type", "application/json"), ("x-note", "plain")]);
    map.append("x-note", HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
    let out = sign_at(
        suite_time(),
        None,
        "POST",
        "https://example.amazonaws.com/",
        map,
        b"{}",
    );
    assert_eq!(signed_headers(&out), "content-type;host;x-amz-date");
    assert_eq!(out.get_all("x-note").iter().count(), 2);
}

#[test]
fn repeated_headers_are_all_signed() {
    let one = suite_sign(
        "GET",
        "https://example.amazonaws.com/",
        &[("my-header1", "a"), ("my-header1", "b")],
        b"",
    );
    let other = suite_sign(
        "GET",
        "https://example.amazonaws.com/",
        &[("my-header1", "a")],
        b"",
    );
    assert_eq!(signed_headers(&one), "host;my-header1;x-amz-date");
    assert_ne!(signature(&one), signature(&other));
    assert_eq!(one.get_all("my-header1").iter().count(), 2);
}

#[test]
fn the_signature_covers_the_exact_body_bytes() {
    let uri = "https://bedrock-mantle.us-east-1.api.aws/openai/v1/responses";
    let a = suite_sign("POST", uri, &[], br#"{"model":"m","input":"hi"}"#);
    let b = suite_sign("POST", uri, &[], br#"{"model":"m", "input":"hi"}"#);
    assert_ne!(signature(&a), signature(&b));
}

/// The signed `host` is what hyper puts on the wire: the port only when it is not the
/// scheme's default. Recomputed here with aws-sigv4 and an explicit `host` header.
#[test]
fn the_signed_host_is_the_one_hyper_sends() {
    let cases = [
        ("http://127.0.0.1:8080/v1/x", "127.0.0.1:8080"),
        (
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/invoke",
            "bedrock-runtime.us-east-1.amazonaws.com",
        ),
        (
            "https://bedrock-runtime.us-east-1.amazonaws.com:443/model/m/invoke",
            "bedrock-runtime.us-east-1.amazonaws.com",
        ),
        ("http://example.com:80/", "example.com"),
        ("https://example.com:8443/", "example.com:8443"),
        ("http://[::1]:9000/", "[::1]:9000"),
    ];
    for (uri, host) in cases {
        let ours = suite_sign("GET", uri, &[], b"");
        let theirs = reference_signature("GET", uri, &[("host", host)], b"");
        assert_eq!(
            signature(&ours),
            theirs,
            "{uri} should be signed with host {host}"
        );
    }
}

/// aws-sigv4 used directly, with every header given explicitly (the way a verifier would).
fn reference_signature(method: &str, uri: &str, pairs: &[(&str, &str)], body: &[u8]) -> String {
    let identity = identity(None);
    let mut settings = SigningSettings::default();
    settings.excluded_headers = None;
    let params = SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("service")
        .time(suite_time())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let request = SignableRequest::new(
        method,
        uri,
        pairs.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (_, signature) = sign(request, &params).unwrap().into_parts();
    signature
}

#[test]
fn a_relative_uri_is_an_error_not_a_panic() {
    let method = Method::GET;
    let uri: Uri = "/v1/x".parse().unwrap();
    let request = Request {
        method: &method,
        uri: &uri,
        body: b"",
    };
    let mut map = HeaderMap::new();
    let err = sign_request(
        &identity(None),
        &suite_settings(),
        suite_time(),
        &request,
        &mut map,
    )
    .unwrap_err();
    assert_eq!(err, "the upstream URI /v1/x is not absolute");
}

// ---------------------------------------------------------------------------------------
// Loading, expiry, refresh
// ---------------------------------------------------------------------------------------

/// A provider that hands out scripted answers, one per call, and counts the calls.
#[derive(Debug, Default)]
struct Script {
    answers: Mutex<VecDeque<Result<Credentials, String>>>,
    calls: Mutex<usize>,
}

impl Script {
    fn new(answers: Vec<Result<Credentials, String>>) -> Arc<Script> {
        Arc::new(Script {
            answers: Mutex::new(answers.into()),
            calls: Mutex::new(0),
        })
    }

    fn calls(&self) -> usize {
        *self.calls.lock().unwrap()
    }
}

#[derive(Debug)]
struct ScriptProvider(Arc<Script>);

impl ProvideCredentials for ScriptProvider {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        *self.0.calls.lock().unwrap() += 1;
        let answer = self
            .0
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Err("no more scripted answers".to_owned()));
        future::ProvideCredentials::ready(answer.map_err(CredentialsError::provider_error))
    }
}

fn shared(script: &Arc<Script>) -> SharedCredentialsProvider {
    SharedCredentialsProvider::new(ScriptProvider(script.clone()))
}

fn creds(key: &str, expires_in: Option<Duration>) -> Credentials {
    Credentials::new(
        key,
        "secret",
        Some("token".to_owned()),
        expires_in.map(|d| SystemTime::now() + d),
        "test",
    )
}

fn bedrock_signer() -> SigV4Signer {
    SigV4Signer::new(
        "bedrock",
        &SigV4Settings {
            region: "us-east-1".to_owned(),
            service: "bedrock".to_owned(),
            profile: None,
        },
    )
}

fn current_key(signer: &SigV4Signer) -> Option<String> {
    let current = signer.state.current.load();
    current
        .as_deref()
        .and_then(|l| l.identity.data::<Credentials>())
        .map(|c| c.access_key_id().to_owned())
}

fn sign_one(signer: &SigV4Signer) -> Result<HeaderMap, AuthError> {
    let uri: Uri = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse"
        .parse()
        .unwrap();
    let mut map = headers(&[("authorization", "Bearer client-secret")]);
    signer.sign(&Method::POST, &uri, &mut map, b"{}")?;
    Ok(map)
}

/// Let the runtime run, its clock paused (so time jumps ahead whenever every task waits),
/// until `cond` holds; fails after three virtual hours.
async fn until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..3 * 3600 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn start_loads_static_credentials_and_signs_with_them() {
    let script = Script::new(vec![Ok(creds("AKIASTATIC", None))]);
    let signer = bedrock_signer();
    signer
        .start_with(shared(&script), "nowhere".to_owned())
        .await
        .unwrap();
    let out = sign_one(&signer).unwrap();
    let auth = text(&out, "authorization");
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIASTATIC/"),
        "{auth}"
    );
    assert!(
        auth.contains("/us-east-1/bedrock/aws4_request, SignedHeaders="),
        "{auth}"
    );
    assert_eq!(text(&out, "x-amz-security-token"), "token");
    assert_eq!(script.calls(), 1);
}

#[tokio::test]
async fn a_chain_that_finds_nothing_is_a_startup_error_naming_the_upstream_and_places() {
    let script = Script::new(vec![Err(
        "no providers in chain provided credentials".to_owned()
    )]);
    let err = bedrock_signer()
        .start_with(
            shared(&script),
            "the environment and ~/.aws/credentials".to_owned(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "upstream bedrock: no usable AWS credentials: an error occurred while loading credentials: \
         no providers in chain provided credentials; looked in the environment and ~/.aws/credentials"
    );
}

#[tokio::test]
async fn credentials_already_expired_at_start_are_refused() {
    let expired = Credentials::new(
        "AKIAOLD",
        "secret",
        None,
        Some(SystemTime::now() - Duration::from_secs(60)),
        "test",
    );
    let script = Script::new(vec![Ok(expired)]);
    let err = bedrock_signer()
        .start_with(shared(&script), "nowhere".to_owned())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(
            "upstream bedrock: no usable AWS credentials: the credentials found expired at "
        ),
        "{text}"
    );
}

#[test]
fn signing_before_start_is_a_credentials_error() {
    let err = sign_one(&bedrock_signer()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "upstream bedrock: no usable AWS credentials: no credentials were loaded (the upstream was not started)"
    );
}

#[test]
fn signing_with_expired_credentials_is_a_credentials_error() {
    let signer = bedrock_signer();
    let expiry = humantime::parse_rfc3339("2020-01-01T00:00:00Z").unwrap();
    let old = Credentials::new("AKIAOLD", "secret", None, Some(expiry), "test");
    signer.state.current.store(Some(Arc::new(Loaded::new(old))));
    let err = sign_one(&signer).unwrap_err();
    assert!(matches!(err, AuthError::Credentials { .. }));
    assert_eq!(
        err.to_string(),
        "upstream bedrock: no usable AWS credentials: the credentials expired at 2020-01-01T00:00:00Z and could not be refreshed"
    );
}

#[tokio::test(start_paused = true)]
async fn expiring_credentials_are_refreshed_before_they_expire() {
    let script = Script::new(vec![
        Ok(creds("AKIAFIRST", Some(Duration::from_secs(3600)))),
        Ok(creds("AKIASECOND", Some(Duration::from_secs(3600)))),
    ]);
    let signer = bedrock_signer();
    signer
        .start_with(shared(&script), "nowhere".to_owned())
        .await
        .unwrap();
    assert_eq!(current_key(&signer).as_deref(), Some("AKIAFIRST"));
    until("the second load", || {
        current_key(&signer).as_deref() == Some("AKIASECOND")
    })
    .await;
    assert_eq!(script.calls(), 2);
    let auth = text(&sign_one(&signer).unwrap(), "authorization").to_owned();
    assert!(auth.contains("Credential=AKIASECOND/"), "{auth}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_the_current_credentials_and_retries() {
    let script = Script::new(vec![
        Ok(creds("AKIAFIRST", Some(Duration::from_secs(3600)))),
        Err("sts unavailable".to_owned()),
        Ok(creds("AKIATHIRD", Some(Duration::from_secs(3600)))),
    ]);
    let signer = bedrock_signer();
    signer
        .start_with(shared(&script), "nowhere".to_owned())
        .await
        .unwrap();
    until("the failed refresh", || script.calls() >= 2).await;
    assert_eq!(current_key(&signer).as_deref(), Some("AKIAFIRST"));
    assert!(
        sign_one(&signer).is_ok(),
        "still signing with the old credentials"
    );
    until("the retry", || {
        current_key(&signer).as_deref() == Some("AKIATHIRD")
    })
    .await;
    assert_eq!(script.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_refresh_task_ends_when_the_signer_is_dropped() {
    let script = Script::new(vec![Ok(creds(
        "AKIAFIRST",
        Some(Duration::from_secs(3600)),
    ))]);
    let signer = bedrock_signer();
    signer
        .start_with(shared(&script), "nowhere".to_owned())
        .await
        .unwrap();
    assert_eq!(Arc::strong_count(&script), 2, "the task holds the provider");
    drop(signer);
    until("the task to drop the provider", || {
        Arc::strong_count(&script) == 1
    })
    .await;
    assert_eq!(script.calls(), 1, "no refresh after the drop");
}

#[tokio::test]
async fn credentials_without_expiry_start_no_refresh_task() {
    let script = Script::new(vec![Ok(creds("AKIASTATIC", None))]);
    let signer = bedrock_signer();
    signer
        .start_with(shared(&script), "nowhere".to_owned())
        .await
        .unwrap();
    assert_eq!(
        Arc::strong_count(&script),
        1,
        "the provider was dropped after loading"
    );
}

#[test]
fn refresh_waits_until_shortly_before_expiry() {
    let now = SystemTime::now();
    let at = |secs| refresh_wait(now + Duration::from_secs(secs), now);
    assert_eq!(at(3600), Duration::from_secs(3600 - 300));
    assert_eq!(
        at(400),
        Duration::from_secs(200),
        "half the lifetime when it is short"
    );
    assert_eq!(at(1), MIN_REFRESH_WAIT);
    assert_eq!(
        refresh_wait(now - Duration::from_secs(5), now),
        MIN_REFRESH_WAIT
    );
}

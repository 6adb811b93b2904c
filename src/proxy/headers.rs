//! Header hygiene shared by both directions: hop-by-hop removal and decision headers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Response header naming the class a request was routed as.
pub const CLASS_HEADER: HeaderName = HeaderName::from_static("x-switchyard-class");
/// Response header naming the upstream that served (or failed) the request.
pub const UPSTREAM_HEADER: HeaderName = HeaderName::from_static("x-switchyard-upstream");
/// Response header naming the rule that decided the class.
pub const RULE_HEADER: HeaderName = HeaderName::from_static("x-switchyard-rule");
/// Response header naming the marker the rule found (`body:/store`, `path:…`, …).
pub const MARKER_HEADER: HeaderName = HeaderName::from_static("x-switchyard-marker");
/// Response header naming the config that decided: the first 12 hex digits of its SHA-256
/// (`switchyard_config_info`, the audit trail's `config_sha256`).
pub const CONFIG_HEADER: HeaderName = HeaderName::from_static("x-switchyard-config");
/// The request id header, set on the way in and echoed on every response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Where a provider's own `x-request-id` goes when it differs from the gateway's.
pub const UPSTREAM_REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-upstream-request-id");

/// Where providers put their own request id, most specific first: Azure API Management,
/// Azure OpenAI, Amazon (both spellings), then OpenAI's `x-request-id`.
const PROVIDER_REQUEST_ID_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("apim-request-id"),
    HeaderName::from_static("x-ms-request-id"),
    HeaderName::from_static("x-amzn-requestid"),
    HeaderName::from_static("x-amzn-request-id"),
    REQUEST_ID_HEADER,
];

/// The provider's id for this request, for the access log.
pub fn provider_request_id(headers: &HeaderMap) -> Option<HeaderValue> {
    PROVIDER_REQUEST_ID_HEADERS
        .iter()
        .find_map(|name| headers.get(name))
        .cloned()
}

/// Connection-level headers (RFC 9110 §7.6.1) that a proxy must not forward, plus `trailer`:
/// trailer fields are not relayed (a buffered body drops them), so neither is their promise.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Whether `strip_hop_by_hop` keeps `upgrade`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// Keep it: the classifier reads it (`websocket.upgrade`) before the request is forwarded.
    Keep,
    /// Remove it: upgrades are not relayed by this proxy.
    Strip,
}

/// Remove hop-by-hop headers, including every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: Upgrade) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .filter(|name| upgrade == Upgrade::Strip || name != header::UPGRADE)
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if upgrade == Upgrade::Strip {
        headers.remove(header::UPGRADE);
    }
}

/// Response headers from an upstream that would mislead the client about the gateway:
/// `alt-svc` would send it to the upstream's alternative service instead of the gateway.
pub const UPSTREAM_ONLY_RESPONSE_HEADERS: [HeaderName; 1] = [header::ALT_SVC];

/// A header value from text known to be visible ASCII (rule names, markers); falls back to
/// a placeholder instead of failing a request over a label.
pub fn label_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// A request id for a request that comes without one: a random (v4) UUID, formatted on the
/// stack and copied once into the header value.
pub fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_connection_named_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("upgrade", HeaderValue::from_static("h2c"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("authorization", HeaderValue::from_static("Bearer k"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let mut kept = h.clone();
        strip_hop_by_hop(&mut h, Upgrade::Strip);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "content-type"]);

        strip_hop_by_hop(&mut kept, Upgrade::Keep);
        let mut left: Vec<&str> = kept.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "content-type", "upgrade"]);
    }

    #[test]
    fn upgrade_named_in_connection_is_kept_for_classification() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("Upgrade, mcp-session-id"),
        );
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("mcp-session-id", HeaderValue::from_static("abc"));
        strip_hop_by_hop(&mut h, Upgrade::Keep);
        assert!(h.contains_key("upgrade"));
        assert!(
            !h.contains_key("mcp-session-id"),
            "a marker hidden behind Connection is gone"
        );
        assert!(!h.contains_key("connection"));
    }

    #[test]
    fn generated_request_ids_are_distinct_v4_uuids() {
        let (a, b) = (new_request_id(), new_request_id());
        let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
        assert_ne!(a, b);
        for id in [a, b] {
            let parsed = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(parsed.get_version_num(), 4);
            assert_eq!(id, parsed.hyphenated().to_string());
        }
    }
}

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
/// The request id header, set on the way in and echoed on every response.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Where a provider's own `x-request-id` goes when it differs from the gateway's.
pub const UPSTREAM_REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-upstream-request-id");

/// Connection-level headers (RFC 9110 §7.6.1) that a proxy must not forward.
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

/// Remove hop-by-hop headers, including every header the `Connection` header names, and
/// `upgrade` (upgrades are not relayed by this proxy).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// A header value from text known to be visible ASCII (rule names, markers); falls back to
/// a placeholder instead of failing a request over a label.
pub fn label_value(text: &str) -> HeaderValue {
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
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "content-type"]);
    }
}

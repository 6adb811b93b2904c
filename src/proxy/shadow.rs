//! The shadow policy: `[shadow]` rules evaluated beside the enforced ones on every request,
//! never enforced. When they would have routed a request differently, the disagreement is
//! counted (`switchyard_shadow_disagreements_total`) and logged with the request id, so an
//! operator can try a policy change on live traffic before making it.

use http::HeaderMap;

use super::headers::REQUEST_ID_HEADER;
use crate::classify::{Class, Classifier, Inspection};
use crate::gateway::Gateway;

/// Label for a request the rule set refuses (an unreadable body with `unclassifiable =
/// "reject"`, an ambiguous path) rather than routes.
const REJECTED: &str = "rejected";

/// Evaluate the shadow rules' `inspection` (with the body when it was read) and compare the
/// class they pick with `enforced` (`None`: the enforced rules refused the request). The
/// shadow outcome is settled by the same `routing.unclassifiable` as the enforced one.
pub(super) fn compare(
    gw: &Gateway,
    classifier: &Classifier,
    inspection: Inspection,
    body: Option<&[u8]>,
    enforced: Option<Class>,
    headers: &HeaderMap,
) {
    let outcome = match inspection {
        Inspection::Decided(decision) => Ok(decision),
        Inspection::Unclassifiable(u) => Err(u),
        Inspection::NeedsBody(pending) => match body {
            Some(body) => pending.finish(classifier, body),
            // The caller reads the body whenever the shadow rules need it.
            None => return,
        },
    };
    gw.metrics.config.shadow_evaluated();
    let shadow = gw.policy.settle(outcome);
    let shadow_class = shadow.as_ref().ok().map(|d| d.class);
    if shadow_class == enforced {
        return;
    }
    let (shadow_label, rule, marker) = match &shadow {
        Ok(d) => (d.class.as_str(), &*d.rule, d.marker.to_string()),
        Err(u) => (REJECTED, u.reason.code(), String::new()),
    };
    let enforced_label = enforced.map_or(REJECTED, Class::as_str);
    gw.metrics
        .config
        .shadow_disagreement(enforced_label, shadow_label, rule);
    let request_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info!(
        target: "switchyard::shadow",
        request_id,
        enforced = enforced_label,
        shadow = shadow_label,
        shadow_rule = rule,
        shadow_marker = %marker,
        "shadow policy disagrees"
    );
}

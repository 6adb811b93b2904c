//! What the fuzz targets share: classifiers built from config text, as the gateway builds
//! them, and the invariants every decision must keep.
// Each target uses part of it.
#![allow(dead_code)]

use std::collections::HashSet;
use std::sync::OnceLock;

use switchyard::classify::{builtin_rule_names, Classifier, Decision, MarkerKind, DEFAULT_RULE};
use switchyard::config::Config;

/// The head of every fixture config: two plain-HTTP upstreams (no TLS files to read).
const HEAD: &str = r#"
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

/// Operator rules with path, method, header and body conditions (presence, absence, equality
/// with a string, a number, a boolean and null; wildcard and index pointers), so the trie
/// holds operator pointers beside the built-ins' ones.
const RULES: &str = r#"
[[rules]]
name = "tenant-sessions"
class = "stateful"
methods = ["POST"]
path = "/v1/agents/{id}/*"
header_present = ["x-tenant-session"]

[[rules]]
name = "pinned-metadata"
methods = ["POST"]
class = "stateful"
path = "/v1/responses"
body_present = ["/metadata/pin"]

[[rules]]
name = "gold-tier"
methods = ["POST"]
class = "stateful"
header_equals = { x-tier = "gold" }
body_equals = { "/tier" = "gold", "/n" = 1 }
body_absent = ["/store"]

[[rules]]
name = "batch-stateless"
class = "stateless"
methods = ["POST", "PUT"]
path = "/v1/custom/{kind}/*"
body_equals = { "/mode" = "batch", "/flag" = true }

[[rules]]
name = "first-input-tagged"
methods = ["POST"]
class = "stateful"
body_present = ["/input/0/meta/tag", "/messages/*/content/*/cache"]

[[rules]]
name = "null-marker"
methods = ["POST"]
class = "stateless"
body_equals = { "/input/1/type" = "null_probe", "/store" = false }

[[rules]]
name = "header-only"
class = "stateful"
header_present = ["x-pin-session"]
"#;

/// A classifier and what it may ever produce.
pub struct Fixture {
    pub name: &'static str,
    pub classifier: Classifier,
    /// `known[i]`: `RouteId` with index `i` is in `route_labels()`.
    known: Vec<bool>,
    labels: HashSet<String>,
    rule_names: HashSet<String>,
}

impl Fixture {
    fn new(name: &'static str, server: &str, classifier: &str) -> Fixture {
        let text = format!("[server]\nlisten = \"127.0.0.1:8080\"\n{server}\n{HEAD}\n{classifier}");
        let config = match Config::from_toml_str(&text) {
            Ok(config) => config,
            Err(e) => panic!("fixture {name}: {e}\n{text}"),
        };
        let settings = config.classifier;
        let mut rule_names: HashSet<String> =
            settings.rules.iter().map(|r| r.name.clone()).collect();
        rule_names.extend(builtin_rule_names().iter().map(|n| n.to_string()));
        rule_names.insert(DEFAULT_RULE.to_owned());
        let classifier = Classifier::new(settings);
        let mut known = Vec::new();
        let mut labels = HashSet::new();
        for (id, label) in classifier.route_labels() {
            if known.len() <= id.index() {
                known.resize(id.index() + 1, false);
            }
            known[id.index()] = true;
            labels.insert(label.to_owned());
        }
        Fixture {
            name,
            classifier,
            known,
            labels,
            rule_names,
        }
    }

    /// Whether `route` is one of the bounded set, and its label is one of the labels.
    pub fn check_route(&self, route: switchyard::classify::RouteId) {
        assert!(
            self.known.get(route.index()).copied().unwrap_or(false),
            "{}: route id {} is not in route_labels()",
            self.name,
            route.index()
        );
        let label = self.classifier.route_label(route);
        assert!(
            self.labels.contains(label),
            "{}: label {label:?} is not in route_labels()",
            self.name
        );
    }

    /// The invariants of a decision: a known route, a known rule, a consistent marker.
    pub fn check_decision(&self, decision: &Decision) {
        self.check_route(decision.route);
        assert!(
            self.rule_names.contains(&*decision.rule),
            "{}: unknown rule {:?}",
            self.name,
            decision.rule
        );
        if &*decision.rule == DEFAULT_RULE {
            assert_eq!(
                decision.marker.kind,
                MarkerKind::Default,
                "{}: {decision:?}",
                self.name
            );
            assert_eq!(
                decision.class,
                switchyard::classify::Class::Stateless,
                "{}",
                self.name
            );
        }
    }
}

/// Three classifiers: the usual `/v1` base with every built-in and the operator rules; a base
/// that shadows Azure's deployment prefix (the ARN-slot special case) with two built-ins off;
/// and operator rules alone at the root.
pub fn fixtures() -> &'static [Fixture] {
    static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        vec![
            Fixture::new("v1", "", &format!("[classifier]\nbuiltins = true\n{RULES}")),
            Fixture::new(
                "deployments",
                "base_path = \"/openai/deployments\"",
                &format!(
                    "[classifier]\ndisable = [\"responses.store\", \"chat.store\", \
                     \"body.item_reference\"]\n{RULES}"
                ),
            ),
            Fixture::new(
                "rules-only",
                "base_path = \"/\"",
                &format!("[classifier]\nbuiltins = false\n{RULES}"),
            ),
        ]
    })
}

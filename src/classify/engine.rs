//! The [`Classifier`]: compiled once per config; runs the two phases (head, then body).

use std::sync::Arc;

use http::header::CONTENT_ENCODING;
use http::{HeaderMap, Method};

use super::bits::BitSet;
use super::builtin::{BuiltinRule, Enabled, Place, Test};
use super::decide::{self, BodyRoute, Found, Hdr, Head, Hit};
use super::labels::{PrefixMatch, Routes};
use super::path;
use super::pointer::Pointer;
use super::route::Tpl;
use super::rules::OperatorRule;
use super::trie::{Captures, Trie};
use super::{
    ClassifierSettings, Decision, Marker, MarkerKind, RouteId, Unclassifiable,
    UnclassifiableReason, DEFAULT_RULE,
};

/// Classifies requests. Built once per config; `Send + Sync`, shared by all connections.
#[derive(Debug)]
pub struct Classifier {
    routes: Routes,
    rules: Vec<OperatorRule>,
    enabled: Enabled,
    trie: Trie,
    /// Capture slot of each built-in [`Place`], by `Place::index`.
    place_slots: Vec<usize>,
    /// Equality test id of each built-in [`Test`], by discriminant (= position in `Test::ALL`).
    test_ids: Vec<usize>,
    /// Built-in rule names, by `BuiltinRule::index`.
    rule_names: Vec<Arc<str>>,
    default_rule: Arc<str>,
    none: Marker,
    place_text: Vec<Arc<str>>,
    header_text: [Arc<str>; 3],
}

/// The result of [`Classifier::inspect`].
#[derive(Debug)]
pub enum Inspection {
    /// Decided from the head.
    Decided(Decision),
    /// A rule needs the body: buffer it and call [`PendingBody::finish`].
    NeedsBody(PendingBody),
    /// Refuse the request.
    Unclassifiable(Unclassifiable),
}

impl Inspection {
    /// The route the path matched, whatever the outcome.
    pub fn route(&self) -> RouteId {
        match self {
            Inspection::Decided(d) => d.route,
            Inspection::NeedsBody(p) => p.route(),
            Inspection::Unclassifiable(u) => u.route,
        }
    }
}

/// A classification waiting for the body. Holds no borrow of the request.
#[derive(Debug)]
pub struct PendingBody {
    route: RouteId,
    /// Operator rules with body conditions whose head conditions matched, before `terminal`.
    candidates: BitSet,
    terminal: Terminal,
}

#[derive(Debug)]
enum Terminal {
    /// What decides if no candidate's body conditions hold.
    Decided(Decision),
    /// The built-ins of a body route decide.
    Builtin(BodyRoute),
}

impl Classifier {
    pub fn new(settings: ClassifierSettings) -> Classifier {
        let enabled = Enabled::new(settings.builtins, &settings.disabled_builtins);
        let mut captures = Captures::default();
        let mut place_slots = Vec::with_capacity(Place::ALL.len());
        let mut place_text = Vec::with_capacity(Place::ALL.len());
        for place in Place::ALL {
            let (text, users) = place.spec();
            // The built-in pointers are literals covered by a unit test; never fails.
            let slot = match text.parse::<Pointer>() {
                Ok(pointer) => captures.slot(&pointer, enabled.any(users)),
                Err(_) => usize::MAX,
            };
            place_slots.push(slot);
            place_text.push(Arc::from(text));
        }
        let test_ids = Test::ALL
            .iter()
            .map(|test| {
                let (place, value, users) = test.spec();
                match place.spec().0.parse::<Pointer>() {
                    Ok(pointer) => captures.test(&pointer, Some(value), enabled.any(users)),
                    Err(_) => usize::MAX,
                }
            })
            .collect();
        let none = Marker {
            kind: MarkerKind::Default,
            text: Arc::from("none"),
        };
        let rules = settings
            .rules
            .into_iter()
            .map(|spec| OperatorRule::compile(spec, &mut captures, &none))
            .collect();
        Classifier {
            routes: Routes::new(&settings.base_path),
            rules,
            enabled,
            trie: captures.into_trie(),
            place_slots,
            test_ids,
            rule_names: BuiltinRule::ALL
                .iter()
                .map(|r| Arc::from(r.name()))
                .collect(),
            default_rule: Arc::from(DEFAULT_RULE),
            none,
            place_text,
            header_text: [Hdr::McpSession, Hdr::AgentcoreSession, Hdr::Upgrade]
                .map(|h| Arc::from(h.name())),
        }
    }

    /// Phase 1: head only. Cheap; never touches the body.
    pub fn inspect(&self, method: &Method, path: &str, headers: &HeaderMap) -> Inspection {
        let ambiguous = || {
            Inspection::Unclassifiable(Unclassifiable {
                route: RouteId::OTHER,
                reason: UnclassifiableReason::AmbiguousPath,
            })
        };
        let Ok(split) = path::split(path) else {
            return ambiguous();
        };
        let segments = split.segments();
        let segs = segments.as_slice();
        let (route, tpl, prefix) = self.routes.resolve(segs);
        if let Some(arn) = split.arn() {
            if !self.arn_in_slot(&split, arn, tpl, prefix) {
                return ambiguous();
            }
        }
        if tpl.is_none() && self.is_case_variant(segs) {
            return ambiguous();
        }

        let mut candidates = BitSet::new();
        let mut terminal = None;
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.head_matches(method, segs, headers) {
                continue;
            }
            if rule.has_body_conditions() {
                candidates.insert(i);
                continue;
            }
            terminal = Some(Terminal::Decided(self.operator_decision(rule, route)));
            break;
        }
        let terminal =
            terminal.unwrap_or_else(|| match decide::head(self.enabled, method, headers, tpl) {
                Head::Hit(hit) => Terminal::Decided(self.builtin_decision(hit, route)),
                Head::NeedsBody(body_route) => Terminal::Builtin(body_route),
                Head::Miss => Terminal::Decided(self.default_decision(route)),
            });
        match terminal {
            Terminal::Decided(decision) if candidates.is_empty() => Inspection::Decided(decision),
            terminal => match content_encoding(headers) {
                Some(coding) => Inspection::Unclassifiable(Unclassifiable {
                    route,
                    reason: UnclassifiableReason::Encoded(coding),
                }),
                None => Inspection::NeedsBody(PendingBody {
                    route,
                    candidates,
                    terminal,
                }),
            },
        }
    }

    /// Pure convenience for tests and `switchyard explain`: inspect, then finish with `body`
    /// if needed.
    pub fn classify(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Decision, Unclassifiable> {
        match self.inspect(method, path, headers) {
            Inspection::Decided(decision) => Ok(decision),
            Inspection::NeedsBody(pending) => pending.finish(self, body),
            Inspection::Unclassifiable(err) => Err(err),
        }
    }

    /// The label of `route`, e.g. "/v1/responses/{id}" or "other".
    pub fn route_label(&self, route: RouteId) -> &str {
        self.routes.label(route)
    }

    /// Every label this classifier can produce (a bounded set, fixed at construction).
    pub fn route_labels(&self) -> impl Iterator<Item = (RouteId, &str)> + '_ {
        self.routes.labels()
    }

    /// A path with an encoded `/` (segment `arn`) is unambiguous only if that segment is the
    /// ARN slot of an AWS route (`/model/{id}/…`, `/async-invoke/{arn}`, `/runtimes/{arn}/…`:
    /// the segment after the API path's first one), and reading the `/` as a separator leads
    /// to the same family: then the built-ins decide the same whichever way the upstream
    /// parses. (Operator rules see the ARN as one segment, as AWS does.)
    ///
    /// Under the same prefix the spread form always keeps the family (the AWS templates
    /// accept a multi-segment ARN, and no API template starts with an ARN parent); only a
    /// prefix tried earlier could take it elsewhere, so the spread form is resolved only when
    /// such a prefix exists (e.g. base `/openai/deployments`).
    fn arn_in_slot(
        &self,
        split: &path::SplitPath<'_>,
        arn: usize,
        tpl: Option<Tpl>,
        prefix: PrefixMatch,
    ) -> bool {
        let Some(family) = tpl.map(Tpl::family).filter(|f| f.is_aws()) else {
            return false;
        };
        if prefix.len + 1 != arn {
            return false;
        }
        if !prefix.arn_shadowed {
            return true;
        }
        let spread = split.spread_segments();
        let (_, spread_tpl, _) = self.routes.resolve(spread.as_slice());
        spread_tpl.map(Tpl::family) == Some(family)
    }

    /// Whether a path no template matched (`segs`) has ASCII capitals and matches one once
    /// lowercased (`/openai/v1/Responses`): a front end that matches paths case-insensitively
    /// (Azure APIM) would treat it as that endpoint, so `default` could be wrong. Parameter
    /// segments (deployments, ids, ARNs) may hold capitals freely: a path with them already
    /// matches as sent, and never gets here. Allocates only on this rare path.
    #[cold]
    #[inline(never)]
    fn is_case_variant(&self, segs: &[&str]) -> bool {
        if !segs
            .iter()
            .any(|s| s.bytes().any(|b| b.is_ascii_uppercase()))
        {
            return false;
        }
        let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
        let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
        self.routes.resolve(&lower).1.is_some()
    }

    fn operator_decision(&self, rule: &OperatorRule, route: RouteId) -> Decision {
        Decision {
            class: rule.class,
            rule: rule.name.clone(),
            marker: rule.marker.clone(),
            route,
        }
    }

    fn default_decision(&self, route: RouteId) -> Decision {
        Decision {
            class: super::Class::Stateless,
            rule: self.default_rule.clone(),
            marker: self.none.clone(),
            route,
        }
    }

    fn builtin_decision(&self, hit: Hit, route: RouteId) -> Decision {
        let text = |texts: &[Arc<str>], i: usize| texts.get(i).unwrap_or(&self.none.text).clone();
        let marker = match hit.found {
            Found::Path => Marker {
                kind: MarkerKind::Path,
                text: self.routes.label(route).clone(),
            },
            Found::Header(h) => Marker {
                kind: MarkerKind::Header,
                text: text(&self.header_text, h as usize),
            },
            Found::Body(place) => Marker {
                kind: MarkerKind::Body,
                text: text(&self.place_text, place.index()),
            },
        };
        Decision {
            class: hit.class,
            rule: text(&self.rule_names, hit.rule.index()),
            marker,
            route,
        }
    }

    fn place_slot(&self, place: Place) -> usize {
        self.place_slots
            .get(place.index())
            .copied()
            .unwrap_or(usize::MAX)
    }

    fn test_id(&self, test: Test) -> usize {
        self.test_ids
            .get(test as usize)
            .copied()
            .unwrap_or(usize::MAX)
    }
}

impl PendingBody {
    pub fn route(&self) -> RouteId {
        self.route
    }

    /// Phase 2: the exact body bytes (already buffered by the caller, ≤ max size). Borrows
    /// only; never copies the body. `classifier` must be the one that returned `self`.
    pub fn finish(self, classifier: &Classifier, body: &[u8]) -> Result<Decision, Unclassifiable> {
        let route = self.route;
        let facts = classifier
            .trie
            .scan(body)
            .map_err(|reason| Unclassifiable { route, reason })?;
        for i in self.candidates.iter() {
            if let Some(rule) = classifier.rules.get(i) {
                if rule.body_matches(&facts) {
                    return Ok(classifier.operator_decision(rule, route));
                }
            }
        }
        Ok(match self.terminal {
            Terminal::Decided(decision) => decision,
            Terminal::Builtin(body_route) => {
                let slot = |p| classifier.place_slot(p);
                let test = |t| classifier.test_id(t);
                let on = classifier.enabled;
                if let Some(place) = decide::invalid_marker(on, body_route, &facts, slot, test) {
                    let text = classifier.place_text.get(place.index());
                    let field = text.map_or_else(String::new, |t| t.to_string());
                    return Err(Unclassifiable {
                        route,
                        reason: UnclassifiableReason::InvalidMarker(field),
                    });
                }
                match decide::body(classifier.enabled, body_route, &facts, slot, test) {
                    Some(hit) => classifier.builtin_decision(hit, route),
                    None => classifier.default_decision(route),
                }
            }
        })
    }
}

/// The first content coding other than `identity`, if any.
fn content_encoding(headers: &HeaderMap) -> Option<String> {
    headers.get_all(CONTENT_ENCODING).iter().find_map(|value| {
        value
            .as_bytes()
            .split(|b| *b == b',')
            .map(<[u8]>::trim_ascii)
            .find(|t| !t.is_empty() && !t.eq_ignore_ascii_case(b"identity"))
            .map(|t| String::from_utf8_lossy(t).into_owned())
    })
}

//! Recognised API prefixes and the bounded route-label table (prefix + template → [`RouteId`]).

use std::collections::HashMap;
use std::sync::Arc;

use super::path;
use super::route::{self, Tpl};
use super::RouteId;

/// The label of every request whose path matches no template.
pub(crate) const OTHER: &str = "other";

#[derive(Clone, Debug, PartialEq, Eq)]
enum PrefixSeg {
    Literal(Box<str>),
    /// Any one segment, shown as `{name}` in labels.
    Placeholder(&'static str),
}

#[derive(Debug)]
struct Prefix {
    segs: Vec<PrefixSeg>,
    /// Holds the OpenAI-shaped table (OpenAI, Azure, Anthropic paths).
    api: bool,
    /// Holds the Bedrock runtime / AgentCore table.
    aws: bool,
    /// A prefix tried before this one could match a path whose segment right after this
    /// prefix is an ARN parent (`runtimes`, …): spreading an encoded ARN there may change
    /// which prefix matches, so the engine must resolve the spread form too.
    arn_shadowed: bool,
}

impl Prefix {
    fn label(&self) -> String {
        let mut out = String::new();
        for seg in &self.segs {
            out.push('/');
            match seg {
                PrefixSeg::Literal(lit) => out.push_str(lit),
                PrefixSeg::Placeholder(name) => {
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
            }
        }
        out
    }

    /// Whether this (earlier-tried) prefix could match a path that starts with `other` and
    /// has an ARN parent right after it.
    fn could_take_arn(&self, other: &Prefix) -> bool {
        let n = other.segs.len();
        let same_start = self.segs.iter().zip(&other.segs).all(|pair| match pair {
            (PrefixSeg::Literal(a), PrefixSeg::Literal(b)) => a == b,
            _ => true,
        });
        let takes_parent = match self.segs.get(n) {
            Some(PrefixSeg::Literal(lit)) => path::is_arn_parent(lit),
            Some(PrefixSeg::Placeholder(_)) => true,
            None => false,
        };
        same_start && takes_parent
    }

    /// The rest of `segs` after this prefix, if it starts with it.
    fn strip<'p, 's>(&self, segs: &'p [&'s str]) -> Option<&'p [&'s str]> {
        let rest = segs.get(self.segs.len()..)?;
        let matches = self.segs.iter().zip(segs).all(|(want, got)| match want {
            PrefixSeg::Literal(lit) => **lit == **got,
            PrefixSeg::Placeholder(_) => true,
        });
        matches.then_some(rest)
    }
}

/// The prefix a path matched (all zero/false when none did).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PrefixMatch {
    /// Segments the prefix took.
    pub(crate) len: usize,
    /// See `Prefix::arn_shadowed`.
    pub(crate) arn_shadowed: bool,
}

/// Prefixes, the label table and the (prefix, template) → label index.
#[derive(Debug)]
pub(crate) struct Routes {
    /// Longest first; the first whose rest matches a template wins.
    prefixes: Vec<Prefix>,
    labels: Vec<Arc<str>>,
    other: Arc<str>,
    /// `prefix index * Tpl::ALL.len() + template index` → label index (0: not applicable).
    grid: Vec<u16>,
}

impl Routes {
    pub(crate) fn new(base_path: &str) -> Routes {
        let lit = |s: &str| PrefixSeg::Literal(s.into());
        let base: Vec<PrefixSeg> = base_path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(lit)
            .collect();
        let builtin = [
            vec![lit("openai"), lit("v1")],
            vec![
                lit("openai"),
                lit("deployments"),
                PrefixSeg::Placeholder("deployment"),
            ],
            vec![lit("openai")],
            // OpenAI's own prefix, whatever the configured base (no Bedrock/AgentCore
            // routes under it unless it is the base). Skipped when it is the base.
            vec![lit("v1")],
        ];
        let mut prefixes = vec![Prefix {
            segs: base,
            api: true,
            aws: true,
            arn_shadowed: false,
        }];
        for segs in builtin {
            if prefixes.iter().all(|p| p.segs != segs) {
                prefixes.push(Prefix {
                    segs,
                    api: true,
                    aws: false,
                    arn_shadowed: false,
                });
            }
        }
        if prefixes.iter().all(|p| !p.segs.is_empty()) {
            prefixes.push(Prefix {
                segs: Vec::new(),
                api: false,
                aws: true,
                arn_shadowed: false,
            });
        }
        // Stable: on equal length the configured base stays first.
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.segs.len()));
        for p in 0..prefixes.len() {
            let shadowed = match (prefixes.get(..p), prefixes.get(p)) {
                (Some(before), Some(prefix)) => before.iter().any(|q| q.could_take_arn(prefix)),
                _ => true,
            };
            if let Some(prefix) = prefixes.get_mut(p) {
                prefix.arn_shadowed = shadowed;
            }
        }

        let other: Arc<str> = Arc::from(OTHER);
        let mut labels: Vec<Arc<str>> = vec![other.clone()];
        let mut index: HashMap<Arc<str>, u16> = HashMap::new();
        let mut grid = vec![0u16; prefixes.len() * Tpl::ALL.len()];
        for (p, prefix) in prefixes.iter().enumerate() {
            let head = prefix.label();
            for &tpl in Tpl::ALL {
                let applies = if tpl.family().is_aws() {
                    prefix.aws
                } else {
                    prefix.api
                };
                if !applies {
                    continue;
                }
                let label: Arc<str> = Arc::from(format!("{head}{}", tpl.path()));
                let id = match index.get(&label) {
                    Some(&id) => id,
                    None => {
                        let id = u16::try_from(labels.len()).unwrap_or(0);
                        labels.push(label.clone());
                        index.insert(label, id);
                        id
                    }
                };
                if let Some(cell) = grid.get_mut(p * Tpl::ALL.len() + tpl.index()) {
                    *cell = id;
                }
            }
        }
        Routes {
            prefixes,
            labels,
            other,
            grid,
        }
    }

    /// The route of a normalised path, its template when one matched, and which prefix
    /// matched.
    pub(crate) fn resolve(&self, segs: &[&str]) -> (RouteId, Option<Tpl>, PrefixMatch) {
        for (p, prefix) in self.prefixes.iter().enumerate() {
            let Some(rest) = prefix.strip(segs) else {
                continue;
            };
            let tpl = prefix
                .api
                .then(|| route::api(rest))
                .flatten()
                .or_else(|| prefix.aws.then(|| route::aws(rest)).flatten());
            if let Some(tpl) = tpl {
                let id = self
                    .grid
                    .get(p * Tpl::ALL.len() + tpl.index())
                    .copied()
                    .unwrap_or(0);
                let matched = PrefixMatch {
                    len: prefix.segs.len(),
                    arn_shadowed: prefix.arn_shadowed,
                };
                return (RouteId(id), Some(tpl), matched);
            }
        }
        (RouteId::OTHER, None, PrefixMatch::default())
    }

    pub(crate) fn label(&self, route: RouteId) -> &Arc<str> {
        self.labels.get(usize::from(route.0)).unwrap_or(&self.other)
    }

    pub(crate) fn labels(&self) -> impl Iterator<Item = (RouteId, &str)> + '_ {
        self.labels
            .iter()
            .enumerate()
            .map(|(i, l)| (RouteId(u16::try_from(i).unwrap_or(0)), &**l))
    }
}

//! Recognised API prefixes and the bounded route-label table (prefix + template → [`RouteId`]).

use std::collections::HashMap;
use std::sync::Arc;

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
        ];
        let mut prefixes = vec![Prefix {
            segs: base,
            api: true,
            aws: true,
        }];
        for segs in builtin {
            if prefixes.iter().all(|p| p.segs != segs) {
                prefixes.push(Prefix {
                    segs,
                    api: true,
                    aws: false,
                });
            }
        }
        if prefixes.iter().all(|p| !p.segs.is_empty()) {
            prefixes.push(Prefix {
                segs: Vec::new(),
                api: false,
                aws: true,
            });
        }
        // Stable: on equal length the configured base stays first.
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.segs.len()));

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

    /// The route of a normalised path, and its template when one matched.
    pub(crate) fn resolve(&self, segs: &[&str]) -> (RouteId, Option<Tpl>) {
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
                return (RouteId(id), Some(tpl));
            }
        }
        (RouteId::OTHER, None)
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

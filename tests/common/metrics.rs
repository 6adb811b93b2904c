//! A small Prometheus text-format matcher, after linkerd2-proxy's
//! `linkerd/app/integration/src/metrics.rs`: find samples by name and a subset of labels,
//! read their value, and fail with the similar lines when nothing matches.

use std::collections::BTreeMap;
use std::fmt;

/// One sample line: `name{k="v",...} value`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    pub line: String,
}

/// A parsed `/metrics` scrape.
#[derive(Clone, Debug)]
pub struct Scrape {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_line(l).unwrap_or_else(|e| panic!("bad metrics line {l:?}: {e}")))
            .collect();
        Scrape {
            text: text.to_owned(),
            samples,
        }
    }

    /// Samples with this name.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => return Err("no value".into()),
    };
    let mut labels = BTreeMap::new();
    let rest = if let Some(mut body) = rest.strip_prefix('{') {
        loop {
            body = body.trim_start_matches([',', ' ']);
            if let Some(after) = body.strip_prefix('}') {
                break after;
            }
            let eq = body.find('=').ok_or("label without '='")?;
            let key = body[..eq].trim().to_owned();
            let mut chars = body[eq + 1..].char_indices();
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next().map(|(_, c)| c) {
                        Some('n') => value.push('\n'),
                        Some(other) => value.push(other),
                        None => return Err("dangling escape".into()),
                    },
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    other => value.push(other),
                }
            }
            let end = end.ok_or("unterminated label value")?;
            labels.insert(key, value);
            body = &body[eq + 1 + end + 1..];
        }
    } else {
        rest
    };
    let value_text = rest.split_whitespace().next().ok_or("no value")?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|e| format!("value {v:?}: {e}"))?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
        line: line.to_owned(),
    })
}

/// Start a matcher for metric `name`.
pub fn metric(name: &str) -> MetricMatch {
    MetricMatch {
        name: name.to_owned(),
        labels: BTreeMap::new(),
    }
}

/// A metric name plus a subset of labels that a sample must carry.
#[derive(Clone, Debug)]
pub struct MetricMatch {
    name: String,
    labels: BTreeMap<String, String>,
}

impl fmt::Display for MetricMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{{", self.name)?;
        for (i, (k, v)) in self.labels.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{k}={v:?}")?;
        }
        write!(f, "}}")
    }
}

impl MetricMatch {
    pub fn label(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.labels.insert(key.to_owned(), value.to_string());
        self
    }

    fn matches(&self, s: &Sample) -> bool {
        s.name == self.name
            && self
                .labels
                .iter()
                .all(|(k, v)| s.labels.get(k).is_some_and(|have| have == v))
    }

    /// Every sample this matcher selects.
    pub fn find<'a>(&self, scrape: &'a Scrape) -> Vec<&'a Sample> {
        scrape.samples.iter().filter(|s| self.matches(s)).collect()
    }

    /// The sum of the matching samples' values, or `None` if no sample matches.
    pub fn sum_in(&self, scrape: &Scrape) -> Option<f64> {
        let found = self.find(scrape);
        (!found.is_empty()).then(|| found.iter().map(|s| s.value).sum())
    }

    /// Assert that samples match and their values add up to `expected`.
    #[track_caller]
    pub fn assert_value(&self, scrape: &Scrape, expected: f64) {
        match self.sum_in(scrape) {
            Some(v) if (v - expected).abs() < 1e-9 => {}
            got => panic!(
                "expected {self} = {expected}, got {}\n{}",
                got.map_or_else(|| "no matching line".to_owned(), |v| v.to_string()),
                self.similar(scrape)
            ),
        }
    }

    /// Assert that samples match and their values add up to more than `floor`.
    #[track_caller]
    pub fn assert_above(&self, scrape: &Scrape, floor: f64) {
        match self.sum_in(scrape) {
            Some(v) if v > floor => {}
            got => panic!(
                "expected {self} > {floor}, got {:?}\n{}",
                got,
                self.similar(scrape)
            ),
        }
    }

    /// Assert that no sample matches (or all matching samples are zero).
    #[track_caller]
    pub fn assert_absent_or_zero(&self, scrape: &Scrape) {
        if let Some(v) = self.sum_in(scrape) {
            assert!(
                v == 0.0,
                "expected no {self} (or 0), got {v}\n{}",
                self.similar(scrape)
            );
        }
    }

    /// The lines with the same name, for failure messages.
    pub fn similar(&self, scrape: &Scrape) -> String {
        let lines: Vec<&str> = scrape.named(&self.name).map(|s| s.line.as_str()).collect();
        if lines.is_empty() {
            let prefix: Vec<&str> = scrape
                .samples
                .iter()
                .filter(|s| s.name.starts_with("switchyard_"))
                .map(|s| s.name.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            format!("no line named {}; names present: {prefix:?}", self.name)
        } else {
            format!("lines named {}:\n  {}", self.name, lines.join("\n  "))
        }
    }
}

/// Scrape the admin listener at `admin`.
pub async fn scrape(admin: std::net::SocketAddr) -> Scrape {
    let reply = super::HttpClient::http1(admin)
        .call(http::Method::GET, "/metrics", &[], bytes::Bytes::new())
        .await;
    assert_eq!(
        reply.status,
        http::StatusCode::OK,
        "GET /metrics: {}",
        reply.text()
    );
    Scrape::parse(&reply.text())
}

/// Scrape `admin` until `done` holds for the scrape (every 10 ms, up to `timeout`); returns
/// the last scrape either way, so that the caller's assertions explain what is missing.
pub async fn scrape_within(
    admin: std::net::SocketAddr,
    timeout: std::time::Duration,
    done: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let scrape = scrape(admin).await;
        if done(&scrape) || tokio::time::Instant::now() >= deadline {
            return scrape;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

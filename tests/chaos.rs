//! The no-leak invariant under chaos (issue #7, item 4): a bounded mixed load of stateless and
//! stateful requests, streamed and not, while a fault injector kills, restarts, slows, stalls,
//! resets and garbles the primary and the secondary (each behind a `FaultFront`) and the config
//! file is reloaded. The secondary must see no stateless request, the primary no stateful one,
//! and every client must get the right cloud's answer or a gateway error, never the other
//! cloud's answer and never a hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::faults::{Fault, FaultFront, Offset};
use common::{full, metric, HttpClient, ReqBody};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use switchyard::config::Config;
use switchyard::mock::{MockOptions, MockProvider, RecordedRequest};
use tokio::time::Instant;

/// Client tasks sending requests back to back.
const CLIENTS: usize = 12;
/// Each fault is injected on each front this many times.
const ROUNDS: usize = 2;
/// How long an ordinary fault lasts, and the healthy pause after each.
const FAULT_FOR: Duration = Duration::from_millis(400);
const PAUSE_FOR: Duration = Duration::from_millis(200);
/// Faults that end in a timeout last longer than it (first byte / idle: 1 s), so that the
/// gateway's timer fires before the fault's end resets the connection.
const TIMEOUT_FAULT_FOR: Duration = Duration::from_millis(2000);
/// A reload every this often while the chaos lasts.
const RELOAD_EVERY: Duration = Duration::from_secs(3);
/// No exchange may take longer (the gateway's own `timeouts.request` is 5 s).
const DEADLINE: Duration = Duration::from_secs(8);

/// What every config of this test sets: short timeouts, so that each fault resolves fast.
const BASE: &str = r#"
[server]
workers = 2

[timeouts]
connect = "200ms"
first_byte = "1s"
request = "5s"

[upstreams.primary]
pool_idle_timeout = "2s"

[upstreams.secondary]
pool_idle_timeout = "2s"
"#;

/// The config file's generation `n`: an operator rule renamed every time (the upstreams keep
/// their clients), `timeouts.idle` toggled every other time (both upstreams are rebuilt). The
/// rule matches a header no request carries, so no generation changes a request's class.
fn generation(n: usize) -> String {
    let idle = idle(n);
    format!(
        "[timeouts]\nidle = \"{idle}\"\n\n[[rules]]\nname = \"chaos-gen-{n}\"\nclass = \"stateful\"\nheader_present = [\"x-chaos-never-sent\"]\n"
    )
}

/// Generation `n`'s `timeouts.idle`.
fn idle(n: usize) -> &'static str {
    if n % 4 < 2 {
        "1s"
    } else {
        "1100ms"
    }
}

/// The faults injected, in order; the secondary's schedule is the same list rotated.
fn faults() -> Vec<Fault> {
    vec![
        Fault::Refuse, // kill, then a restart on the same port
        Fault::ResetOnAccept,
        Fault::Reset(Offset::Head(12)),
        Fault::Reset(Offset::Body(8)),
        Fault::Cut(Offset::Body(8)),
        Fault::HANG,
        Fault::Garbage,
        Fault::Trickle {
            bytes: 32,
            gap: Duration::from_millis(10),
        },
        Fault::Stall(Offset::Body(8)),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Class {
    Stateless,
    Stateful,
}

impl Class {
    fn as_str(self) -> &'static str {
        match self {
            Class::Stateless => "stateless",
            Class::Stateful => "stateful",
        }
    }

    /// The mock that must serve this class.
    fn mock(self) -> &'static str {
        match self {
            Class::Stateless => "primary",
            Class::Stateful => "secondary",
        }
    }
}

/// How a streamed answer proves it is whole.
#[derive(Clone, Copy)]
enum Whole {
    Json,
    ChatStream,
    ResponseStream,
}

/// One kind of request of the mixed load.
struct Shape {
    name: &'static str,
    class: Class,
    method: Method,
    path: &'static str,
    content_type: &'static str,
    body: Bytes,
    whole: Whole,
}

const BOUNDARY: &str = "chaosboundary";

fn shapes() -> Vec<Shape> {
    let json_shape = |name, class, path, body: Value, whole| Shape {
        name,
        class,
        method: Method::POST,
        path,
        content_type: "application/json",
        body: Bytes::from(body.to_string()),
        whole,
    };
    let get = |name, class, path| Shape {
        name,
        class,
        method: Method::GET,
        path,
        content_type: "application/json",
        body: Bytes::new(),
        whole: Whole::Json,
    };
    let messages = json!([{"role": "user", "content": "hi"}]);
    let upload = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"chaos.txt\"\r\n\
         Content-Type: text/plain\r\n\r\nsome file bytes\r\n--{BOUNDARY}--\r\n"
    );
    use Class::{Stateful, Stateless};
    vec![
        json_shape(
            "chat",
            Stateless,
            "/v1/chat/completions",
            json!({"model": "m", "messages": messages}),
            Whole::Json,
        ),
        json_shape(
            "chat stream",
            Stateless,
            "/v1/chat/completions",
            json!({"model": "m", "stream": true, "messages": messages}),
            Whole::ChatStream,
        ),
        json_shape(
            "embeddings",
            Stateless,
            "/v1/embeddings",
            json!({"model": "m", "input": "hi"}),
            Whole::Json,
        ),
        get("models", Stateless, "/v1/models"),
        json_shape(
            "responses store:false",
            Stateless,
            "/v1/responses",
            json!({"model": "m", "input": "hi", "store": false}),
            Whole::Json,
        ),
        json_shape(
            "responses previous_response_id",
            Stateful,
            "/v1/responses",
            json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}),
            Whole::Json,
        ),
        json_shape(
            "responses store:true stream",
            Stateful,
            "/v1/responses",
            json!({"model": "m", "input": "hi", "store": true, "stream": true}),
            Whole::ResponseStream,
        ),
        json_shape(
            "chat store:true",
            Stateful,
            "/v1/chat/completions",
            json!({"model": "m", "store": true, "messages": messages}),
            Whole::Json,
        ),
        json_shape(
            "conversations",
            Stateful,
            "/v1/conversations",
            json!({"metadata": {"topic": "chaos"}}),
            Whole::Json,
        ),
        Shape {
            name: "files upload",
            class: Stateful,
            method: Method::POST,
            path: "/v1/files",
            content_type: "multipart/form-data; boundary=chaosboundary",
            body: Bytes::from(upload),
            whole: Whole::Json,
        },
        json_shape(
            "threads",
            Stateful,
            "/v1/threads",
            json!({"messages": []}),
            Whole::Json,
        ),
        get("responses/{id}", Stateful, "/v1/responses/resp_1"),
    ]
}

/// What one client got.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Got {
    /// The right mock's whole answer.
    Success,
    /// A gateway error before any byte: status and `error.code`.
    GatewayError(u16, String),
    /// The right mock's head, then a body that broke off.
    StreamCut,
    /// Anything else: the wrong cloud, a malformed error, a truncated body that ended
    /// cleanly, no answer, or no answer in time.
    Violation(String),
}

/// Codes a gateway error may carry when an upstream fails.
const UPSTREAM_CODES: [&str; 4] = [
    "upstream_unavailable",
    "upstream_protocol",
    "timeout",
    "no_healthy_endpoint",
];

type Http = Client<HttpConnector, ReqBody>;

async fn exchange(client: &Http, addr: SocketAddr, shape: &Shape, id: &str) -> Got {
    let mut req = Request::builder()
        .method(shape.method.clone())
        .uri(format!("http://{addr}{}", shape.path))
        .header("x-request-id", id)
        .header("x-expect-class", shape.class.as_str());
    if shape.method == Method::POST {
        req = req.header("content-type", shape.content_type);
    }
    if matches!(shape.whole, Whole::ChatStream | Whole::ResponseStream) {
        // Streams long enough (20 events, 10 ms apart) to be cut in the middle.
        req = req
            .header("x-mock-chunks", "20")
            .header("x-mock-chunk-delay-ms", "10");
    }
    let req = req.body(full(shape.body.clone())).unwrap();
    let answer = async {
        let resp = match client.request(req).await {
            Ok(resp) => resp,
            Err(e) => return Got::Violation(format!("no response: {}", common::client::chain(&e))),
        };
        let status = resp.status();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (provider, class, echoed) = (
            header("x-mock-provider"),
            header("x-switchyard-class"),
            header("x-request-id"),
        );
        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
        if class.as_deref() != Some(shape.class.as_str()) {
            return Got::Violation(format!("{status}: decided {class:?}"));
        }
        if echoed.as_deref() != Some(id) {
            return Got::Violation(format!("{status}: x-request-id {echoed:?}"));
        }
        match provider {
            Some(p) if p != shape.class.mock() => {
                Got::Violation(format!("{status} from the wrong cloud: {p}"))
            }
            Some(_) => match body {
                Err(_) => Got::StreamCut,
                Ok(_) if status != StatusCode::OK => {
                    Got::Violation(format!("the right mock answered {status}"))
                }
                Ok(bytes) if !whole(shape.whole, &bytes) => Got::Violation(format!(
                    "a truncated body ended cleanly: {:?}",
                    String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(80)..])
                )),
                Ok(_) => Got::Success,
            },
            None => {
                let Ok(bytes) = body else {
                    return Got::Violation(format!("{status}: a gateway error's body broke off"));
                };
                let error = serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .map(|v| v["error"].clone());
                let code = error
                    .as_ref()
                    .and_then(|e| e["code"].as_str())
                    .unwrap_or_default();
                let shaped = error.as_ref().is_some_and(|e| {
                    ["message", "type", "param", "code"]
                        .iter()
                        .all(|k| e.get(*k).is_some())
                });
                let gateway_status = matches!(status.as_u16(), 499 | 502 | 503 | 504);
                if gateway_status && shaped && UPSTREAM_CODES.contains(&code) {
                    Got::GatewayError(status.as_u16(), code.to_owned())
                } else {
                    Got::Violation(format!(
                        "{status} without a mock: {}",
                        String::from_utf8_lossy(&bytes)
                    ))
                }
            }
        }
    };
    tokio::time::timeout(DEADLINE, answer)
        .await
        .unwrap_or_else(|_| Got::Violation(format!("no whole answer within {DEADLINE:?}")))
}

/// Whether a clean body is the whole answer.
fn whole(kind: Whole, body: &[u8]) -> bool {
    let events = common::sse_events(body);
    match kind {
        Whole::Json => serde_json::from_slice::<Value>(body).is_ok(),
        Whole::ChatStream => events.last().map(String::as_str) == Some("data: [DONE]"),
        Whole::ResponseStream => events
            .last()
            .is_some_and(|e| e.starts_with("event: response.completed")),
    }
}

/// Everything the clients saw.
#[derive(Default)]
struct Seen {
    /// Request id → class meant.
    sent: HashMap<String, Class>,
    outcomes: BTreeMap<(Class, Got), usize>,
    violations: Vec<String>,
}

/// The gateway, started from a config file, in front of two faulty fronts and their mocks.
struct Rig {
    primary: MockProvider,
    secondary: MockProvider,
    front_primary: Arc<FaultFront>,
    front_secondary: Arc<FaultFront>,
    gateway: switchyard::server::ServerHandle,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start() -> Rig {
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        let primary = MockProvider::start(local, MockOptions::new("primary"))
            .await
            .unwrap();
        let secondary = MockProvider::start(local, MockOptions::new("secondary"))
            .await
            .unwrap();
        let front_primary = Arc::new(FaultFront::start(primary.addr()).await);
        let front_secondary = Arc::new(FaultFront::start(secondary.addr()).await);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("switchyard.toml");
        std::fs::write(&path, text(&front_primary, &front_secondary, 0)).unwrap();
        let gateway = switchyard::server::start(Config::load(&path).unwrap())
            .await
            .unwrap();
        Rig {
            primary,
            secondary,
            front_primary,
            front_secondary,
            gateway,
            path,
            _dir: dir,
        }
    }

    /// Rewrite the file as generation `n` (in one rename) and `POST /reload`: the upstreams
    /// keep their clients when only the rule changed, and are rebuilt when `timeouts.idle` did.
    async fn reload(&self, n: usize) {
        let tmp = self.path.with_extension("toml.tmp");
        std::fs::write(&tmp, text(&self.front_primary, &self.front_secondary, n)).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
        let reply = HttpClient::http1(self.gateway.admin_addr)
            .call(Method::POST, "/reload", &[], Bytes::new())
            .await;
        assert_eq!(reply.status, StatusCode::OK, "reload {n}: {}", reply.text());
        let both = json!(["primary", "secondary"]);
        let (kept, rebuilt) = if idle(n - 1) == idle(n) {
            (both, json!([]))
        } else {
            (json!([]), both)
        };
        let body = reply.json();
        assert_eq!(body["upstreams_kept"], kept, "reload {n}: {body}");
        assert_eq!(body["upstreams_rebuilt"], rebuilt, "reload {n}: {body}");
    }
}

/// The config file's text for generation `n`, with the upstreams behind the fronts.
fn text(primary: &FaultFront, secondary: &FaultFront, n: usize) -> String {
    common::config_text(primary.addr(), secondary.addr(), &[BASE, &generation(n)])
}

/// Faults injected, by name and front.
type Injected = BTreeMap<(&'static str, SocketAddr), usize>;

/// Run `front`'s fault schedule: each fault in turn (starting at `skew`), then a healthy pause.
async fn inject(front: Arc<FaultFront>, skew: usize, counts: Arc<Mutex<Injected>>) {
    let faults = faults();
    for step in 0..ROUNDS * faults.len() {
        let fault = faults[(step + skew) % faults.len()];
        front.set(fault).await;
        *counts
            .lock()
            .unwrap()
            .entry((fault.name(), front.addr()))
            .or_default() += 1;
        let hold = match fault {
            Fault::Stall(_) => TIMEOUT_FAULT_FOR,
            _ => FAULT_FOR,
        };
        tokio::time::sleep(hold).await; // the fault's duration, not synchronisation
        front.set(Fault::Pass).await; // a restart on the same port after a kill
        tokio::time::sleep(PAUSE_FOR).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_chaos_no_request_crosses_and_every_client_gets_its_cloud_or_a_gateway_error() {
    let started = Instant::now();
    let rig = Rig::start().await;
    let proxy = rig.gateway.proxy_addr;
    let shapes: Vec<Arc<Shape>> = shapes().into_iter().map(Arc::new).collect();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        // Half the clients send stateless requests, half stateful ones, each cycling through
        // its class's shapes: a hang on one side does not starve the other of traffic.
        let class = [Class::Stateless, Class::Stateful][c % 2];
        let mine: Vec<Arc<Shape>> = shapes
            .iter()
            .filter(|s| s.class == class)
            .cloned()
            .collect();
        let (seen, stop) = (seen.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let http: Http = Client::builder(TokioExecutor::new()).build_http();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let shape = &mine[(c / 2 + i) % mine.len()];
                let id = format!("chaos-{c}-{i}");
                seen.lock().unwrap().sent.insert(id.clone(), shape.class);
                let got = exchange(&http, proxy, shape, &id).await;
                let mut seen = seen.lock().unwrap();
                if let Got::Violation(why) = &got {
                    let why = format!("{id} {} ({}): {why}", shape.name, shape.class.as_str());
                    seen.violations.push(why);
                }
                let key = match got {
                    Got::Violation(_) => Got::Violation(String::new()),
                    got => got,
                };
                *seen.outcomes.entry((shape.class, key)).or_default() += 1;
                i += 1;
            }
        }));
    }

    // The chaos: both fronts on their own schedules, reloads on a third.
    let injected: Arc<Mutex<Injected>> = Arc::default();
    let primary_chaos = tokio::spawn(inject(rig.front_primary.clone(), 0, injected.clone()));
    let secondary_chaos = tokio::spawn(inject(rig.front_secondary.clone(), 4, injected.clone()));
    let mut reloads = 0;
    while !(primary_chaos.is_finished() && secondary_chaos.is_finished()) {
        tokio::time::sleep(RELOAD_EVERY.min(Duration::from_millis(100))).await;
        if started.elapsed() >= RELOAD_EVERY * (reloads + 1) as u32 {
            reloads += 1;
            rig.reload(reloads).await;
        }
    }
    primary_chaos.await.unwrap();
    secondary_chaos.await.unwrap();
    let chaos_took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());

    // (a) What each mock received, by the id of the request and by its own marker header.
    let mut crossed = Vec::new();
    let mut reached: BTreeMap<(&str, Class), usize> = BTreeMap::new();
    for (mock, requests) in [
        ("primary", rig.primary.requests()),
        ("secondary", rig.secondary.requests()),
    ] {
        for r in &requests {
            let id = r.header("x-request-id").unwrap_or_default();
            let Some(&class) = seen.sent.get(id) else {
                crossed.push(format!(
                    "{mock} saw a request no client sent: {}",
                    describe(r)
                ));
                continue;
            };
            *reached.entry((mock, class)).or_default() += 1;
            if class.mock() != mock || r.header("x-expect-class") != Some(class.as_str()) {
                crossed.push(format!(
                    "{mock} saw {} meant as {}: {}",
                    id,
                    class.as_str(),
                    describe(r)
                ));
            }
        }
    }

    // (c) The counts.
    let total: usize = seen.outcomes.values().sum();
    println!("chaos: {total} requests from {CLIENTS} clients in {:.1?} ({chaos_took:.1?} of faults), {reloads} reloads", started.elapsed());
    for class in [Class::Stateless, Class::Stateful] {
        let n: usize = seen
            .outcomes
            .iter()
            .filter(|((c, _), _)| *c == class)
            .map(|(_, n)| n)
            .sum();
        println!("  {:<10} {n:>6} requests", class.as_str());
    }
    println!("requests by class and outcome:");
    for ((class, got), n) in &seen.outcomes {
        let got = match got {
            Got::Success => "success (right cloud)".to_owned(),
            Got::GatewayError(status, code) => format!("gateway error {status} {code}"),
            Got::StreamCut => "stream cut (right cloud)".to_owned(),
            Got::Violation(_) => "VIOLATION".to_owned(),
        };
        println!("  {:<10} {:<34} {n:>6}", class.as_str(), got);
    }
    println!("reached the mocks:");
    for ((mock, class), n) in &reached {
        println!("  {mock:<10} {:<10} {n:>6}", class.as_str());
    }
    println!("faults injected (primary, secondary):");
    let injected = injected.lock().unwrap().clone();
    for fault in faults() {
        let on = |front: &FaultFront| injected.get(&(fault.name(), front.addr())).copied();
        let (p, s) = (on(&rig.front_primary), on(&rig.front_secondary));
        println!(
            "  {:<18} {:>3} {:>3}",
            fault.name(),
            p.unwrap_or(0),
            s.unwrap_or(0)
        );
    }
    println!(
        "connections accepted by the fronts: primary {}, secondary {}",
        rig.front_primary.accepted(),
        rig.front_secondary.accepted()
    );
    let scrape = common::metrics::scrape_within(rig.gateway.admin_addr, common::SOON, |s| {
        metric("switchyard_requests_in_flight").sum_in(s) == Some(0.0)
    })
    .await;
    println!("switchyard_upstream_errors_total:");
    for s in metric("switchyard_upstream_errors_total").find(&scrape) {
        if s.value > 0.0 {
            println!(
                "  {:<10} {:<20} {:>6}",
                s.labels["upstream"], s.labels["kind"], s.value
            );
        }
    }

    assert!(
        crossed.is_empty(),
        "requests crossed the boundary:\n{}",
        crossed.join("\n")
    );
    assert!(
        seen.violations.is_empty(),
        "{} of {total} clients got neither their cloud's answer nor a gateway error:\n{}",
        seen.violations.len(),
        seen.violations
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    for class in [Class::Stateless, Class::Stateful] {
        let ok = seen
            .outcomes
            .get(&(class, Got::Success))
            .copied()
            .unwrap_or(0);
        assert!(
            ok > 0,
            "some {} requests succeeded between the faults",
            class.as_str()
        );
        assert!(reached.get(&(class.mock(), class)).copied().unwrap_or(0) > 0);
    }
    assert!(
        reloads >= 3,
        "the config was reloaded during the chaos ({reloads})"
    );
    metric("switchyard_config_reloads_total")
        .label("result", "success")
        .assert_value(&scrape, reloads as f64);
    // Every failure a client saw was counted once, by kind, on its class's upstream; and every
    // kind of failure the faults cause was seen on both upstreams.
    for class in [Class::Stateless, Class::Stateful] {
        let up = class.mock();
        let clients = |want: &dyn Fn(&Got) -> bool| -> f64 {
            seen.outcomes
                .iter()
                .filter(|((c, got), _)| *c == class && want(got))
                .map(|(_, n)| *n as f64)
                .sum()
        };
        let counted = |kinds: &[&str]| -> f64 {
            kinds
                .iter()
                .map(|kind| {
                    metric("switchyard_upstream_errors_total")
                        .label("upstream", up)
                        .label("kind", kind)
                        .sum_in(&scrape)
                        .unwrap_or(0.0)
                })
                .sum()
        };
        let code = |want: &'static str| move |got: &Got| matches!(got, Got::GatewayError(_, c) if c == want);
        let pairs = [
            (
                "502 upstream_unavailable",
                clients(&code("upstream_unavailable")),
                counted(&["connect", "tls"]),
            ),
            (
                "502 upstream_protocol",
                clients(&code("upstream_protocol")),
                counted(&["protocol"]),
            ),
            (
                "504 timeout",
                clients(&code("timeout")),
                counted(&["connect_timeout", "first_byte_timeout"]),
            ),
            (
                "stream cut",
                clients(&|g| *g == Got::StreamCut),
                counted(&["body_error", "idle_timeout", "request_timeout"]),
            ),
        ];
        for (what, seen_by_clients, in_metrics) in pairs {
            assert_eq!(
                seen_by_clients, in_metrics,
                "{up}: clients saw {seen_by_clients} × {what}, the metrics count {in_metrics}"
            );
        }
    }
    for up in ["primary", "secondary"] {
        for kind in [
            "connect",
            "protocol",
            "first_byte_timeout",
            "idle_timeout",
            "body_error",
        ] {
            metric("switchyard_upstream_errors_total")
                .label("upstream", up)
                .label("kind", kind)
                .assert_above(&scrape, 0.0);
        }
    }
    for up in ["primary", "secondary"] {
        metric("switchyard_requests_in_flight")
            .label("upstream", up)
            .assert_value(&scrape, 0.0);
    }
    rig.gateway.shutdown().await;
}

fn describe(r: &RecordedRequest) -> String {
    format!(
        "{} {} (x-expect-class {:?})",
        r.method,
        r.path_and_query,
        r.header("x-expect-class")
    )
}

/// A gateway bug this chaos exposed, reproduced deterministically: when the upstream's
/// connection ends right after its response head, before any body byte, the response body
/// failed on hyper's first poll, and hyper's HTTP/1.1 server dropped the connection without
/// flushing the head it had buffered: the client got no answer at all, while the gateway
/// recorded `200` and `body_error`. `ObservedBody` now hands such an error over one poll
/// later, so the head goes out and the stream is cut, as after any later failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_ends_right_after_its_head_gives_the_client_a_head_or_a_502() {
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let mock = MockProvider::start(local, MockOptions::new("primary"))
        .await
        .unwrap();
    let front = FaultFront::start(mock.addr()).await;
    let h = common::Harness::with_config(&format!(
        "[upstreams.primary]\nurl = \"http://{}/v1\"\n",
        front.addr()
    ))
    .await;
    let shapes = shapes();
    let chat = shapes.iter().find(|s| s.name == "chat").unwrap();
    let mut unanswered = Vec::new();
    for fault in [Fault::Reset(Offset::Body(0)), Fault::Cut(Offset::Body(0))] {
        front.set(fault).await;
        for i in 0..20 {
            // A fresh client each time: no keep-alive connection is reused.
            let http: Http = Client::builder(TokioExecutor::new()).build_http();
            let id = format!("{}-{i}", fault.name());
            if let Got::Violation(why) = exchange(&http, h.proxy_addr, chat, &id).await {
                unanswered.push(format!("{id}: {why}"));
            }
        }
    }
    assert!(
        unanswered.is_empty(),
        "{} of 40 clients got no answer:\n{}",
        unanswered.len(),
        unanswered.join("\n")
    );
    h.shutdown().await;
}

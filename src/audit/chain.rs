//! The line format and its hash chain: serialising a record into its line, hashing a line,
//! and reading one back.

use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::AuditRecord;

/// `,"hash":"` + 64 hex digits + `"}`: how every line ends (before its newline).
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;
const HASH_KEY: &[u8] = b",\"hash\":\"";

/// A SHA-256 or HMAC-SHA256 value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// `prev` of the first record ever: 64 zeros.
    pub const GENESIS: Hash = Hash([0; 32]);

    /// Lowercase hex, as written.
    pub fn parse(hex: &str) -> Option<Hash> {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Hash(out))
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Hashes lines: SHA-256, or HMAC-SHA256 with the log's key.
#[derive(Clone)]
pub enum Hasher {
    Plain,
    Keyed(Box<Hmac<Sha256>>),
}

impl Hasher {
    pub fn new(key: Option<&[u8]>) -> Hasher {
        // HMAC takes keys of any length; the error case cannot happen, and is treated as
        // "no key" rather than a panic. An empty key is refused by the config.
        match key.map(<Hmac<Sha256> as KeyInit>::new_from_slice) {
            Some(Ok(mac)) => Hasher::Keyed(Box::new(mac)),
            _ => Hasher::Plain,
        }
    }

    pub fn is_keyed(&self) -> bool {
        matches!(self, Hasher::Keyed(_))
    }

    pub fn hash(&self, bytes: &[u8]) -> Hash {
        match self {
            Hasher::Plain => Hash(Sha256::digest(bytes).into()),
            Hasher::Keyed(mac) => {
                let mut mac = (**mac).clone();
                mac.update(bytes);
                Hash(mac.finalize().into_bytes().into())
            }
        }
    }
}

/// Where the chain stands: the next line's `seq` and `prev`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainState {
    pub next_seq: u64,
    pub prev: Hash,
}

impl ChainState {
    pub const NEW: ChainState = ChainState {
        next_seq: 1,
        prev: Hash::GENESIS,
    };
}

/// What a line says besides `seq`, `type`, `time` and the chain fields.
pub enum Entry<'a> {
    Start { keyed: bool, previous: &'static str },
    Request(&'a AuditRecord),
    Dropped { count: u64, reason: &'static str },
    Seal { reason: &'static str },
}

#[derive(Serialize)]
struct Envelope<'a, B: Serialize> {
    seq: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    time: &'a str,
    #[serde(flatten)]
    body: B,
    prev: &'a str,
}

#[derive(Serialize)]
struct StartBody {
    version: &'static str,
    keyed: bool,
    previous: &'static str,
}

#[derive(Serialize)]
struct RequestBody<'a> {
    request_id: Option<&'a str>,
    method: &'a str,
    route: &'a str,
    class: Option<&'a str>,
    rule: Option<&'a str>,
    marker: Option<&'a str>,
    upstream: Option<&'a str>,
    endpoint: Option<&'a str>,
    status: u16,
    outcome: &'a str,
    request_bytes: u64,
    response_bytes: u64,
    duration_ms: f64,
    upstream_request_id: Option<&'a str>,
    config_sha256: &'a str,
}

#[derive(Serialize)]
struct DroppedBody {
    count: u64,
    reason: &'static str,
}

#[derive(Serialize)]
struct SealBody {
    reason: &'static str,
}

/// Milliseconds with microsecond precision (`934.112`).
fn millis(d: Duration) -> f64 {
    // Correctly rounded division: the shortest decimal that reads back is the exact one.
    (d.as_micros().min(u128::from(u64::MAX)) as u64) as f64 / 1000.0
}

/// RFC 3339 UTC with milliseconds; times outside 1970..9999 are clamped (never a panic).
pub fn rfc3339(time: SystemTime) -> String {
    const MAX: Duration = Duration::from_secs(253_402_300_799);
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default().min(MAX);
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{}",
        humantime::format_rfc3339_millis(UNIX_EPOCH + since)
    );
    out
}

/// Serialise `entry` as the line at `state` (with its newline) and return it with its hash.
pub fn line(
    hasher: &Hasher,
    state: &ChainState,
    at: SystemTime,
    entry: &Entry<'_>,
) -> (Vec<u8>, Hash) {
    let time = rfc3339(at);
    let prev = state.prev.to_string();
    let mut out = Vec::with_capacity(512);
    let envelope = |kind, body| Envelope {
        seq: state.next_seq,
        kind,
        time: &time,
        body,
        prev: &prev,
    };
    // Serialising plain structs of strings and numbers into a Vec cannot fail; the duration
    // is finite. A failure would leave `out` empty, and the line is then written as a
    // `dropped` line instead of being lost silently.
    let written = match entry {
        Entry::Start { keyed, previous } => serde_json::to_writer(
            &mut out,
            &envelope(
                "start",
                Body::Start(StartBody {
                    version: env!("CARGO_PKG_VERSION"),
                    keyed: *keyed,
                    previous,
                }),
            ),
        ),
        Entry::Request(r) => serde_json::to_writer(
            &mut out,
            &envelope(
                "request",
                Body::Request(RequestBody {
                    request_id: r.request_id.as_deref(),
                    method: &r.method,
                    route: &r.route,
                    class: r.class,
                    rule: r.rule.as_deref(),
                    marker: r.marker.as_deref(),
                    upstream: r.upstream.as_deref(),
                    endpoint: r.endpoint.as_deref(),
                    status: r.status,
                    outcome: r.outcome,
                    request_bytes: r.request_bytes,
                    response_bytes: r.response_bytes,
                    duration_ms: millis(r.duration),
                    upstream_request_id: r.upstream_request_id.as_deref(),
                    config_sha256: &r.config_sha256,
                }),
            ),
        ),
        Entry::Dropped { count, reason } => serde_json::to_writer(
            &mut out,
            &envelope(
                "dropped",
                Body::Dropped(DroppedBody {
                    count: *count,
                    reason,
                }),
            ),
        ),
        Entry::Seal { reason } => {
            serde_json::to_writer(&mut out, &envelope("seal", Body::Seal(SealBody { reason })))
        }
    };
    if written.is_err() || out.pop() != Some(b'}') {
        return line(
            hasher,
            state,
            at,
            &Entry::Dropped {
                count: 1,
                reason: "unserialisable",
            },
        );
    }
    let hash = hasher.hash(&out);
    out.extend_from_slice(HASH_KEY);
    let _ = write!(HexSink(&mut out), "{hash}");
    out.extend_from_slice(b"\"}\n");
    (out, hash)
}

#[derive(Serialize)]
#[serde(untagged)]
enum Body<'a> {
    Start(StartBody),
    Request(RequestBody<'a>),
    Dropped(DroppedBody),
    Seal(SealBody),
}

/// `fmt::Write` into a byte buffer.
struct HexSink<'a>(&'a mut Vec<u8>);

impl fmt::Write for HexSink<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A line read back: the fields every line has, and the rest as the writer wrote them.
#[derive(Clone, Debug, Deserialize)]
pub struct Parsed {
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: String,
    pub time: String,
    pub prev: String,
    pub hash: String,
    // request
    #[serde(default)]
    pub class: Option<String>,
    #[serde(default)]
    pub upstream: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub outcome: Option<String>,
    #[serde(default)]
    pub request_bytes: Option<u64>,
    #[serde(default)]
    pub response_bytes: Option<u64>,
    #[serde(default)]
    pub config_sha256: Option<String>,
    // start
    #[serde(default)]
    pub keyed: Option<bool>,
    #[serde(default)]
    pub previous: Option<String>,
    // dropped, seal
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Why a line is not a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// No newline at its end: the last line, cut short.
    Unterminated,
    /// Not a JSON object with the chain's fields, or not ending in `"hash":"<64 hex>"}`.
    NotARecord,
    /// Ends in `\r\n`: the writer never writes a CR, so the line was edited (or the file
    /// converted to CRLF line endings).
    CarriageReturn,
}

/// A complete line (with its newline), split into what is hashed and what was parsed.
pub struct ReadLine<'a> {
    /// The bytes the hash covers.
    pub hashed: &'a [u8],
    pub parsed: Parsed,
    pub hash: Hash,
    pub prev: Hash,
}

/// Read one line (`text` includes its newline if it has one).
pub fn read_line(text: &[u8]) -> Result<ReadLine<'_>, Malformed> {
    let Some(body) = text.strip_suffix(b"\n") else {
        return Err(Malformed::Unterminated);
    };
    if body.ends_with(b"\r") {
        return Err(Malformed::CarriageReturn);
    }
    if body.len() < HASH_SUFFIX_LEN {
        return Err(Malformed::NotARecord);
    }
    let (hashed, suffix) = body.split_at(body.len() - HASH_SUFFIX_LEN);
    if !suffix.starts_with(HASH_KEY) || !suffix.ends_with(b"\"}") {
        return Err(Malformed::NotARecord);
    }
    let parsed: Parsed = serde_json::from_slice(body).map_err(|_| Malformed::NotARecord)?;
    let hash_hex = std::str::from_utf8(&suffix[HASH_KEY.len()..HASH_KEY.len() + 64])
        .map_err(|_| Malformed::NotARecord)?;
    let hash = Hash::parse(hash_hex)
        .filter(|_| parsed.hash == hash_hex)
        .ok_or(Malformed::NotARecord)?;
    let prev = Hash::parse(&parsed.prev).ok_or(Malformed::NotARecord)?;
    Ok(ReadLine {
        hashed,
        parsed,
        hash,
        prev,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    pub(crate) fn record() -> AuditRecord {
        AuditRecord {
            time: UNIX_EPOCH + Duration::from_millis(1_746_091_812_345),
            request_id: Some("req-1".into()),
            method: "POST".into(),
            route: "/v1/responses".into(),
            class: Some("stateful"),
            rule: Some("builtin:responses".into()),
            marker: Some("path".into()),
            upstream: Some("azure".into()),
            endpoint: Some("eastus".into()),
            status: 200,
            outcome: "completed",
            request_bytes: 812,
            response_bytes: 5120,
            duration: Duration::from_micros(934_112),
            upstream_request_id: Some("apim-1".into()),
            config_sha256: Arc::from("ab".repeat(32)),
        }
    }

    #[test]
    fn a_request_line_has_fixed_fields_in_order_and_reads_back() {
        let r = record();
        let (bytes, hash) = line(
            &Hasher::new(None),
            &ChainState::NEW,
            r.time,
            &Entry::Request(&r),
        );
        let text = std::str::from_utf8(&bytes).unwrap();
        let expected_start = concat!(
            r#"{"seq":1,"type":"request","time":"2025-05-01T09:30:12.345Z","request_id":"req-1","#,
            r#""method":"POST","route":"/v1/responses","class":"stateful","rule":"builtin:responses","#,
            r#""marker":"path","upstream":"azure","endpoint":"eastus","status":200,"outcome":"completed","#,
            r#""request_bytes":812,"response_bytes":5120,"duration_ms":934.112,"#,
            r#""upstream_request_id":"apim-1","config_sha256":""#
        );
        assert!(text.starts_with(expected_start), "{text}");
        assert!(text.contains(&format!(
            r#","prev":"{}","hash":"{hash}"}}"#,
            "0".repeat(64)
        )));
        assert!(text.ends_with("\"}\n"));
        let read = read_line(&bytes).unwrap();
        assert_eq!(read.hash, hash);
        assert_eq!(read.prev, Hash::GENESIS);
        assert_eq!(Hasher::new(None).hash(read.hashed), hash);
        assert_eq!(read.parsed.seq, 1);
        assert_eq!(read.parsed.kind, "request");
        assert_eq!(read.parsed.status, Some(200));
        assert!(text.ends_with(&format!(",\"hash\":\"{hash}\"}}\n")));
    }

    #[test]
    fn keyed_and_plain_hashes_differ_and_depend_on_the_key() {
        let bytes = b"{\"seq\":1}";
        let plain = Hasher::new(None).hash(bytes);
        let a = Hasher::new(Some(b"key-a")).hash(bytes);
        let b = Hasher::new(Some(b"key-b")).hash(bytes);
        assert_ne!(plain, a);
        assert_ne!(a, b);
        assert_eq!(a, Hasher::new(Some(b"key-a")).hash(bytes));
        // Known answer: SHA-256 of the empty string.
        assert_eq!(
            Hasher::new(None).hash(b"").to_string(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn cut_or_foreign_lines_are_not_records() {
        let r = record();
        let (bytes, _) = line(
            &Hasher::new(None),
            &ChainState::NEW,
            r.time,
            &Entry::Request(&r),
        );
        assert_eq!(
            read_line(&bytes[..bytes.len() - 1]).err(),
            Some(Malformed::Unterminated)
        );
        assert_eq!(read_line(&bytes[..40]).err(), Some(Malformed::Unterminated));
        assert_eq!(
            read_line(b"{\"seq\":1}\n").err(),
            Some(Malformed::NotARecord)
        );
        assert_eq!(read_line(b"\n").err(), Some(Malformed::NotARecord));
        let mut crlf = bytes.clone();
        crlf.insert(crlf.len() - 1, b'\r');
        assert_eq!(read_line(&crlf).err(), Some(Malformed::CarriageReturn));
    }

    #[test]
    fn times_outside_the_calendar_are_clamped() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let far = UNIX_EPOCH + Duration::from_secs(400_000_000_000);
        assert_eq!(rfc3339(far), "9999-12-31T23:59:59.000Z");
    }

    #[test]
    fn hashes_round_trip_as_hex() {
        let h = Hasher::new(None).hash(b"x");
        assert_eq!(Hash::parse(&h.to_string()), Some(h));
        assert_eq!(Hash::parse(&"A".repeat(64)), None);
        assert_eq!(Hash::parse("00"), None);
    }
}

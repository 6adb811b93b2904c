//! The audit trail end to end: a log written through `AuditLog`, then `switchyard audit
//! verify` and `switchyard audit report` (the real binary) on it and on tampered copies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use switchyard::audit::{AuditLog, AuditRecord, AuditSettings, OnFull};
use switchyard::metrics::Metrics;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn record(i: u64) -> AuditRecord {
    let stateful = i.is_multiple_of(4);
    AuditRecord {
        time: UNIX_EPOCH + Duration::from_millis(1_746_091_812_000 + i * 1000),
        request_id: Some(format!("req-{i}")),
        method: "POST".into(),
        route: if stateful {
            "/v1/responses"
        } else {
            "/v1/chat/completions"
        }
        .into(),
        class: Some(if stateful { "stateful" } else { "stateless" }),
        rule: Some("builtin:path".into()),
        marker: Some("path".into()),
        upstream: Some(if stateful { "azure" } else { "bedrock" }.into()),
        endpoint: Some("eastus".into()),
        status: if i == 5 { 502 } else { 200 },
        outcome: if i == 5 { "connect" } else { "completed" },
        request_bytes: 100,
        response_bytes: 1000,
        duration: Duration::from_micros(20_500),
        upstream_request_id: Some(format!("apim-{i}")),
        config_sha256: Arc::from("c0".repeat(32)),
    }
}

/// A refused request: no class, no upstream.
fn refused(i: u64) -> AuditRecord {
    AuditRecord {
        class: None,
        rule: None,
        marker: None,
        upstream: None,
        endpoint: None,
        status: 400,
        outcome: "unclassifiable",
        upstream_request_id: None,
        ..record(i)
    }
}

/// Write `records` through a real `AuditLog` and close it; returns the files, oldest first.
fn write_log(
    dir: &Path,
    max_file_bytes: u64,
    key: Option<&[u8]>,
    records: Vec<AuditRecord>,
) -> Vec<PathBuf> {
    let settings = AuditSettings {
        path: dir.join("audit.jsonl"),
        max_file_bytes,
        max_files: 0,
        queue: 16,
        on_full: OnFull::Block,
        key: key.map(<[u8]>::to_vec),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let metrics = Arc::new(Metrics::new(&[]).unwrap());
        let log = AuditLog::open(settings, metrics).unwrap();
        for r in records {
            log.reserve().await.unwrap().write(r);
        }
        log.close().await;
    });
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    // The current file sorts last: rotated names carry their first seq.
    files
}

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn verify(files: &[PathBuf]) -> (i32, String, String) {
    let mut args = vec!["audit", "verify"];
    args.extend(files.iter().map(|p| p.to_str().unwrap()));
    run(&args, &[])
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A copy of the log with its lines replaced.
fn tampered_copy(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    fs::write(&path, text).unwrap();
    path
}

fn assert_detected(path: &Path, line: u64, message: &str) {
    let (code, out, err) = verify(&[path.to_owned()]);
    assert_eq!(code, 1, "not detected: {out}{err}");
    let named = format!("error: {}:{line}: {message}", path.display());
    assert!(err.starts_with(&named), "expected {named:?}, got {err:?}");
}

#[test]
fn an_intact_log_verifies_and_each_tampering_is_detected_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), 100 << 20, None, (0..6).map(record).collect());
    assert_eq!(log.len(), 1);
    let (code, out, err) = verify(&log);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("ok: 8 records (6 requests) in 1 file(s), seq 1..8, SHA-256 chain, sealed"),
        "{out}"
    );
    assert!(!out.contains("warning"), "{out}");

    // Lines: 1 start, 2..=7 requests, 8 seal.
    let good = lines(&log[0]);
    assert_eq!(good.len(), 8);
    let tampering = tempfile::tempdir().unwrap();
    let t = tampering.path();

    let mut edited = good.clone();
    edited[4] = edited[4].replace("\"upstream\":\"bedrock\"", "\"upstream\":\"azure\"");
    assert_ne!(edited[4], good[4]);
    assert_detected(
        &tampered_copy(t, "edited.jsonl", &edited),
        5,
        "hash does not match its content (edited?)",
    );

    let mut deleted = good.clone();
    deleted.remove(3);
    assert_detected(
        &tampered_copy(t, "deleted.jsonl", &deleted),
        4,
        "prev does not match line 3's hash (record removed, inserted or reordered?); seq 5 follows seq 3",
    );

    let mut swapped = good.clone();
    swapped.swap(2, 3);
    assert_detected(
        &tampered_copy(t, "swapped.jsonl", &swapped),
        3,
        "prev does not match line 2's hash",
    );

    let mut duplicated = good.clone();
    duplicated.insert(6, good[5].clone());
    assert_detected(
        &tampered_copy(t, "duplicated.jsonl", &duplicated),
        7,
        "prev does not match line 6's hash",
    );

    let truncated = t.join("truncated.jsonl");
    let mut bytes = fs::read(&log[0]).unwrap();
    bytes.truncate(bytes.len() - 30);
    fs::write(&truncated, bytes).unwrap();
    assert_detected(&truncated, 8, "not a complete JSON record");

    // Lines cut from the top: still a chain, but one that starts at seq 4.
    assert_detected(
        &tampered_copy(t, "top.jsonl", &good[3..]),
        1,
        "the chain starts at seq 4: earlier records are missing (removed, or in files not given)",
    );

    // CRLF line endings (an editor's save): the writer never writes a CR.
    let crlf = t.join("crlf.jsonl");
    let text: String = good.iter().map(|l| format!("{l}\r\n")).collect();
    fs::write(&crlf, text).unwrap();
    assert_detected(&crlf, 1, "the line ends in CR LF");

    // Whole trailing lines removed: the chain holds, but verify warns that it is not sealed.
    let (code, out, _) = verify(&[tampered_copy(t, "short.jsonl", &good[..5])]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning: not sealed"), "{out}");

    // The original is untouched by all this.
    assert_eq!(verify(&log).0, 0);
}

#[test]
fn a_rotated_chain_verifies_in_any_order_and_a_missing_middle_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(dir.path(), 2500, None, (0..20).map(record).collect());
    assert!(log.len() >= 4, "{log:?}");
    let mut reversed = log.clone();
    reversed.reverse();
    let (code, out, err) = verify(&reversed);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(20 requests)"), "{out}");
    assert!(out.contains(&format!("in {} file(s)", log.len())), "{out}");

    // A later file alone does not start at seq 1: an error naming its first line...
    let (code, out, err) = verify(&log[2..]);
    assert_eq!(code, 1, "{out}");
    let first_seq: u64 = lines(&log[2])[0]
        .split_once("\"seq\":")
        .and_then(|(_, rest)| rest.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    let named = format!(
        "error: {}:1: the chain starts at seq {first_seq}: earlier records are missing \
         (removed, or in files not given)\n",
        log[2].display()
    );
    assert_eq!(err, named);
    // ...unless the operator says where the chain starts (older files deleted by max_files):
    // then it verifies, with its link to the earlier ones reported unchecked.
    let mut args = vec!["audit", "verify", "--from-seq"];
    let from = first_seq.to_string();
    args.push(&from);
    args.extend(log[2..].iter().map(|p| p.to_str().unwrap()));
    let (code, out, err) = run(&args, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "warning: the chain starts at seq {first_seq} (--from-seq): records before it, \
             and its link to them, were not checked"
        )),
        "{out}"
    );
    // The expected start is checked exactly.
    let earlier = (first_seq - 1).to_string();
    args[3] = &earlier;
    let (code, _, err) = run(&args, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            ":1: the chain starts at seq {first_seq}, not at seq {earlier} (--from-seq): \
             records {earlier}..{earlier} are missing"
        )),
        "{err}"
    );
    args[3] = "0";
    assert_eq!(run(&args, &[]).0, 2, "seq counts from 1");
    // report takes it too.
    args[1] = "report";
    args[3] = &from;
    let (code, out, err) = run(&args, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("chain: verified: "), "{out}");

    // The current file removed (and with it the seal that closed the log): the set ends with
    // a rotation seal, which says files are missing after it — a warning, not "sealed".
    let (code, out, err) = verify(&log[..log.len() - 1]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("sealed"), "{out}");
    assert!(
        out.contains(
            "warning: the last file ends with a rotation seal: the files after it are missing, \
             or were not given"
        ),
        "{out}"
    );

    let mut gap = log.clone();
    gap.remove(1);
    let (code, _, err) = verify(&gap);
    assert_eq!(code, 1);
    let named = format!(
        "error: {}:1: prev does not match {}:",
        gap[1].display(),
        gap[0].display()
    );
    assert!(err.starts_with(&named), "expected {named:?}, got {err:?}");
}

#[test]
fn a_keyed_log_needs_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = write_log(
        dir.path(),
        100 << 20,
        Some(b"s3cret"),
        (0..3).map(record).collect(),
    );
    let file = log[0].to_str().unwrap();
    let (code, out, err) = run(
        &["audit", "verify", file, "--key-env", "AUDIT_TEST_KEY"],
        &[("AUDIT_TEST_KEY", "s3cret")],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("HMAC-SHA256 chain"), "{out}");
    let (code, _, err) = run(
        &["audit", "verify", file, "--key-env", "AUDIT_TEST_KEY"],
        &[("AUDIT_TEST_KEY", "wrong")],
    );
    assert_eq!(code, 1);
    assert!(err.contains(":1: hash does not match its content"), "{err}");
    let (code, _, err) = run(&["audit", "verify", file], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("pass --key-env VAR"), "{err}");
    let (code, _, err) = run(
        &["audit", "verify", file, "--key-env", "AUDIT_TEST_KEY_UNSET"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("AUDIT_TEST_KEY_UNSET: the environment variable is not set"),
        "{err}"
    );
    // The key never reaches the file.
    assert!(!fs::read_to_string(&log[0]).unwrap().contains("s3cret"));
}

#[test]
fn report_counts_requests_per_class_and_upstream_and_says_when_the_chain_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let mut records: Vec<AuditRecord> = (0..8).map(record).collect();
    records.push(refused(8));
    let log = write_log(dir.path(), 2500, None, records);
    let mut args = vec!["audit", "report", "--json"];
    args.extend(log.iter().map(|p| p.to_str().unwrap()));
    let (code, out, err) = run(&args, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["verified"], true);
    assert_eq!(json["requests"], 9);
    let groups = json["groups"].as_array().unwrap();
    let group = |class: &str, upstream: &str| {
        groups
            .iter()
            .find(|g| g["class"] == class && g["upstream"] == upstream)
            .unwrap_or_else(|| panic!("no {class}/{upstream} in {out}"))
            .clone()
    };
    // i % 4 == 0 → stateful/azure: 0, 4; the rest stateless/bedrock, 5 of them a 502.
    assert_eq!(group("stateful", "azure")["requests"], 2);
    let bedrock = group("stateless", "bedrock");
    assert_eq!(bedrock["requests"], 6);
    assert_eq!(bedrock["status"]["2xx"], 5);
    assert_eq!(bedrock["status"]["5xx"], 1);
    assert_eq!(bedrock["outcomes"]["connect"], 1);
    assert_eq!(bedrock["first_time"], "2025-05-01T09:30:13.000Z");
    assert_eq!(group("none", "none")["outcomes"]["unclassifiable"], 1);
    assert_eq!(groups.len(), 3);
    assert_eq!(json["configs"][0]["sha256"], "c0".repeat(32));
    assert_eq!(json["configs"][0]["requests"], 9);

    let mut args = vec!["audit", "report"];
    args.extend(log.iter().map(|p| p.to_str().unwrap()));
    let (code, text, _) = run(&args, &[]);
    assert_eq!(code, 0);
    assert!(
        text.starts_with(&format!(
            "chain: verified: 13 records (9 requests) in {} file(s), seq 1..13, SHA-256 chain, sealed\n9 requests in",
            log.len()
        )),
        "{text}"
    );
    assert!(
        text.lines().any(
            |l| l.split_whitespace().collect::<Vec<_>>()[..].starts_with(&[
                "stateless",
                "bedrock",
                "6",
                "5",
                "0",
                "0",
                "1",
                "0"
            ])
        ),
        "{text}"
    );

    // Edited: the report still prints, says so loudly, and exits non-zero.
    let last = log.last().unwrap();
    let mut edited = lines(last);
    let i = edited
        .iter()
        .position(|l| l.contains("\"status\":400"))
        .unwrap();
    edited[i] = edited[i].replace("\"status\":400", "\"status\":200");
    fs::write(
        last,
        edited.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let (code, text, err) = run(&args, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.starts_with("!!! CHAIN NOT VERIFIED: "), "{text}");
    assert!(text.contains("9 requests in"), "{text}");
    assert!(err.contains("hash does not match its content"), "{err}");
}

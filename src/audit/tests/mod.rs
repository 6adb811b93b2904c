//! The writer, resuming, rotation and the queue, checked through what `verify` says.

mod tampering;

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, UNIX_EPOCH};

use super::appender::{Appender, Held};
use super::chain::read_line;
use super::*;
use crate::metrics::Metrics;

pub(super) fn metrics() -> Arc<Metrics> {
    Arc::new(Metrics::new(&[]).unwrap())
}

pub(super) fn settings(dir: &Path) -> AuditSettings {
    AuditSettings {
        path: dir.join("audit.jsonl"),
        max_file_bytes: 100 * 1024 * 1024,
        max_files: 0,
        queue: 64,
        on_full: OnFull::Block,
        key: None,
    }
}

pub(super) fn record(i: u64) -> AuditRecord {
    let stateful = i.is_multiple_of(3);
    AuditRecord {
        time: UNIX_EPOCH + Duration::from_millis(1_746_091_812_000 + i),
        request_id: Some(format!("req-{i}")),
        method: "POST".into(),
        route: if stateful {
            "/v1/responses"
        } else {
            "/v1/chat/completions"
        }
        .into(),
        class: Some(if stateful { "stateful" } else { "stateless" }),
        rule: Some("builtin".into()),
        marker: None,
        upstream: Some(if stateful { "azure" } else { "bedrock" }.into()),
        endpoint: Some("e1".into()),
        status: if i % 5 == 4 { 502 } else { 200 },
        outcome: if i % 5 == 4 { "connect" } else { "completed" },
        request_bytes: 100 + i,
        response_bytes: 1000,
        duration: Duration::from_millis(20),
        upstream_request_id: Some(format!("up-{i}")),
        config_sha256: Arc::from("c".repeat(64)),
    }
}

pub(super) async fn write(log: &AuditLog, range: std::ops::Range<u64>) {
    for i in range {
        log.reserve().await.unwrap().write(record(i));
    }
}

pub(super) fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub(super) fn kind(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v["type"].as_str().unwrap().to_owned()
}

pub(super) fn field(line: &str, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    v[name].clone()
}

/// The value of one series in the Prometheus text, e.g. `switchyard_audit_records_total`.
pub(super) fn metric(m: &Metrics, series: &str) -> f64 {
    let text = String::from_utf8(m.render()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} not in\n{text}"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_log_has_a_start_its_requests_and_a_seal_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let s = settings(dir.path());
    let log = AuditLog::open(s.clone(), m.clone()).unwrap();
    write(&log, 0..3).await;
    log.close().await;
    log.close().await; // idempotent

    let got = lines(&s.path);
    let kinds: Vec<String> = got.iter().map(|l| kind(l)).collect();
    assert_eq!(kinds, ["start", "request", "request", "request", "seal"]);
    assert_eq!(field(&got[0], "previous"), "none");
    assert_eq!(field(&got[0], "keyed"), false);
    assert_eq!(field(&got[4], "reason"), "close");
    assert_eq!(field(&got[2], "request_id"), "req-1");
    let summary = verify(std::slice::from_ref(&s.path), None).unwrap();
    assert_eq!((summary.records, summary.requests), (5, 3));
    assert_eq!(summary.sealed, Sealed::Closed);
    assert!(summary.anchored);
    assert!(summary.warnings().is_empty(), "{:?}", summary.warnings());
    assert_eq!(metric(&m, "switchyard_audit_records_total"), 3.0);
    assert_eq!(metric(&m, "switchyard_audit_queue_depth"), 0.0);

    // Closed: no more places.
    assert!(log.reserve().await.is_none());
    assert_eq!(
        metric(&m, "switchyard_audit_dropped_total{reason=\"closed\"}"),
        1.0
    );
}

#[tokio::test]
async fn a_restart_continues_the_chain_and_says_how_the_last_run_ended() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let log = AuditLog::open(s.clone(), metrics()).unwrap();
    write(&log, 0..2).await;
    log.close().await;
    let log = AuditLog::open(s.clone(), metrics()).unwrap();
    write(&log, 2..3).await;
    log.close().await;

    // start, 2 requests, seal; start, 1 request, seal.
    let got = lines(&s.path);
    assert_eq!(got.len(), 7);
    assert_eq!(kind(&got[4]), "start");
    assert_eq!(field(&got[4], "seq"), 5);
    assert_eq!(field(&got[4], "previous"), "sealed");
    let summary = verify(std::slice::from_ref(&s.path), None).unwrap();
    assert_eq!((summary.first_seq, summary.last_seq), (Some(1), Some(7)));
    assert_eq!(summary.unclean_starts, 0);

    // A run that ended without its seal (killed): the next start says so.
    let unsealed: String = got[..6].iter().map(|l| format!("{l}\n")).collect();
    fs::write(&s.path, unsealed).unwrap();
    let log = AuditLog::open(s.clone(), metrics()).unwrap();
    log.close().await;
    let got = lines(&s.path);
    assert_eq!(field(&got[6], "previous"), "not_sealed");
    assert_eq!(field(&got[6], "seq"), 7);
    let summary = verify(std::slice::from_ref(&s.path), None).unwrap();
    assert_eq!(summary.unclean_starts, 1);
    assert_eq!(summary.warnings().len(), 1, "{:?}", summary.warnings());
}

#[tokio::test]
async fn a_partial_last_line_is_moved_aside_and_the_chain_continues_from_the_line_before() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let log = AuditLog::open(s.clone(), metrics()).unwrap();
    write(&log, 0..2).await;
    log.close().await;
    let whole = fs::read(&s.path).unwrap();
    let last_hash = field(lines(&s.path).last().unwrap(), "hash");
    let mut cut = whole.clone();
    cut.extend_from_slice(b"{\"seq\":5,\"type\":\"req");
    fs::write(&s.path, &cut).unwrap();

    let log = AuditLog::open(s.clone(), metrics()).unwrap();
    write(&log, 2..3).await;
    log.close().await;

    let aside = dir.path().join("audit.0000000000000001.jsonl");
    assert_eq!(fs::read(&aside).unwrap(), cut, "moved aside untouched");
    let got = lines(&s.path);
    assert_eq!(field(&got[0], "previous"), "partial_line");
    assert_eq!(field(&got[0], "seq"), 5);
    assert_eq!(field(&got[0], "prev"), last_hash);

    let err = verify(&[s.path.clone(), aside.clone()], None).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Bad { path, line: 5, problem: Problem::Truncated } if *path == aside),
        "{err}"
    );
    // The current file alone starts at seq 5: an error, unless the operator says the chain
    // starts there; then its link to the earlier file is not checked.
    let err = verify(std::slice::from_ref(&s.path), None).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Bad { path, line: 1, problem: Problem::Unanchored { first_seq: 5 } } if *path == s.path),
        "{err}"
    );
    let from_5 = VerifyOptions {
        key: None,
        from_seq: Some(5),
    };
    let alone = verify_with(std::slice::from_ref(&s.path), &from_5).unwrap();
    assert!(!alone.anchored);
    assert_eq!(alone.unclean_starts, 1);
    // Without the partial line the two files are one chain.
    fs::write(&aside, &whole).unwrap();
    let both = verify(&[s.path.clone(), aside], None).unwrap();
    assert!(both.anchored);
    assert_eq!(both.requests, 3);
}

#[tokio::test]
async fn rotation_keeps_files_under_the_limit_and_the_chain_across_them() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let mut s = settings(dir.path());
    s.max_file_bytes = 2000;
    let log = AuditLog::open(s.clone(), m.clone()).unwrap();
    write(&log, 0..30).await;
    log.close().await;

    let mut names: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(names.len() >= 4, "{names:?}");
    assert_eq!(names.last().unwrap(), &s.path, "ls order is chain order");
    for path in &names {
        let len = fs::metadata(path).unwrap().len();
        assert!(len <= 2000, "{} has {len} bytes", path.display());
    }
    for rotated in &names[..names.len() - 1] {
        let last = lines(rotated).pop().unwrap();
        assert_eq!(
            (kind(&last), field(&last, "reason")),
            ("seal".into(), "rotate".into())
        );
    }
    assert_eq!(
        metric(&m, "switchyard_audit_rotations_total"),
        (names.len() - 1) as f64
    );
    // Any order: verify sorts by first seq.
    names.reverse();
    let summary = verify(&names, None).unwrap();
    assert_eq!(summary.requests, 30);
    assert!(summary.anchored);
    assert_eq!(summary.sealed, Sealed::Closed);
    assert_eq!(summary.files.last().unwrap().path, s.path);

    // A rotated file in the middle removed: the next file's first line names the break.
    names.reverse();
    let missing = names.remove(1);
    let err = verify(&names, None).unwrap_err();
    let VerifyError::Bad {
        path,
        line,
        problem,
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!((path, *line), (&names[1], 1), "{err}");
    assert!(matches!(problem, Problem::BrokenLink { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("{}:", names[0].display())),
        "{err}"
    );
    assert!(missing.exists());
}

#[tokio::test]
async fn old_rotated_files_beyond_max_files_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.max_file_bytes = 2000;
    s.max_files = 2;
    let log = AuditLog::open(s.clone(), metrics()).unwrap();
    write(&log, 0..30).await;
    log.close().await;
    let names: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    // Without the deleted files the chain does not start at seq 1: an error by default...
    let err = verify(&names, None).unwrap_err();
    let VerifyError::Bad {
        path,
        line: 1,
        problem: Problem::Unanchored { first_seq },
    } = &err
    else {
        panic!("{err}")
    };
    let oldest = names.iter().min().unwrap();
    assert_eq!(path, oldest);
    assert!(*first_seq > 1);
    // ...and verified from where the operator says the kept files start.
    let options = |from_seq| VerifyOptions {
        key: None,
        from_seq: Some(from_seq),
    };
    let summary = verify_with(&names, &options(*first_seq)).unwrap();
    assert!(!summary.anchored);
    assert_eq!(summary.first_seq, Some(*first_seq));
    assert!(
        summary.warnings()[0].contains("(--from-seq): records before it"),
        "{:?}",
        summary.warnings()
    );
    // Expecting an earlier start names the records missing; a later one is wrong too.
    let err = verify_with(&names, &options(first_seq - 3)).unwrap_err();
    assert!(
        matches!(
            &err,
            VerifyError::Bad {
                line: 1,
                problem: Problem::NotFromSeq { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().ends_with(&format!(
            "the chain starts at seq {first_seq}, not at seq {} (--from-seq): records {}..{} \
             are missing (removed, or in files not given)",
            first_seq - 3,
            first_seq - 3,
            first_seq - 1
        )),
        "{err}"
    );
    let err = verify_with(&names, &options(first_seq + 1)).unwrap_err();
    assert!(
        matches!(
            &err,
            VerifyError::Bad {
                line: 1,
                problem: Problem::NotFromSeq { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn drop_mode_refuses_at_once_when_full_and_notes_the_gap_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let mut s = settings(dir.path());
    s.queue = 1;
    s.on_full = OnFull::Drop;
    let log = AuditLog::open(s.clone(), m.clone()).unwrap();
    let held = log.reserve().await.unwrap();
    assert_eq!(metric(&m, "switchyard_audit_queue_depth"), 1.0);
    assert!(log.reserve().await.is_none());
    assert!(log.reserve().await.is_none());
    assert_eq!(
        metric(&m, "switchyard_audit_dropped_total{reason=\"queue_full\"}"),
        2.0
    );
    held.write(record(0));
    log.close().await;

    let got = lines(&s.path);
    let dropped: Vec<&String> = got.iter().filter(|l| kind(l) == "dropped").collect();
    assert_eq!(dropped.len(), 1, "{got:?}");
    assert_eq!(field(dropped[0], "count"), 2);
    assert_eq!(field(dropped[0], "reason"), "queue_full");
    let summary = verify(std::slice::from_ref(&s.path), None).unwrap();
    assert_eq!((summary.requests, summary.dropped), (1, 2));
    assert!(summary.warnings().iter().any(|w| w.contains("2 record(s)")));
}

/// Poll a future once.
async fn is_pending<F: Future + Unpin>(fut: &mut F) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *fut).poll(cx).is_pending()))
        .await
}

#[tokio::test]
async fn block_mode_waits_for_room_and_an_unused_slot_gives_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let mut s = settings(dir.path());
    s.queue = 1;
    let log = AuditLog::open(s.clone(), m.clone()).unwrap();
    let first = log.reserve().await.unwrap();
    let mut waiting = Box::pin(log.reserve());
    assert!(
        is_pending(&mut waiting).await,
        "a full queue makes reserve wait"
    );
    first.write(record(0));
    // The writer takes the record off the queue; the waiting request gets the place.
    let second = waiting.await.unwrap();
    let mut third = Box::pin(log.reserve());
    assert!(is_pending(&mut third).await);
    drop(second);
    let third = third.await.unwrap();
    third.write(record(1));
    log.close().await;
    let summary = verify(std::slice::from_ref(&s.path), None).unwrap();
    assert_eq!(summary.requests, 2);
    assert_eq!(metric(&m, "switchyard_audit_queue_depth"), 0.0);
    assert_eq!(
        metric(&m, "switchyard_audit_dropped_total{reason=\"queue_full\"}"),
        0.0
    );
}

#[tokio::test]
async fn close_waits_for_a_slot_still_held() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let log = AuditLog::open(s.clone(), metrics()).unwrap();
    let slot = log.reserve().await.unwrap();
    let mut closing = Box::pin(log.close());
    assert!(is_pending(&mut closing).await);
    slot.write(record(0));
    closing.await;
    let got = lines(&s.path);
    assert_eq!(kind(&got[1]), "request");
    assert_eq!(kind(&got[2]), "seal");
}

#[test]
fn a_failed_write_is_cut_back_and_the_chain_stays_whole() {
    let Ok(full) = fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // no /dev/full on this system
    };
    let dir = tempfile::tempdir().unwrap();
    let m = metrics();
    let s = settings(dir.path());
    let mut appender = Appender::open(&s, m.clone()).unwrap();
    let one = [Held::Record(Box::new(record(0)))];
    assert_eq!(appender.append(&one).0, 1);
    let real = appender.replace_file(full).unwrap();
    let two = [
        Held::Record(Box::new(record(1))),
        Held::Record(Box::new(record(2))),
    ];
    let (done, result) = appender.append(&two);
    assert_eq!(done, 0);
    assert!(result.is_err());
    assert_eq!(
        metric(&m, "switchyard_audit_write_errors_total{op=\"write\"}"),
        1.0
    );
    drop(real);
    // The device could not be cut back, so the next write starts a fresh file.
    let (done, result) = appender.append(&two);
    assert_eq!(done, 2);
    result.unwrap();
    drop(appender); // and its lock file with it
    let mut files: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    let summary = verify(&files, None).unwrap();
    assert_eq!((summary.requests, summary.last_seq), (3, Some(4)));
    let current = fs::read(&s.path).unwrap();
    let first = current.split_inclusive(|b| *b == b'\n').next().unwrap();
    assert_eq!(read_line(first).unwrap().parsed.seq, 3);
}

#[test]
fn bad_settings_fail_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.queue = 0;
    assert!(matches!(
        AuditLog::open(s, metrics()),
        Err(AuditError::ZeroQueue)
    ));
    let mut s = settings(dir.path());
    s.path = dir.path().to_owned();
    let err = AuditLog::open(s, metrics()).unwrap_err();
    assert!(matches!(err, AuditError::NotAFile(_)), "{err}");
    // A file where the directory should be.
    let blocker = dir.path().join("file");
    fs::write(&blocker, b"").unwrap();
    let mut s = settings(&blocker);
    s.path = blocker.join("audit.jsonl");
    let err = AuditLog::open(s, metrics()).unwrap_err();
    assert!(matches!(err, AuditError::Io { .. }), "{err}");
}

#[tokio::test]
async fn a_set_ending_with_a_rotation_seal_is_not_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.max_file_bytes = 2000;
    let log = AuditLog::open(s.clone(), metrics()).unwrap();
    write(&log, 0..30).await;
    log.close().await;
    let mut names: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    // The current file (and the newest rotated one) deleted.
    fs::remove_file(names.pop().unwrap()).unwrap();
    fs::remove_file(names.pop().unwrap()).unwrap();
    let summary = verify(&names, None).unwrap();
    assert_eq!(summary.sealed, Sealed::Rotated);
    assert!(
        summary.warnings().iter().any(|w| w
            == "the last file ends with a rotation seal: the files after it are missing, or \
                were not given"),
        "{:?}",
        summary.warnings()
    );
    assert!(
        !summary.headline().contains("sealed"),
        "{}",
        summary.headline()
    );
}

#[tokio::test]
async fn a_second_writer_on_the_same_path_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let first = AuditLog::open(s.clone(), metrics()).unwrap();
    let err = AuditLog::open(s.clone(), metrics()).unwrap_err();
    let lock = dir.path().join("audit.jsonl.lock");
    assert_eq!(
        err.to_string(),
        format!(
            "audit.path {} is in use by another process (lock file {})",
            s.path.display(),
            lock.display()
        )
    );
    write(&first, 0..2).await;
    first.close().await;
    // The refused open wrote nothing: one start, two requests, one seal.
    assert_eq!(lines(&s.path).len(), 4);
    let second = AuditLog::open(s.clone(), metrics()).unwrap();
    write(&second, 2..3).await;
    second.close().await;
    let summary = verify(std::slice::from_ref(&s.path), None).unwrap();
    assert_eq!((summary.requests, summary.unclean_starts), (3, 0));
}

#[tokio::test]
async fn close_within_gives_up_waiting_and_a_later_close_still_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.queue = 1;
    let log = AuditLog::open(s.clone(), metrics()).unwrap();
    // A slot still held keeps the writer from finishing, as a hung write would; with a queue
    // of one, close cannot even queue its message.
    let slot = log.reserve().await.unwrap();
    assert!(!log.close_within(Duration::from_millis(50)).await);
    assert!(log.reserve().await.is_none(), "closing: no more places");
    slot.write(record(0));
    assert!(log.close_within(Duration::from_secs(10)).await);
    let got = lines(&s.path);
    let kinds: Vec<String> = got.iter().map(|l| kind(l)).collect();
    assert_eq!(kinds, ["start", "request", "seal"]);
    assert!(
        log.close_within(Duration::from_millis(1)).await,
        "idempotent"
    );
    let summary = verify(std::slice::from_ref(&s.path), None).unwrap();
    assert_eq!(summary.sealed, Sealed::Closed);
}

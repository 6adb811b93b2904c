//! Verification of tampered logs, keyed and plain.

use std::fs;
use std::path::{Path, PathBuf};

use super::{lines, metrics, settings, write};
use crate::audit::{verify, verify_with, AuditLog, Problem, Sealed, VerifyError, VerifyOptions};

#[tokio::test]
async fn a_keyed_chain_verifies_only_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.key = Some(b"k1".to_vec());
    let log = AuditLog::open(s.clone(), metrics()).unwrap();
    write(&log, 0..2).await;
    log.close().await;
    let paths = [s.path.clone()];
    assert!(verify(&paths, Some(b"k1")).unwrap().keyed);
    let err = verify(&paths, None).unwrap_err();
    assert!(matches!(
        err,
        VerifyError::Bad {
            line: 1,
            problem: Problem::KeyMismatch { keyed: true },
            ..
        }
    ));
    let err = verify(&paths, Some(b"k2")).unwrap_err();
    assert!(
        matches!(&err, VerifyError::Bad { line: 1, problem: Problem::HashMismatch { hint }, .. } if hint.contains("another key")),
        "{err}"
    );
    // Without its start line (a rotated file alone) a missing key reads as a hash mismatch.
    let body: String = lines(&s.path)[1..]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&s.path, body).unwrap();
    let err = verify(&paths, None).unwrap_err();
    assert!(err.to_string().contains("pass --key-env"), "{err}");

    let plain = tempfile::tempdir().unwrap();
    let s = settings(plain.path());
    AuditLog::open(s.clone(), metrics()).unwrap().close().await;
    let err = verify(&[s.path], Some(b"k1")).unwrap_err();
    assert!(matches!(
        err,
        VerifyError::Bad {
            problem: Problem::KeyMismatch { keyed: false },
            ..
        }
    ));
}

/// Lines 1..=7: start, five requests, seal.
async fn five_requests(dir: &Path) -> (PathBuf, Vec<String>) {
    let s = settings(dir);
    let log = AuditLog::open(s.clone(), metrics()).unwrap();
    write(&log, 0..5).await;
    log.close().await;
    let got = lines(&s.path);
    assert_eq!(got.len(), 7);
    (s.path, got)
}

fn tampered(path: &Path, lines: &[String]) -> (u64, Problem) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    fs::write(path, text).unwrap();
    match verify(&[path.to_owned()], None) {
        Err(VerifyError::Bad { line, problem, .. }) => (line, problem),
        other => panic!("tampering not detected: {other:?}"),
    }
}

#[tokio::test]
async fn each_kind_of_tampering_names_the_first_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let (path, good) = five_requests(dir.path()).await;

    let mut edited = good.clone();
    edited[3] = edited[3].replace("\"status\":200", "\"status\":201");
    assert_eq!(
        tampered(&path, &edited),
        (4, Problem::HashMismatch { hint: "" })
    );

    let mut removed = good.clone();
    removed.remove(3);
    let (line, problem) = tampered(&path, &removed);
    assert_eq!(line, 4);
    assert!(
        matches!(&problem, Problem::BrokenLink { before, before_seq: 3, seq: 5 } if before == "line 3"),
        "{problem}"
    );

    let mut swapped = good.clone();
    swapped.swap(2, 3);
    let (line, problem) = tampered(&path, &swapped);
    assert_eq!(line, 3);
    assert!(matches!(problem, Problem::BrokenLink { .. }), "{problem}");

    let mut duplicated = good.clone();
    duplicated.insert(3, good[3].clone());
    assert!(matches!(
        tampered(&path, &duplicated),
        (5, Problem::BrokenLink { .. })
    ));

    let mut cut = good.join("\n").into_bytes();
    cut.truncate(cut.len() - 20);
    fs::write(&path, &cut).unwrap();
    let err = verify(std::slice::from_ref(&path), None).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Bad {
                line: 7,
                problem: Problem::Truncated,
                ..
            }
        ),
        "{err}"
    );

    // The whole last line (the seal) removed: still a chain, but not sealed — a warning,
    // not an error, since a running gateway's log looks the same.
    let text: String = good[..6].iter().map(|l| format!("{l}\n")).collect();
    fs::write(&path, text).unwrap();
    let summary = verify(std::slice::from_ref(&path), None).unwrap();
    assert_eq!(summary.sealed, Sealed::No);
    assert!(summary.warnings()[0].starts_with("not sealed"));
}

#[tokio::test]
async fn lines_cut_from_the_top_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, good) = five_requests(dir.path()).await;
    // Lines 1..=4 (seq 1..=4) removed: what is left is still a chain, from seq 5.
    let (line, problem) = tampered(&path, &good[4..]);
    assert_eq!(line, 1);
    assert_eq!(problem, Problem::Unanchored { first_seq: 5 });
    let err = verify(std::slice::from_ref(&path), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:1: the chain starts at seq 5: earlier records are missing (removed, or in \
             files not given)",
            path.display()
        )
    );
    // Told where the chain should start, it verifies from there (seq 5's prev unchecked)...
    let options = |from_seq| VerifyOptions {
        key: None,
        from_seq: Some(from_seq),
    };
    let summary = verify_with(std::slice::from_ref(&path), &options(5)).unwrap();
    assert_eq!((summary.first_seq, summary.anchored), (Some(5), false));
    // ...but only from exactly there.
    let err = verify_with(std::slice::from_ref(&path), &options(4)).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Bad {
                line: 1,
                problem: Problem::NotFromSeq {
                    expected: 4,
                    first_seq: 5
                },
                ..
            }
        ),
        "{err}"
    );
    // The whole file from seq 1 is what --from-seq 1 (the default) expects.
    tampered_ok(&path, &good);
    assert!(verify_with(std::slice::from_ref(&path), &options(1)).is_ok());
    assert!(verify_with(std::slice::from_ref(&path), &options(2)).is_err());
    // Cutting the top of a keyed log is caught the same way.
    let keyed = tempfile::tempdir().unwrap();
    let mut s = settings(keyed.path());
    s.key = Some(b"k1".to_vec());
    let log = AuditLog::open(s.clone(), metrics()).unwrap();
    write(&log, 0..3).await;
    log.close().await;
    let text: String = lines(&s.path)[2..]
        .iter()
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&s.path, text).unwrap();
    let err = verify(std::slice::from_ref(&s.path), Some(b"k1")).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Bad {
                line: 1,
                problem: Problem::Unanchored { first_seq: 3 },
                ..
            }
        ),
        "{err}"
    );
}

fn tampered_ok(path: &Path, lines: &[String]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    fs::write(path, text).unwrap();
}

#[tokio::test]
async fn crlf_line_endings_are_not_records() {
    let dir = tempfile::tempdir().unwrap();
    let (path, good) = five_requests(dir.path()).await;
    let text: String = good.iter().map(|l| format!("{l}\r\n")).collect();
    fs::write(&path, text).unwrap();
    let err = verify(std::slice::from_ref(&path), None).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Bad {
                line: 1,
                problem: Problem::CarriageReturn,
                ..
            }
        ),
        "CRLF accepted: {err:?}"
    );
    assert!(err.to_string().contains("ends in CR LF"), "{err}");
    // One line converted is enough.
    let mut one = good.join("\n") + "\n";
    let at = one.match_indices('\n').nth(2).unwrap().0;
    one.insert(at, '\r');
    fs::write(&path, one).unwrap();
    let err = verify(std::slice::from_ref(&path), None).unwrap_err();
    assert!(
        matches!(
            err,
            VerifyError::Bad {
                line: 3,
                problem: Problem::CarriageReturn,
                ..
            }
        ),
        "{err:?}"
    );
}

//! Verification of tampered logs, keyed and plain.

use std::fs;
use std::path::{Path, PathBuf};

use super::{lines, metrics, settings, write};
use crate::audit::{verify, AuditLog, Problem, Sealed, VerifyError};

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

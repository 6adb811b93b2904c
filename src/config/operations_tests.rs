//! Config tests for the operating settings: `server.drain_timeout`, `[reload]`, `[audit]`,
//! `[shadow]`, the file's SHA-256 and the upstream fingerprints.

use std::time::Duration;

use super::tests::{env, MINIMAL as BASE};
use super::*;

fn load(extra: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str_with_env(
        &format!("{BASE}\n{extra}"),
        &env(&[("AUDIT_KEY", "0123456789abcdef0123"), ("SHORT", "abc")]),
    )
}

fn error(extra: &str) -> String {
    match load(extra) {
        Ok(_) => panic!("expected an error with {extra:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_without_the_sections() {
    let c = load("").unwrap();
    assert_eq!(c.server.drain_timeout, Duration::from_secs(30));
    assert_eq!(
        c.reload,
        Reload {
            watch: false,
            watch_interval: Duration::from_secs(5),
        }
    );
    assert!(c.audit.is_none());
    assert!(c.shadow.is_none());
    assert!(c.source.path.is_none());
    assert_eq!(c.source.sha256.len(), 64);
}

#[test]
fn sections_as_written() {
    let c = load(
        r#"
[reload]
watch = true
watch_interval = "250ms"

[audit]
path = "/var/log/switchyard/audit.jsonl"
max_file_bytes = "1 MiB"
max_files = 7
queue = 10
on_full = "drop"
key = "${AUDIT_KEY}"

[shadow]
builtins = false

[[shadow.rules]]
name = "try-this"
class = "stateful"
header_present = ["x-tenant"]
"#,
    )
    .unwrap();
    assert_eq!(
        c.reload,
        Reload {
            watch: true,
            watch_interval: Duration::from_millis(250),
        }
    );
    let audit = c.audit.unwrap();
    assert_eq!(
        audit.path,
        std::path::PathBuf::from("/var/log/switchyard/audit.jsonl")
    );
    assert_eq!(audit.max_file_bytes, 1024 * 1024);
    assert_eq!(audit.max_files, 7);
    assert_eq!(audit.queue, 10);
    assert_eq!(audit.on_full, AuditOnFull::Drop);
    assert_eq!(audit.key, Some(AuditKey(b"0123456789abcdef0123".to_vec())));
    assert_eq!(format!("{:?}", audit.key), "Some(<redacted>)");
    let shadow = c.shadow.unwrap();
    assert!(!shadow.builtins);
    assert_eq!(shadow.rules.len(), 1);
    assert_eq!(shadow.rules[0].name, "try-this");
}

#[test]
fn error_texts() {
    let cases: &[(&str, &str)] = &[
        (
            "[reload]\nwatch_interval = \"10ms\"",
            r#"reload.watch_interval = "10ms": must be at least 100ms"#,
        ),
        (
            "[audit]\npath = \"\"",
            r#"audit.path = "": must name the audit file, such as "/var/log/switchyard/audit.jsonl""#,
        ),
        (
            "[audit]\npath = \"a\"\nmax_file_bytes = \"1 KiB\"",
            r#"audit.max_file_bytes = "1 KiB": must be a size of at least 64 KiB, such as "100 MiB""#,
        ),
        (
            "[audit]\npath = \"a\"\nmax_files = -1",
            "audit.max_files = -1: must be from 0 (keep every rotated file) to 100000",
        ),
        (
            "[audit]\npath = \"a\"\nqueue = 0",
            "audit.queue = 0: must be from 1 to 10000000 records",
        ),
        (
            "[audit]\npath = \"a\"\non_full = \"wait\"",
            r#"audit.on_full = "wait": must be "block" (wait, lose nothing) or "drop" (count and go on)"#,
        ),
        (
            "[audit]\npath = \"a\"\nkey = \"${SHORT}\"",
            "audit.key = (secret): must be at least 16 bytes; use a random secret such as `openssl rand -hex 32`",
        ),
        (
            "[audit]\npath = \"a\"\nkey = \"${MISSING}\"",
            "audit.key: environment variable MISSING is not set",
        ),
        (
            "[shadow]\ndisable = [\"default\"]",
            r#"shadow.disable[0] = "default": the default rule cannot be disabled; add a catch-all [[shadow.rules]] entry instead"#,
        ),
    ];
    for (extra, expected) in cases {
        let got = error(extra);
        assert_eq!(&got, expected, "for {extra:?}");
    }
    let zero = BASE.replace("[server]\n", "[server]\ndrain_timeout = \"0s\"\n");
    assert_eq!(
        Config::from_toml_str(&zero).unwrap_err().to_string(),
        r#"server.drain_timeout = "0s": must be a positive duration such as "500ms", "30s" or "5m""#
    );
    assert!(error("[reload]\nwatch = 1").contains("invalid type"));
    let duplicate = error(
        "[[shadow.rules]]\nname = \"x\"\nclass = \"stateful\"\nheader_present = [\"a\"]\n[[shadow.rules]]\nname = \"x\"\nclass = \"stateless\"\nheader_present = [\"a\"]",
    );
    assert_eq!(
        duplicate,
        r#"shadow.rules[1].name = "x": is already used by another rule; rule names must be unique"#
    );
    assert!(error("[shadow]\nunknown = 1").contains("unknown field `unknown`"));
}

#[test]
fn the_sha256_names_the_exact_bytes() {
    let a = load("").unwrap();
    let b = load("# a comment changes the file\n").unwrap();
    assert_ne!(a.source.sha256, b.source.sha256);
    assert_eq!(
        &*a.source.sha256,
        sha256_hex(format!("{BASE}\n").as_bytes())
    );
}

#[test]
fn an_upstream_fingerprint_changes_with_its_section_and_the_global_timeouts_only() {
    let fp = |c: &Config, name: &str| {
        c.upstreams
            .iter()
            .find(|u| u.name == name)
            .unwrap()
            .fingerprint
    };
    let a = load("").unwrap();
    let same =
        load("[[rules]]\nname = \"r\"\nclass = \"stateful\"\nheader_present = [\"x\"]").unwrap();
    assert_eq!(fp(&a, "primary"), fp(&same, "primary"));
    let timeouts = load("[timeouts]\nconnect = \"1s\"").unwrap();
    assert_ne!(fp(&a, "primary"), fp(&timeouts, "primary"));
    let text = BASE.replace("18081/v1", "18083/v1");
    let moved = Config::from_toml_str(&text).unwrap();
    assert_ne!(fp(&a, "primary"), fp(&moved, "primary"));
    assert_eq!(fp(&a, "secondary"), fp(&moved, "secondary"));
}

//! The audit trail's writer: records written, dropped, write errors, queue depth (issue #6).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Why a request's audit record was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum AuditDrop {
    /// `audit.on_full = "drop"` and the queue was full.
    QueueFull,
    /// The request started after the log was closed (shutdown).
    Closed,
    /// The disk kept failing while the log was closing; the writer gave up on the record.
    WriteError,
}

impl AuditDrop {
    const ALL: [AuditDrop; 3] = [
        AuditDrop::QueueFull,
        AuditDrop::Closed,
        AuditDrop::WriteError,
    ];

    const fn as_str(self) -> &'static str {
        match self {
            AuditDrop::QueueFull => "queue_full",
            AuditDrop::Closed => "closed",
            AuditDrop::WriteError => "write_error",
        }
    }
}

/// Which file operation of the audit writer failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum AuditOp {
    /// Opening (or creating) the current file.
    Open,
    /// Appending a batch of lines.
    Write,
    /// fsync.
    Sync,
    /// Renaming the current file aside, or deleting old rotated files.
    Rotate,
}

impl AuditOp {
    const ALL: [AuditOp; 4] = [
        AuditOp::Open,
        AuditOp::Write,
        AuditOp::Sync,
        AuditOp::Rotate,
    ];

    const fn as_str(self) -> &'static str {
        match self {
            AuditOp::Open => "open",
            AuditOp::Write => "write",
            AuditOp::Sync => "fsync",
            AuditOp::Rotate => "rotate",
        }
    }
}

/// Metrics of the audit log writer (`crate::audit`).
pub struct AuditMetrics {
    records: IntCounter,
    dropped: IntCounterVec,
    write_errors: IntCounterVec,
    queue_depth: IntGauge,
    rotations: IntCounter,
}

impl AuditMetrics {
    /// Register the audit metrics; every label value starts at zero.
    pub fn new(registry: &Registry) -> Result<AuditMetrics, prometheus::Error> {
        let records = IntCounter::with_opts(Opts::new(
            "switchyard_audit_records_total",
            "Request records written to the audit log (reached the OS; fsynced at most 1s later).",
        ))?;
        registry.register(Box::new(records.clone()))?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "switchyard_audit_dropped_total",
                "Requests whose audit record was not written, by reason: queue_full \
                 (on_full = \"drop\"), closed (after shutdown began), write_error (the disk \
                 failed while closing).",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(dropped.clone()))?;
        let write_errors = IntCounterVec::new(
            Opts::new(
                "switchyard_audit_write_errors_total",
                "Failed audit file operations, by operation (open, write, fsync, rotate); \
                 failed writes are retried every second.",
            ),
            &["op"],
        )?;
        registry.register(Box::new(write_errors.clone()))?;
        let queue_depth = IntGauge::with_opts(Opts::new(
            "switchyard_audit_queue_depth",
            "Audit queue places taken: by requests in flight and by records waiting for the \
             writer (at most audit.queue).",
        ))?;
        registry.register(Box::new(queue_depth.clone()))?;
        let rotations = IntCounter::with_opts(Opts::new(
            "switchyard_audit_rotations_total",
            "Audit files sealed and rotated aside (size limit, or a partial line on open).",
        ))?;
        registry.register(Box::new(rotations.clone()))?;
        for reason in AuditDrop::ALL {
            dropped.with_label_values(&[reason.as_str()]);
        }
        for op in AuditOp::ALL {
            write_errors.with_label_values(&[op.as_str()]);
        }
        Ok(AuditMetrics {
            records,
            dropped,
            write_errors,
            queue_depth,
            rotations,
        })
    }

    /// `n` request records reached the file.
    pub fn written(&self, n: u64) {
        self.records.inc_by(n);
    }

    /// `on_full = "drop"`: a request found the queue full.
    pub fn dropped_queue_full(&self) {
        self.drop_count(AuditDrop::QueueFull, 1);
    }

    /// A request started after the log was closed.
    pub fn dropped_closed(&self) {
        self.drop_count(AuditDrop::Closed, 1);
    }

    /// The writer gave up on `n` records (the disk kept failing while the log closed).
    pub fn dropped_on_write_error(&self, n: u64) {
        self.drop_count(AuditDrop::WriteError, n);
    }

    fn drop_count(&self, reason: AuditDrop, n: u64) {
        self.dropped.with_label_values(&[reason.as_str()]).inc_by(n);
    }

    pub fn open_failed(&self) {
        self.error(AuditOp::Open);
    }

    pub fn write_failed(&self) {
        self.error(AuditOp::Write);
    }

    pub fn sync_failed(&self) {
        self.error(AuditOp::Sync);
    }

    pub fn rotate_failed(&self) {
        self.error(AuditOp::Rotate);
    }

    fn error(&self, op: AuditOp) {
        self.write_errors.with_label_values(&[op.as_str()]).inc();
    }

    /// The queue depth gauge: +1 when a place is taken, -1 when the writer takes its record
    /// (or the place is given back unused).
    pub fn queue_depth(&self) -> &IntGauge {
        &self.queue_depth
    }

    pub fn rotated(&self) {
        self.rotations.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_registered_at_zero() {
        let registry = Registry::new();
        let m = AuditMetrics::new(&registry).unwrap();
        m.dropped_queue_full();
        m.sync_failed();
        let families = registry.gather();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        for name in [
            "switchyard_audit_records_total",
            "switchyard_audit_dropped_total",
            "switchyard_audit_write_errors_total",
            "switchyard_audit_queue_depth",
            "switchyard_audit_rotations_total",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        let dropped = families
            .iter()
            .find(|f| f.name() == "switchyard_audit_dropped_total")
            .unwrap();
        assert_eq!(dropped.get_metric().len(), 3);
        let errors = families
            .iter()
            .find(|f| f.name() == "switchyard_audit_write_errors_total")
            .unwrap();
        assert_eq!(errors.get_metric().len(), 4);
    }
}

//! How long each stage of serving a request takes, as latency
//! distributions for metrics: where a slow request spent its time (the
//! token check, the access decision, the row it reads, its patient's data
//! key, the wait for its audit event to be durable) and how long the audit
//! writer's commits take, rather than only the request's total.
//!
//! The distributions are Prometheus histograms (prometheus-client); the
//! server exposes them as `clarity_stage_duration_seconds{stage="…"}`. They
//! hold counts per latency bucket only: no id, no PHI.

use std::future::Future;
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

/// A timed stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Checking an access token and its session, user and roles.
    Authenticate,
    /// Deciding an action, including the look-ups of the caller's care
    /// team membership and break-glass grants.
    Authorize,
    /// Reading the stored (sealed) row of the patient or record served.
    RowRead,
    /// Reading and unwrapping the patient's data key.
    DataKey,
    /// A request waiting for its audit event (and its change, for a write)
    /// to be durable: queueing behind other batches plus its own commit.
    AuditWait,
    /// One audit batch: sealing, the transaction and its commit.
    AuditCommit,
}

impl Stage {
    /// Every stage, in the order a read passes through them.
    pub const ALL: [Stage; 6] = [
        Stage::Authenticate,
        Stage::Authorize,
        Stage::RowRead,
        Stage::DataKey,
        Stage::AuditWait,
        Stage::AuditCommit,
    ];

    /// The stage's label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Authenticate => "authenticate",
            Stage::Authorize => "authorize",
            Stage::RowRead => "row_read",
            Stage::DataKey => "data_key",
            Stage::AuditWait => "audit_wait",
            Stage::AuditCommit => "audit_commit",
        }
    }
}

/// One latency histogram per [`Stage`], shared by clones.
#[derive(Debug, Clone)]
pub struct StageTimes {
    histograms: [Histogram; 6],
}

impl Default for StageTimes {
    fn default() -> Self {
        StageTimes::new()
    }
}

impl StageTimes {
    /// Empty histograms with buckets from 5 µs to about 2.6 s, doubling.
    pub fn new() -> StageTimes {
        StageTimes {
            histograms: std::array::from_fn(|_| Histogram::new(exponential_buckets(5e-6, 2.0, 20))),
        }
    }

    /// Counts one pass through `stage` that took `took`.
    pub fn observe(&self, stage: Stage, took: Duration) {
        self.histogram(stage).observe(took.as_secs_f64());
    }

    /// Awaits `work` and counts the time it took as `stage`.
    pub async fn time<T>(&self, stage: Stage, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = work.await;
        self.observe(stage, started.elapsed());
        result
    }

    /// The histogram of `stage`, for exposition.
    pub fn histogram(&self, stage: Stage) -> &Histogram {
        // Stages number from 0 in declaration order, which ALL follows.
        &self.histograms[stage as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exposition of `stage`'s histogram, as Prometheus text.
    fn exposition(times: &StageTimes, stage: Stage) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("t", "", times.histogram(stage).clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        out
    }

    #[tokio::test]
    async fn each_stage_counts_into_its_own_histogram_shared_by_clones() {
        let times = StageTimes::new();
        let clone = times.clone();
        clone.observe(Stage::AuditWait, Duration::from_micros(300));
        let value = times
            .time(Stage::RowRead, async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                7
            })
            .await;
        assert_eq!(value, 7);
        let wait = exposition(&times, Stage::AuditWait);
        assert!(wait.contains("t_count 1"), "{wait}");
        assert!(wait.contains("t_sum 0.0003"), "{wait}");
        let read = exposition(&times, Stage::RowRead);
        assert!(read.contains("t_count 1"), "{read}");
        // The 2 ms sleep lands above the 1.28 ms bucket.
        assert!(read.contains("t_bucket{le=\"0.00128\"} 0"), "{read}");
        for stage in [Stage::Authenticate, Stage::Authorize, Stage::DataKey] {
            assert!(exposition(&times, stage).contains("t_count 0"));
        }
    }

    #[test]
    fn all_lists_the_stages_in_declaration_order() {
        for (i, stage) in Stage::ALL.into_iter().enumerate() {
            assert_eq!(stage as usize, i, "{stage:?}");
        }
    }
}

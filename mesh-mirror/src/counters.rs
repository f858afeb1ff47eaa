//! What happened to mirror copies, counted with atomics so a proxy can export them as metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A cheap, cloneable handle on the counters of one [`MirrorLayer`](crate::MirrorLayer) (and of
/// every service it made). Reading is a handful of relaxed atomic loads.
///
/// Every sampled-in copy ends up counted exactly once among `mirrored`, `dropped_over_cap` and
/// `dropped_body_too_large` (when the body is known to be too large before the copy starts);
/// every `mirrored` copy later ends up in exactly one of `completed`, `failed` or
/// `dropped_body_too_large` (when the body outgrows the limit while streaming).
#[derive(Debug, Clone, Default)]
pub struct MirrorCounters(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    mirrored: AtomicU64,
    skipped_sampling: AtomicU64,
    dropped_over_cap: AtomicU64,
    dropped_body_too_large: AtomicU64,
    failed: AtomicU64,
    completed: AtomicU64,
}

/// A point-in-time copy of [`MirrorCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MirrorStats {
    /// Copies started (sent to a mirror service).
    pub mirrored: u64,
    /// Copies not made because the request was sampled out by `mirrorPercentage`.
    pub skipped_sampling: u64,
    /// Copies dropped because the cap on mirrors in flight was reached.
    pub dropped_over_cap: u64,
    /// Copies not made or aborted because the request body exceeded the byte limit.
    pub dropped_body_too_large: u64,
    /// Copies that ended in an error, a timeout, a panic or a primary body that ended early.
    pub failed: u64,
    /// Copies whose mirror answered (any status) and whose response body was read to the end.
    pub completed: u64,
}

/// Which counter to bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Mirrored,
    SkippedSampling,
    DroppedOverCap,
    DroppedBodyTooLarge,
    Failed,
    Completed,
}

impl MirrorCounters {
    /// Fresh counters at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> MirrorStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MirrorStats {
            mirrored: load(&self.0.mirrored),
            skipped_sampling: load(&self.0.skipped_sampling),
            dropped_over_cap: load(&self.0.dropped_over_cap),
            dropped_body_too_large: load(&self.0.dropped_body_too_large),
            failed: load(&self.0.failed),
            completed: load(&self.0.completed),
        }
    }

    pub(crate) fn record(&self, event: Event) {
        let c = match event {
            Event::Mirrored => &self.0.mirrored,
            Event::SkippedSampling => &self.0.skipped_sampling,
            Event::DroppedOverCap => &self.0.dropped_over_cap,
            Event::DroppedBodyTooLarge => &self.0.dropped_body_too_large,
            Event::Failed => &self.0.failed,
            Event::Completed => &self.0.completed,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The fate of one mirror copy, settled once: the first of the tee (body too large) and the
/// mirror task (completed or failed) to settle it is the one counted.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    settled: Arc<AtomicBool>,
    counters: MirrorCounters,
}

impl Outcome {
    pub(crate) fn new(counters: MirrorCounters) -> Self {
        Self {
            settled: Arc::new(AtomicBool::new(false)),
            counters,
        }
    }

    /// Records `event` unless the copy was already settled; returns whether it was recorded.
    pub(crate) fn settle(&self, event: Event) -> bool {
        let first = !self.settled.swap(true, Ordering::AcqRel);
        if first {
            self.counters.record(event);
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_counters() {
        let a = MirrorCounters::new();
        let b = a.clone();
        b.record(Event::Completed);
        b.record(Event::DroppedOverCap);
        let s = a.snapshot();
        assert_eq!((s.completed, s.dropped_over_cap, s.failed), (1, 1, 0));
    }

    #[test]
    fn an_outcome_is_counted_once() {
        let counters = MirrorCounters::new();
        let outcome = Outcome::new(counters.clone());
        assert!(outcome.clone().settle(Event::DroppedBodyTooLarge));
        assert!(!outcome.settle(Event::Failed));
        let s = counters.snapshot();
        assert_eq!((s.dropped_body_too_large, s.failed), (1, 0));
    }
}

//! Outlier detection (Envoy's consecutive-5xx and consecutive-gateway-failure detectors):
//! pure bookkeeping with the clock passed in, shared by all requests to one cluster.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::destination_rule::OutlierDetection;

/// How one request to an endpoint ended, as outlier detection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Response headers arrived with this status.
    Status(StatusCode),
    /// No response: connect failure, reset, or timeout. Counts as a gateway error and a 5xx
    /// (Envoy's default, which does not split local-origin errors).
    Failure,
}

/// Ejection state of every endpoint of one cluster.
///
/// An endpoint reaching `consecutive5xxErrors` 5xx responses in a row (or
/// `consecutiveGatewayErrors` 502/503/504/failures in a row) is ejected for
/// `baseEjectionTime x` its number of ejections, unless that would put the ejected share at or
/// above `maxEjectionPercent` (so with 10% and fewer than 10 endpoints, one may still be
/// ejected, as in Envoy). Ejected endpoints come back once their time is up. The ejection
/// count decays by one per `interval` spent back in service.
#[derive(Debug)]
pub struct OutlierDetector {
    settings: OutlierDetection,
    epoch: Instant,
    hosts: Vec<HostHealth>,
    ejected: AtomicUsize,
    /// Bumped on every ejection and return: balancers over healthy hosts rebuild on change.
    generation: AtomicU64,
    /// Earliest time (nanos since `epoch`) some ejected host is due back; `u64::MAX` if none.
    next_return: AtomicU64,
    lock: Mutex<()>,
}

#[derive(Debug, Default)]
struct HostHealth {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    /// Nanos since epoch until which the host is ejected; 0 when it is not.
    ejected_until: AtomicU64,
    ejections: AtomicU32,
    /// Nanos since epoch when the host last came back.
    returned_at: AtomicU64,
}

impl OutlierDetector {
    /// State for `hosts` endpoints, all in service.
    pub fn new(settings: OutlierDetection, hosts: usize, now: Instant) -> Self {
        Self {
            settings,
            epoch: now,
            hosts: (0..hosts).map(|_| HostHealth::default()).collect(),
            ejected: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            next_return: AtomicU64::new(u64::MAX),
            lock: Mutex::new(()),
        }
    }

    /// State for a new endpoint list that keeps what `self` knew about the endpoints still
    /// present: `previous[i]` is endpoint `i`'s index in the old list, if it was there. An
    /// endpoint update therefore neither forgives an ejected endpoint nor resets its streak.
    pub fn successor(&self, settings: OutlierDetection, previous: &[Option<usize>]) -> Self {
        let hosts: Vec<HostHealth> = previous
            .iter()
            .map(|old| match old.and_then(|i| self.hosts.get(i)) {
                None => HostHealth::default(),
                Some(h) => HostHealth {
                    consecutive_5xx: AtomicU32::new(h.consecutive_5xx.load(Ordering::Acquire)),
                    consecutive_gateway: AtomicU32::new(
                        h.consecutive_gateway.load(Ordering::Acquire),
                    ),
                    ejected_until: AtomicU64::new(h.ejected_until.load(Ordering::Acquire)),
                    ejections: AtomicU32::new(h.ejections.load(Ordering::Acquire)),
                    returned_at: AtomicU64::new(h.returned_at.load(Ordering::Acquire)),
                },
            })
            .collect();
        let ejected_until = hosts
            .iter()
            .map(|h| h.ejected_until.load(Ordering::Acquire));
        let ejected = ejected_until.clone().filter(|u| *u != 0).count();
        let next_return = ejected_until.filter(|u| *u != 0).min().unwrap_or(u64::MAX);
        Self {
            settings,
            epoch: self.epoch,
            hosts,
            ejected: AtomicUsize::new(ejected),
            generation: AtomicU64::new(0),
            next_return: AtomicU64::new(next_return),
            lock: Mutex::new(()),
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        // Saturates after ~584 years of uptime.
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Changes whenever the set of ejected endpoints does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether endpoint `i` is ejected (as of the last [`refresh`](Self::refresh)).
    pub fn is_ejected(&self, i: usize) -> bool {
        self.hosts
            .get(i)
            .is_some_and(|h| h.ejected_until.load(Ordering::Acquire) != 0)
    }

    /// Number of endpoints ejected now.
    pub fn ejected_count(&self) -> usize {
        self.ejected.load(Ordering::Acquire)
    }

    /// Brings back endpoints whose ejection time is over. Cheap when none is due.
    pub fn refresh(&self, now: Instant) {
        let t = self.nanos(now);
        if t < self.next_return.load(Ordering::Acquire) {
            return;
        }
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = u64::MAX;
        let mut changed = false;
        for h in &self.hosts {
            let until = h.ejected_until.load(Ordering::Acquire);
            if until == 0 {
                continue;
            }
            if until <= t {
                h.ejected_until.store(0, Ordering::Release);
                h.returned_at.store(t, Ordering::Relaxed);
                h.consecutive_5xx.store(0, Ordering::Relaxed);
                h.consecutive_gateway.store(0, Ordering::Relaxed);
                self.ejected.fetch_sub(1, Ordering::AcqRel);
                changed = true;
            } else {
                next = next.min(until);
            }
        }
        self.next_return.store(next, Ordering::Release);
        if changed {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Records how a request to endpoint `i` ended; returns true when this ejected it.
    pub fn record(&self, i: usize, outcome: Outcome, now: Instant) -> bool {
        let Some(h) = self.hosts.get(i) else {
            return false;
        };
        let (is_5xx, is_gateway) = match outcome {
            Outcome::Failure => (true, true),
            Outcome::Status(s) => (s.is_server_error(), matches!(s.as_u16(), 502..=504)),
        };
        let bump = |counter: &AtomicU32, hit: bool| {
            if hit {
                counter.fetch_add(1, Ordering::AcqRel) + 1
            } else {
                counter.store(0, Ordering::Release);
                0
            }
        };
        let n5 = bump(&h.consecutive_5xx, is_5xx);
        let ng = bump(&h.consecutive_gateway, is_gateway);
        let s = &self.settings;
        let trip = (s.consecutive_5xx > 0 && n5 >= s.consecutive_5xx)
            || (s.consecutive_gateway > 0 && ng >= s.consecutive_gateway);
        trip && self.eject(i, now)
    }

    fn eject(&self, i: usize, now: Instant) -> bool {
        let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        let h = &self.hosts[i];
        if h.ejected_until.load(Ordering::Acquire) != 0 {
            return false;
        }
        let ejected = self.ejected.load(Ordering::Acquire);
        // Envoy compares the share already ejected with the cap before ejecting one more.
        if ejected * 100 >= self.hosts.len() * self.settings.max_ejection_percent as usize {
            return false;
        }
        let t = self.nanos(now);
        let interval = self.settings.interval.as_nanos().max(1);
        let back_for = u128::from(t.saturating_sub(h.returned_at.load(Ordering::Relaxed)));
        let previous = h.ejections.load(Ordering::Relaxed);
        let decayed = u128::from(previous).saturating_sub(back_for / interval) as u32;
        let count = decayed + 1;
        h.ejections.store(count, Ordering::Relaxed);
        let time = self.settings.base_ejection_time.saturating_mul(count);
        let time = time.min(Duration::from_secs(300).max(self.settings.base_ejection_time));
        let until = t
            .saturating_add(u64::try_from(time.as_nanos()).unwrap_or(u64::MAX))
            .max(1);
        h.ejected_until.store(until, Ordering::Release);
        h.consecutive_5xx.store(0, Ordering::Relaxed);
        h.consecutive_gateway.store(0, Ordering::Relaxed);
        self.ejected.fetch_add(1, Ordering::AcqRel);
        self.next_return.fetch_min(until, Ordering::AcqRel);
        self.generation.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// `minHealthPercent`: when fewer endpoints than this share are in service, ejections are
    /// ignored and traffic goes to all of them (Envoy's panic mode).
    pub fn in_panic(&self) -> bool {
        let total = self.hosts.len();
        let healthy = total - self.ejected_count();
        total > 0 && healthy * 100 < total * self.settings.min_health_percent as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(n5: u32, max_pct: u32) -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: n5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: max_pct,
            ..OutlierDetection::default()
        }
    }

    const S500: Outcome = Outcome::Status(StatusCode::INTERNAL_SERVER_ERROR);
    const S200: Outcome = Outcome::Status(StatusCode::OK);

    #[test]
    fn consecutive_5xx_eject_and_time_brings_back() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(settings(3, 100), 2, t0);
        assert!(!d.record(0, S500, t0));
        assert!(!d.record(0, S500, t0));
        assert!(d.record(0, S500, t0));
        assert!(d.is_ejected(0) && !d.is_ejected(1));
        d.refresh(t0 + Duration::from_secs(29));
        assert!(d.is_ejected(0));
        d.refresh(t0 + Duration::from_secs(30));
        assert!(!d.is_ejected(0));
    }

    #[test]
    fn a_success_resets_the_streak() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(settings(2, 100), 1, t0);
        d.record(0, S500, t0);
        d.record(0, S200, t0);
        assert!(!d.record(0, S500, t0));
    }

    #[test]
    fn gateway_errors_count_only_502_to_504_and_failures() {
        let t0 = Instant::now();
        let s = OutlierDetection {
            consecutive_5xx: 0,
            consecutive_gateway: 2,
            max_ejection_percent: 100,
            ..Default::default()
        };
        let d = OutlierDetector::new(s, 1, t0);
        assert!(!d.record(0, S500, t0));
        assert!(!d.record(0, S500, t0));
        assert!(!d.record(0, Outcome::Failure, t0));
        assert!(d.record(0, Outcome::Status(StatusCode::BAD_GATEWAY), t0));
    }

    #[test]
    fn ejection_time_grows_with_repeated_ejections() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(settings(1, 100), 1, t0);
        assert!(d.record(0, S500, t0));
        let t1 = t0 + Duration::from_secs(30);
        d.refresh(t1);
        assert!(d.record(0, S500, t1));
        d.refresh(t1 + Duration::from_secs(59));
        assert!(d.is_ejected(0), "second ejection lasts 2 x 30 s");
        d.refresh(t1 + Duration::from_secs(60));
        assert!(!d.is_ejected(0));
    }

    #[test]
    fn max_ejection_percent_caps_ejections() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(settings(1, 50), 4, t0);
        assert!(d.record(0, S500, t0));
        assert!(d.record(1, S500, t0));
        assert!(!d.record(2, S500, t0), "a third would be 75% > 50%");
        assert_eq!(d.ejected_count(), 2);
        // With 10%, one of few hosts may still go, as in Envoy.
        let d = OutlierDetector::new(settings(1, 10), 3, t0);
        assert!(d.record(0, S500, t0));
        assert!(!d.record(1, S500, t0));
    }

    #[test]
    fn successor_keeps_ejections_of_endpoints_still_present() {
        let t0 = Instant::now();
        let d = OutlierDetector::new(settings(1, 100), 2, t0);
        d.record(1, S500, t0);
        // New list: a new endpoint first, then old endpoint 1, then old endpoint 0.
        let next = d.successor(settings(1, 100), &[None, Some(1), Some(0)]);
        assert!(!next.is_ejected(0) && next.is_ejected(1) && !next.is_ejected(2));
        assert_eq!(next.ejected_count(), 1);
        next.refresh(t0 + Duration::from_secs(30));
        assert!(!next.is_ejected(1));
    }

    #[test]
    fn panic_mode_below_min_health() {
        let t0 = Instant::now();
        let s = OutlierDetection {
            min_health_percent: 60,
            ..settings(1, 100)
        };
        let d = OutlierDetector::new(s, 2, t0);
        assert!(!d.in_panic());
        d.record(0, S500, t0);
        assert!(d.in_panic());
    }
}

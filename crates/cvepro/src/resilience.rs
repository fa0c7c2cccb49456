//! The pieces of the resilience layer that decide, as plain state machines over explicit
//! instants: the jittered backoff, the per-client retry budget and the circuit breaker.
//!
//! They hold no clock and do no I/O, so they are tested with hand-made `Instant`s; the client
//! (`client.rs`) feeds them `Instant::now()` and acts on their answers.

use crate::config::{BreakerPolicy, RetryPolicy};
use serde::Serialize;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// Upper bound of the delay before retry `n` (0-based): `min(cap, base·2ⁿ)`, without overflow.
pub fn backoff_ceiling(policy: &RetryPolicy, retry: u32) -> Duration {
    let factor = 2u32.saturating_pow(retry);
    policy.base.saturating_mul(factor).min(policy.cap)
}

/// "Full jitter" backoff: the delay is `unit · min(cap, base·2ⁿ)` where `unit` is drawn
/// uniformly from `[0, 1)` by the caller. Spreading retries over the whole interval keeps many
/// clients from retrying in lock-step against a vendor that is just coming back.
pub fn backoff_delay(policy: &RetryPolicy, retry: u32, unit: f64) -> Duration {
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    backoff_ceiling(policy, retry).mul_f64(unit)
}

/// The sliding window over which the retry budget counts.
pub const BUDGET_WINDOW: Duration = Duration::from_secs(60);

/// Bounds retries to a fraction of the traffic: a retry is allowed only while the retries of
/// the last 60 s are fewer than `max(floor_per_minute, ratio × calls of the last 60 s)`.
/// During a long outage this keeps vetric's extra load on the vendor at about `ratio`, while
/// the floor lets a process that has just started (few calls yet) ride out a short blip.
#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    floor: u32,
    calls: VecDeque<Instant>,
    retries: VecDeque<Instant>,
}

impl RetryBudget {
    pub fn new(policy: &RetryPolicy) -> Self {
        Self {
            ratio: policy.budget_ratio,
            floor: policy.budget_floor_per_minute,
            calls: VecDeque::new(),
            retries: VecDeque::new(),
        }
    }

    fn prune(&mut self, now: Instant) {
        for q in [&mut self.calls, &mut self.retries] {
            while q
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= BUDGET_WINDOW)
            {
                q.pop_front();
            }
        }
    }

    /// Records a logical call (its first attempt).
    pub fn record_call(&mut self, now: Instant) {
        self.prune(now);
        self.calls.push_back(now);
    }

    /// Asks for one retry; records it when granted.
    pub fn try_acquire_retry(&mut self, now: Instant) -> bool {
        self.prune(now);
        let allowed = (self.ratio * self.calls.len() as f64).max(f64::from(self.floor));
        if (self.retries.len() as f64) < allowed {
            self.retries.push_back(now);
            true
        } else {
            false
        }
    }

    /// (calls, retries) in the current window.
    pub fn window_counts(&mut self, now: Instant) -> (usize, usize) {
        self.prune(now);
        (self.calls.len(), self.retries.len())
    }
}

/// The breaker's state as shown to operators and in the `vetric_cvepro_breaker_state` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    HalfOpen,
    Open,
}

impl BreakerState {
    /// Gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge_value(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed,
    /// No request until `until`; the first caller after it becomes the probe.
    Open {
        until: Instant,
    },
    /// One probe is in flight since `since`. If it never reports back (its future was
    /// dropped), another probe is allowed one interval later, so the breaker cannot wedge.
    HalfOpen {
        since: Instant,
    },
}

/// A state change, for the caller to count and log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
}

/// Answer of [`Breaker::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send the request. `probe` is true when this request is the half-open probe.
    Allowed {
        probe: bool,
        transition: Option<Transition>,
    },
    /// Do not send; fail fast.
    Rejected { retry_in: Duration },
}

/// Hand-rolled three-state circuit breaker, long-lived in the client: it opens after
/// `failure_threshold` consecutive failed attempts, then lets exactly one probe through per
/// `probe_interval`; a success closes it, a failed probe re-opens it for another interval.
#[derive(Debug)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: Inner,
    consecutive_failures: u32,
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        Self {
            policy,
            state: Inner::Closed,
            consecutive_failures: 0,
        }
    }

    pub fn state(&self) -> BreakerState {
        match self.state {
            Inner::Closed => BreakerState::Closed,
            Inner::Open { .. } => BreakerState::Open,
            Inner::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    fn set(&mut self, next: Inner) -> Option<Transition> {
        let from = self.state();
        self.state = next;
        let to = self.state();
        (from != to).then_some(Transition { from, to })
    }

    fn probe_slack(&self) -> Duration {
        self.policy.probe_interval / 10
    }

    /// May a request be sent now?
    pub fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            Inner::Closed => Admission::Allowed {
                probe: false,
                transition: None,
            },
            // A poller whose period equals the probe interval arrives a few milliseconds
            // before `until` (the breaker opened when the request *failed*, after the cycle
            // started), so without slack only every other poll probed and recovery took two
            // poll intervals (BENCHMARKS.md "Availability"). A tenth of the interval early is
            // still at most one probe per interval in steady state.
            Inner::Open { until } if now + self.probe_slack() >= until => Admission::Allowed {
                probe: true,
                transition: self.set(Inner::HalfOpen { since: now }),
            },
            Inner::Open { until } => Admission::Rejected {
                retry_in: until - now - self.probe_slack(),
            },
            Inner::HalfOpen { since } => {
                let next_probe = since + self.policy.probe_interval;
                if now >= next_probe {
                    // The previous probe never reported back; allow a new one.
                    self.state = Inner::HalfOpen { since: now };
                    Admission::Allowed {
                        probe: true,
                        transition: None,
                    }
                } else {
                    Admission::Rejected {
                        retry_in: next_probe - now,
                    }
                }
            }
        }
    }

    /// The vendor answered (any status that proves it is alive: 2xx, 4xx).
    pub fn on_success(&mut self) -> Option<Transition> {
        self.consecutive_failures = 0;
        self.set(Inner::Closed)
    }

    /// An attempt failed in a way that counts against the vendor (5xx, timeout, network).
    pub fn on_failure(&mut self, now: Instant) -> Option<Transition> {
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let until = now + self.policy.probe_interval;
        match self.state {
            Inner::Closed if self.consecutive_failures >= self.policy.failure_threshold => {
                self.set(Inner::Open { until })
            }
            Inner::Closed => None,
            Inner::HalfOpen { .. } => self.set(Inner::Open { until }),
            // A request admitted before the breaker opened, failing late: keep the schedule.
            Inner::Open { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    #[test]
    fn backoff_ceiling_doubles_then_caps() {
        let p = policy();
        assert_eq!(backoff_ceiling(&p, 0), Duration::from_millis(500));
        assert_eq!(backoff_ceiling(&p, 1), Duration::from_secs(1));
        assert_eq!(backoff_ceiling(&p, 4), Duration::from_secs(8));
        assert_eq!(backoff_ceiling(&p, 5), Duration::from_secs(8));
        assert_eq!(backoff_ceiling(&p, u32::MAX), Duration::from_secs(8));
        assert_eq!(backoff_delay(&p, 3, 0.0), Duration::ZERO);
        assert_eq!(backoff_delay(&p, 3, f64::NAN), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn backoff_stays_within_full_jitter_bounds(
            base_ms in 1u64..5_000,
            cap_ms in 1u64..120_000,
            retry in 0u32..100,
            unit in 0.0f64..1.0,
        ) {
            let p = RetryPolicy {
                base: Duration::from_millis(base_ms),
                cap: Duration::from_millis(cap_ms),
                ..RetryPolicy::default()
            };
            let delay = backoff_delay(&p, retry, unit);
            let exp = Duration::from_millis(base_ms)
                .saturating_mul(2u32.saturating_pow(retry));
            let bound = exp.min(Duration::from_millis(cap_ms));
            prop_assert!(delay <= bound, "{delay:?} > {bound:?}");
            prop_assert!(delay <= p.cap);
        }
    }

    #[test]
    fn budget_floor_lets_a_fresh_process_retry_then_stops() {
        let mut b = RetryBudget::new(&policy());
        let t0 = Instant::now();
        b.record_call(t0);
        for _ in 0..10 {
            assert!(b.try_acquire_retry(t0));
        }
        assert!(!b.try_acquire_retry(t0), "floor of 10 per minute reached");
        // A minute later the window has slid past them.
        let t1 = t0 + Duration::from_secs(61);
        assert!(b.try_acquire_retry(t1));
    }

    #[test]
    fn budget_scales_with_traffic() {
        let mut b = RetryBudget::new(&policy());
        let t0 = Instant::now();
        for _ in 0..100 {
            b.record_call(t0);
        }
        // 20 % of 100 calls = 20 retries.
        let granted = (0..50).filter(|_| b.try_acquire_retry(t0)).count();
        assert_eq!(granted, 20);
        assert_eq!(b.window_counts(t0), (100, 20));
    }

    #[test]
    fn breaker_opens_half_opens_and_closes() {
        let p = BreakerPolicy {
            failure_threshold: 3,
            probe_interval: Duration::from_secs(10),
        };
        let mut br = Breaker::new(p);
        let t0 = Instant::now();
        assert!(br.on_failure(t0).is_none());
        assert!(br.on_failure(t0).is_none());
        assert_eq!(br.state(), BreakerState::Closed);
        let tr = br.on_failure(t0);
        assert_eq!(
            tr,
            Some(Transition {
                from: BreakerState::Closed,
                to: BreakerState::Open
            })
        );
        // Open: fail fast with the time to the probe (a tenth of the interval early).
        assert_eq!(
            br.admit(t0 + Duration::from_secs(4)),
            Admission::Rejected {
                retry_in: Duration::from_secs(5)
            }
        );
        // After the interval: exactly one probe.
        let t1 = t0 + Duration::from_secs(10);
        assert!(matches!(
            br.admit(t1),
            Admission::Allowed {
                probe: true,
                transition: Some(_)
            }
        ));
        assert_eq!(br.state(), BreakerState::HalfOpen);
        assert!(matches!(
            br.admit(t1 + Duration::from_secs(1)),
            Admission::Rejected { .. }
        ));
        // The probe fails: open again for a full interval.
        assert_eq!(
            br.on_failure(t1 + Duration::from_secs(2)).map(|t| t.to),
            Some(BreakerState::Open)
        );
        assert!(matches!(
            br.admit(t1 + Duration::from_secs(10)),
            Admission::Rejected { .. }
        ));
        let t2 = t1 + Duration::from_secs(12);
        assert!(matches!(
            br.admit(t2),
            Admission::Allowed { probe: true, .. }
        ));
        // The probe succeeds: closed, counter reset.
        assert_eq!(br.on_success().map(|t| t.to), Some(BreakerState::Closed));
        assert_eq!(br.consecutive_failures(), 0);
        assert!(matches!(
            br.admit(t2),
            Admission::Allowed { probe: false, .. }
        ));
    }

    #[test]
    fn a_poller_with_the_probe_interval_as_period_probes_on_every_poll() {
        // The breaker opens when a request fails, a little after its poll cycle started; the
        // next cycle starts one period after the previous one, i.e. just before `until`.
        let period = Duration::from_secs(10);
        let mut br = Breaker::new(BreakerPolicy {
            failure_threshold: 1,
            probe_interval: period,
        });
        let mut cycle = Instant::now();
        br.on_failure(cycle + Duration::from_millis(30));
        for _ in 0..5 {
            cycle += period;
            assert!(
                matches!(br.admit(cycle), Admission::Allowed { probe: true, .. }),
                "every poll must get its probe while the vendor is down"
            );
            br.on_failure(cycle + Duration::from_millis(30));
        }
        cycle += period;
        assert!(matches!(
            br.admit(cycle),
            Admission::Allowed { probe: true, .. }
        ));
        br.on_success();
        assert_eq!(br.state(), BreakerState::Closed);
    }

    #[test]
    fn a_lost_probe_does_not_wedge_the_breaker() {
        let p = BreakerPolicy {
            failure_threshold: 1,
            probe_interval: Duration::from_secs(5),
        };
        let mut br = Breaker::new(p);
        let t0 = Instant::now();
        br.on_failure(t0);
        let t1 = t0 + Duration::from_secs(5);
        assert!(matches!(
            br.admit(t1),
            Admission::Allowed { probe: true, .. }
        ));
        // The probe's future is dropped and never reports. One interval later, a new probe.
        assert!(matches!(
            br.admit(t1 + Duration::from_secs(4)),
            Admission::Rejected { .. }
        ));
        assert!(matches!(
            br.admit(t1 + Duration::from_secs(5)),
            Admission::Allowed { probe: true, .. }
        ));
    }

    #[test]
    fn a_success_in_between_resets_the_count() {
        let p = BreakerPolicy {
            failure_threshold: 2,
            probe_interval: Duration::from_secs(5),
        };
        let mut br = Breaker::new(p);
        let t0 = Instant::now();
        br.on_failure(t0);
        br.on_success();
        br.on_failure(t0);
        assert_eq!(br.state(), BreakerState::Closed);
    }
}

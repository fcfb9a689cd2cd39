//! One breaker's state machine in process memory.
//!
//! `breaker.lua` implements the same rules over Redis keys; the two must agree call for call (a
//! test drives both with the same sequence and compares them), so a change here needs the same
//! change there.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::backend::{Change, Step, View};
use super::{Admission, BreakerSettings, Command, Outcome, State, WindowKind};

#[derive(Debug)]
pub(crate) struct Machine {
    state: State,
    consecutive_trips: u32,
    /// Meaningful while OPEN.
    open_until_ms: u64,
    window: Window,
    episode: Episode,
}

/// The current half-open episode.
#[derive(Debug, Default)]
struct Episode {
    admitted: u32,
    completed: u32,
    failed: u32,
    slow: u32,
    /// Expiry instants of the admitted probes that have not reported yet.
    leases: Vec<u64>,
}

#[derive(Debug)]
enum Window {
    /// Most recent call last: (failure, slow).
    Count(VecDeque<(bool, bool)>),
    /// Unix second -> counts of the calls that ended in it.
    Time(BTreeMap<u64, Bucket>),
}

#[derive(Debug, Default, Clone, Copy)]
struct Bucket {
    calls: u32,
    failures: u32,
    slow: u32,
}

impl Machine {
    pub(crate) fn new(settings: &BreakerSettings) -> Machine {
        let window = match settings.window {
            WindowKind::Count(_) => Window::Count(VecDeque::new()),
            WindowKind::Time(_) => Window::Time(BTreeMap::new()),
        };
        Machine {
            state: State::Closed,
            consecutive_trips: 0,
            open_until_ms: 0,
            window,
            episode: Episode::default(),
        }
    }

    pub(crate) fn acquire(&mut self, s: &BreakerSettings, now: u64) -> Step {
        let mut changes = Vec::new();
        self.expire_leases(s, now, &mut changes);
        let admission = match self.state {
            State::Closed | State::Disabled => Admission::Allowed { probe: false },
            State::ForcedOpen => Admission::Rejected { retry_after: s.open_duration },
            State::Open if now < self.open_until_ms => {
                Admission::Rejected { retry_after: Duration::from_millis(self.open_until_ms - now) }
            }
            State::Open => {
                self.episode = Episode::default();
                self.go(State::HalfOpen, "open period elapsed".to_string(), &mut changes);
                self.admit_probe(s, now)
            }
            State::HalfOpen => self.admit_probe(s, now),
        };
        self.step(Some(admission), s, now, changes)
    }

    pub(crate) fn record(&mut self, s: &BreakerSettings, probe: bool, outcome: Outcome, now: u64) -> Step {
        let mut changes = Vec::new();
        self.expire_leases(s, now, &mut changes);
        let slow = s.is_slow(&outcome);
        if probe {
            // A probe whose lease already expired was counted as failed; its late report is dropped.
            if self.state == State::HalfOpen && self.settle_oldest_lease() {
                let e = &mut self.episode;
                e.completed += 1;
                e.failed += u32::from(outcome.failure);
                e.slow += u32::from(slow);
                self.evaluate_probes(s, now, &mut changes);
            }
        } else if self.state == State::Closed {
            self.window.push(outcome.failure, slow, s, now);
            let (calls, failures, slow_calls) = self.window.stats(s, now);
            if calls >= s.effective_minimum_calls()
                && let Some(reason) = s.rates_reached(calls, failures, slow_calls)
            {
                self.trip(s, now, reason, &mut changes);
            }
        }
        self.step(None, s, now, changes)
    }

    pub(crate) fn command(&mut self, s: &BreakerSettings, cmd: Command, now: u64) -> Step {
        let mut changes = Vec::new();
        match cmd {
            Command::Reset => self.close("operator reset", &mut changes),
            Command::ForceOpen => {
                self.episode = Episode::default();
                self.open_until_ms = 0;
                self.go(State::ForcedOpen, "operator force open".to_string(), &mut changes);
            }
            Command::Disable => {
                self.episode = Episode::default();
                self.open_until_ms = 0;
                self.go(State::Disabled, "operator disable".to_string(), &mut changes);
            }
        }
        self.step(None, s, now, changes)
    }

    /// The breaker as seen at `now`, without applying anything that is due (expired leases, the
    /// end of the open period): looking must not change what the next caller gets.
    pub(crate) fn view(&self, s: &BreakerSettings, now: u64) -> View {
        let half_open = self.state == State::HalfOpen;
        let (calls, failures, slow_calls) = if half_open {
            (self.episode.completed, self.episode.failed, self.episode.slow)
        } else {
            self.window.stats(s, now)
        };
        View {
            state: self.state,
            calls,
            failures,
            slow_calls,
            consecutive_trips: self.consecutive_trips,
            open_until_ms: (self.state == State::Open).then_some(self.open_until_ms),
            probes_admitted: if half_open { self.episode.admitted } else { 0 },
        }
    }

    /// Takes over the state another source (Redis) holds, so that if that source becomes
    /// unreachable this replica carries on from the last state it saw rather than from CLOSED.
    pub(crate) fn adopt(&mut self, view: &View) {
        if self.state != view.state {
            self.episode = Episode::default();
            if view.state == State::Closed {
                self.window.clear();
            }
            self.state = view.state;
        }
        self.consecutive_trips = view.consecutive_trips;
        self.open_until_ms = view.open_until_ms.unwrap_or(0);
    }

    pub(crate) fn clear_window(&mut self) {
        self.window.clear();
    }

    fn step(
        &self,
        admission: Option<Admission>,
        s: &BreakerSettings,
        now: u64,
        changes: Vec<Change>,
    ) -> Step {
        Step { admission, view: self.view(s, now), changes }
    }

    fn admit_probe(&mut self, s: &BreakerSettings, now: u64) -> Admission {
        let e = &mut self.episode;
        if e.admitted < s.probes() {
            e.admitted += 1;
            e.leases.push(now.saturating_add(s.lease_ms()));
            return Admission::Allowed { probe: true };
        }
        // All probes are out: the episode moves on when one reports or its lease expires.
        let wait = e.leases.iter().min().map_or(s.lease_ms(), |&expiry| expiry.saturating_sub(now));
        Admission::Rejected { retry_after: Duration::from_millis(wait) }
    }

    fn settle_oldest_lease(&mut self) -> bool {
        let leases = &mut self.episode.leases;
        let Some((oldest, _)) = leases.iter().enumerate().min_by_key(|&(_, &expiry)| expiry) else {
            return false;
        };
        leases.swap_remove(oldest);
        true
    }

    fn expire_leases(&mut self, s: &BreakerSettings, now: u64, changes: &mut Vec<Change>) {
        if self.state != State::HalfOpen {
            return;
        }
        let before = self.episode.leases.len();
        self.episode.leases.retain(|&expiry| expiry > now);
        let expired = u32::try_from(before - self.episode.leases.len()).unwrap_or(u32::MAX);
        if expired > 0 {
            self.episode.completed += expired;
            self.episode.failed += expired;
            self.evaluate_probes(s, now, changes);
        }
    }

    /// Re-opens as soon as the probes make a threshold certain; closes once all have completed.
    fn evaluate_probes(&mut self, s: &BreakerSettings, now: u64, changes: &mut Vec<Change>) {
        let e = &self.episode;
        if let Some(reason) = s.rates_reached(s.probes(), e.failed, e.slow) {
            self.trip(s, now, format!("probes: {reason}"), changes);
        } else if e.completed >= s.probes() {
            self.close("probes succeeded", changes);
        }
    }

    fn trip(&mut self, s: &BreakerSettings, now: u64, reason: String, changes: &mut Vec<Change>) {
        self.consecutive_trips = self.consecutive_trips.saturating_add(1);
        self.open_until_ms = now.saturating_add(s.open_ms_for(self.consecutive_trips));
        self.episode = Episode::default();
        self.go(State::Open, reason, changes);
    }

    fn close(&mut self, reason: &str, changes: &mut Vec<Change>) {
        self.consecutive_trips = 0;
        self.open_until_ms = 0;
        self.episode = Episode::default();
        self.window.clear();
        self.go(State::Closed, reason.to_string(), changes);
    }

    fn go(&mut self, to: State, reason: String, changes: &mut Vec<Change>) {
        if self.state != to {
            changes.push(Change { from: self.state, to, reason });
        }
        self.state = to;
    }
}

impl Window {
    fn push(&mut self, failure: bool, slow: bool, s: &BreakerSettings, now: u64) {
        match self {
            Window::Count(calls) => {
                calls.push_back((failure, slow));
                let cap = s.window_calls() as usize;
                while calls.len() > cap {
                    calls.pop_front();
                }
            }
            Window::Time(buckets) => {
                let cutoff = (now / 1000).saturating_sub(s.window_secs());
                buckets.retain(|&sec, _| sec > cutoff);
                let b = buckets.entry(now / 1000).or_default();
                b.calls += 1;
                b.failures += u32::from(failure);
                b.slow += u32::from(slow);
            }
        }
    }

    /// (calls, failures, slow calls) inside the window at `now`.
    fn stats(&self, s: &BreakerSettings, now: u64) -> (u32, u32, u32) {
        match self {
            Window::Count(calls) => calls
                .iter()
                .rev()
                .take(s.window_calls() as usize)
                .fold((0, 0, 0), |(c, f, sl), &(failure, slow)| {
                    (c + 1, f + u32::from(failure), sl + u32::from(slow))
                }),
            Window::Time(buckets) => {
                let cutoff = (now / 1000).saturating_sub(s.window_secs());
                buckets
                    .range(cutoff.saturating_add(1)..)
                    .fold((0, 0, 0), |(c, f, sl), (_, b)| (c + b.calls, f + b.failures, sl + b.slow))
            }
        }
    }

    fn clear(&mut self) {
        match self {
            Window::Count(calls) => calls.clear(),
            Window::Time(buckets) => buckets.clear(),
        }
    }
}

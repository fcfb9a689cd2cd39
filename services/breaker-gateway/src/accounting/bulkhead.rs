//! Bulkheads: at most N calls in flight per key, refused beyond rather than queued.
//!
//! A slow deployment holds its calls for minutes (long generations, streams); without a limit it
//! would collect every connection the gateway has, and one busy project would starve the others.
//! Refusing at once (the caller answers 429 or falls back to another deployment) keeps latency
//! honest, where a queue would only hide the overload. The same structure serves projects and
//! deployments; the caller namespaces the keys (`project:x`, `deployment:y`).
//!
//! A [`Permit`] is the right to one call; it is given back when dropped, on whatever thread, so
//! a call that ends by panic, cancellation or a client hanging up cannot leak its slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// In-flight counters by key. Keys are never forgotten: they are the configured projects and
/// deployments, a bounded set.
#[derive(Debug, Default)]
pub struct Bulkheads {
    counters: Mutex<HashMap<String, Arc<AtomicU32>>>,
}

/// One admitted call; dropping it frees the slot.
#[derive(Debug)]
#[must_use = "the slot is freed as soon as the permit is dropped"]
pub struct Permit {
    counter: Arc<AtomicU32>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Bulkheads {
    pub fn new() -> Bulkheads {
        Bulkheads::default()
    }

    fn counter(&self, key: &str) -> Arc<AtomicU32> {
        let mut map = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = map.get(key) {
            return c.clone();
        }
        map.entry(key.to_owned()).or_default().clone()
    }

    /// A permit when fewer than `limit` calls of `key` are in flight; `None` at the limit (a
    /// limit of 0 admits nothing). Never waits.
    pub fn try_enter(&self, key: &str, limit: u32) -> Option<Permit> {
        let counter = self.counter(key);
        counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < limit).then_some(n + 1)).ok()?;
        Some(Permit { counter })
    }

    /// Calls of `key` in flight now.
    pub fn in_flight(&self, key: &str) -> u32 {
        let map = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(key).map_or(0, |c| c.load(Ordering::Acquire))
    }

    /// Every key seen and its calls in flight, sorted by key (for metrics).
    pub fn snapshot(&self) -> Vec<(String, u32)> {
        let map = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<(String, u32)> =
            map.iter().map(|(k, c)| (k.clone(), c.load(Ordering::Acquire))).collect();
        all.sort();
        all
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn the_limit_holds_and_dropping_a_permit_frees_its_slot() {
        let b = Bulkheads::new();
        let first = b.try_enter("project:a", 2).expect("1 of 2");
        let second = b.try_enter("project:a", 2).expect("2 of 2");
        assert!(b.try_enter("project:a", 2).is_none(), "full");
        assert_eq!(b.in_flight("project:a"), 2);
        // keys are independent
        let other = b.try_enter("deployment:a", 1).expect("other key");
        assert!(b.try_enter("deployment:a", 1).is_none());
        drop(first);
        assert_eq!(b.in_flight("project:a"), 1);
        let third = b.try_enter("project:a", 2).expect("a slot was freed");
        assert!(b.try_enter("zero", 0).is_none(), "a limit of 0 admits nothing");
        assert_eq!(b.in_flight("never-seen"), 0);
        assert_eq!(
            b.snapshot(),
            vec![("deployment:a".to_owned(), 1), ("project:a".to_owned(), 2), ("zero".to_owned(), 0)]
        );
        drop((second, third, other));
        assert_eq!(b.in_flight("project:a"), 0);
        assert_eq!(b.in_flight("deployment:a"), 0);
    }

    #[test]
    fn concurrent_callers_never_exceed_the_limit() {
        const LIMIT: u32 = 5;
        let b = Arc::new(Bulkheads::new());
        let peak = Arc::new(AtomicUsize::new(0));
        let admitted = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let start = Arc::new(Barrier::new(16));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (b, peak, admitted, refused, start) =
                    (b.clone(), peak.clone(), admitted.clone(), refused.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..2_000 {
                        match b.try_enter("deployment:x", LIMIT) {
                            Some(p) => {
                                let now = b.in_flight("deployment:x") as usize;
                                peak.fetch_max(now, Ordering::SeqCst);
                                admitted.fetch_add(1, Ordering::SeqCst);
                                std::thread::yield_now();
                                drop(p);
                            }
                            None => {
                                refused.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert!(peak.load(Ordering::SeqCst) <= LIMIT as usize, "peak {}", peak.load(Ordering::SeqCst));
        assert_eq!(admitted.load(Ordering::SeqCst) + refused.load(Ordering::SeqCst), 32_000);
        assert!(refused.load(Ordering::SeqCst) > 0, "16 threads against 5 slots must be refused sometimes");
        assert_eq!(b.in_flight("deployment:x"), 0, "every permit came back");
    }

    #[test]
    fn permits_dropped_on_other_threads_free_their_slots() {
        let b = Bulkheads::new();
        let permits: Vec<Permit> = (0..3).map(|_| b.try_enter("project:p", 3).expect("slot")).collect();
        assert!(b.try_enter("project:p", 3).is_none());
        let (tx, rx) = std::sync::mpsc::channel::<Permit>();
        let dropper = std::thread::spawn(move || {
            let mut n = 0;
            for p in rx {
                drop(p);
                n += 1;
            }
            n
        });
        for p in permits {
            tx.send(p).expect("send");
        }
        drop(tx);
        assert_eq!(dropper.join().expect("thread"), 3);
        assert_eq!(b.in_flight("project:p"), 0);
        assert!(b.try_enter("project:p", 3).is_some());
    }
}

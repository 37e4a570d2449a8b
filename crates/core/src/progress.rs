//! A monotonic counter that threads can wait on: the writer publishes the last change
//! sequence it committed, the indexer waits for it to move and publishes what it indexed.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

#[derive(Debug, Default)]
struct State {
    value: i64,
    /// Bumped by [`Progress::nudge`], so that a nudge ends every wait in progress.
    nudges: u64,
}

/// A shared, only-increasing position in the change sequence.
#[derive(Debug, Default)]
pub struct Progress {
    state: Mutex<State>,
    changed: Condvar,
}

impl Progress {
    pub fn new(start: i64) -> Self {
        Progress { state: Mutex::new(State { value: start, nudges: 0 }), changed: Condvar::new() }
    }

    /// Moves the position forward (never back) and wakes waiters.
    pub fn publish(&self, value: i64) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if value > s.value {
            s.value = value;
            self.changed.notify_all();
        }
    }

    /// Ends every wait in progress without moving (e.g. to let waiters see a stop request).
    pub fn nudge(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).nudges += 1;
        self.changed.notify_all();
    }

    pub fn get(&self) -> i64 {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).value
    }

    /// Waits until the position is beyond `seen`, a nudge, or `timeout`; returns the position.
    pub fn wait_beyond(&self, seen: i64, timeout: Duration) -> i64 {
        let s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let nudges = s.nudges;
        let (s, _) = self
            .changed
            .wait_timeout_while(s, timeout, |s| s.value <= seen && s.nudges == nudges)
            .unwrap_or_else(PoisonError::into_inner);
        s.value
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::Progress;

    #[test]
    fn publish_and_nudge_end_a_wait_and_the_value_never_goes_back() {
        let p = Arc::new(Progress::new(5));
        p.publish(3);
        assert_eq!(p.get(), 5);
        let waiter = {
            let p = p.clone();
            std::thread::spawn(move || p.wait_beyond(5, Duration::from_secs(60)))
        };
        p.publish(7);
        assert_eq!(waiter.join().unwrap(), 7);

        let started = Instant::now();
        let waiter = {
            let p = p.clone();
            std::thread::spawn(move || p.wait_beyond(7, Duration::from_secs(60)))
        };
        // Nudge until the waiter has returned (it may not be waiting yet at the first one).
        while !waiter.is_finished() {
            p.nudge();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(waiter.join().unwrap(), 7);
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}

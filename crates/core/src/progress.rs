//! A monotonic counter that threads can wait on: the writer publishes the last change
//! sequence it committed, the indexer waits for it to move and publishes what it indexed.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

/// A shared, only-increasing position in the change sequence.
#[derive(Debug, Default)]
pub struct Progress {
    value: Mutex<i64>,
    changed: Condvar,
}

impl Progress {
    pub fn new(start: i64) -> Self {
        Progress { value: Mutex::new(start), changed: Condvar::new() }
    }

    /// Moves the position forward (never back) and wakes waiters.
    pub fn publish(&self, value: i64) {
        let mut v = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        if value > *v {
            *v = value;
            self.changed.notify_all();
        }
    }

    /// Wakes waiters without moving (e.g. to let them see a stop request).
    pub fn nudge(&self) {
        self.changed.notify_all();
    }

    pub fn get(&self) -> i64 {
        *self.value.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the position is beyond `seen`, or `timeout` passes; returns the position.
    pub fn wait_beyond(&self, seen: i64, timeout: Duration) -> i64 {
        let v = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        let (v, _) = self
            .changed
            .wait_timeout_while(v, timeout, |v| *v <= seen)
            .unwrap_or_else(PoisonError::into_inner);
        *v
    }
}

//! How long a load thread waits after a request failed in transport (refused, reset,
//! timed out) before its next one: doubling from a first wait up to a ceiling, and
//! back to none after a success, so that a server that is down is not hammered.

use std::time::Duration;

/// The wait after the first failure in a row.
const FIRST: Duration = Duration::from_millis(10);
/// The longest wait between two attempts.
const CEILING: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    /// Records a failure; returns how long to wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next.unwrap_or(FIRST);
        self.next = Some((wait * 2).min(CEILING));
        wait
    }

    /// Records a success: the next failure waits the first wait again.
    pub fn succeeded(&mut self) {
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_ceiling_and_reset_after_a_success() {
        let mut backoff = Backoff::default();
        let waits: Vec<u128> = (0..9).map(|_| backoff.failed().as_millis()).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.succeeded();
        assert_eq!(backoff.failed(), FIRST);
    }
}

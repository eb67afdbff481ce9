//! How long to wait before the next connection attempt: doubling from
//! [`Backoff::FIRST`] to at most [`Backoff::CAP`], each wait drawn at
//! random from its upper half so that replicas which lost Slack together
//! do not all come back in the same instant.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_secs(1);
    pub const CAP: Duration = Duration::from_secs(30);

    pub fn new() -> Self {
        Self { attempt: 0 }
    }

    /// After a connection that worked: the next failure waits little again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The wait before the next attempt; each call doubles the ceiling.
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = Self::FIRST
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(Self::CAP);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=half)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap_and_stay_in_the_upper_half() {
        let mut b = Backoff::new();
        let mut ceiling = Backoff::FIRST;
        for _ in 0..12 {
            let w = b.next_wait();
            assert!(w >= ceiling / 2 && w <= ceiling, "{w:?} for {ceiling:?}");
            ceiling = (ceiling * 2).min(Backoff::CAP);
        }
        assert!(b.next_wait() <= Backoff::CAP);
    }

    #[test]
    fn a_reset_starts_over() {
        let mut b = Backoff::new();
        for _ in 0..8 {
            b.next_wait();
        }
        b.reset();
        assert!(b.next_wait() <= Backoff::FIRST);
    }
}

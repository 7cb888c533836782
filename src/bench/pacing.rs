//! How much and how fast each publisher sends: its share of --count and of --rate.

use std::time::{Duration, Instant};

/// Publisher `index`'s part of `count` messages over `publishers` (`None`: no limit).
pub fn share(count: u64, publishers: usize, index: usize) -> Option<u64> {
    let publishers = publishers as u64;
    (count > 0).then(|| count / publishers + u64::from((index as u64) < count % publishers))
}

/// Spaces a publisher's messages evenly to hold its share of --rate.
pub struct Pacer {
    interval: Option<Duration>,
    next: Instant,
}

impl Pacer {
    pub fn new(rate: u64, publishers: usize) -> Pacer {
        let interval = (rate > 0).then(|| Duration::from_secs_f64(publishers as f64 / rate as f64));
        Pacer { interval, next: Instant::now() }
    }

    /// When the next message is due, or `None` if it may go now.
    pub fn next_slot(&mut self) -> Option<Instant> {
        let interval = self.interval?;
        let now = Instant::now();
        // More than a second behind (a stall): start afresh instead of bursting to catch up.
        if self.next + Duration::from_secs(1) < now {
            self.next = now;
        }
        let at = self.next;
        self.next += interval;
        (at > now).then_some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_spaces_messages_by_the_publishers_share() {
        let mut pacer = Pacer::new(1000, 2);
        assert_eq!(pacer.interval, Some(Duration::from_millis(2)));
        pacer.next_slot();
        let second = pacer.next_slot().expect("the second message waits");
        assert!(second > Instant::now());
        assert!(Pacer::new(0, 1).next_slot().is_none(), "rate 0 is unlimited");
    }

    #[test]
    fn count_is_shared_out_over_the_publishers() {
        let shares: Vec<_> = (0..3).map(|i| share(10, 3, i)).collect();
        assert_eq!(shares, [Some(4), Some(3), Some(3)]);
        assert_eq!(share(1, 2, 1), Some(0));
        assert_eq!(share(0, 2, 0), None, "0 means no limit");
    }
}

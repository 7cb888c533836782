//! Publisher confirms for one channel. Results may complete out of order (a transient message
//! is confirmed at once, a persistent one after its fsync), but they are sent in publish order
//! so that runs of acks collapse into one `basic.ack` with `multiple`.

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct ConfirmTracker {
    /// Delivery tag of the first entry in `results`.
    first: u64,
    /// `None` while pending; `Some(true)` ack, `Some(false)` nack.
    results: VecDeque<Option<bool>>,
}

/// One frame to send: `basic.ack` or `basic.nack` for `tag`, covering earlier tags if `multiple`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirm {
    pub tag: u64,
    pub multiple: bool,
    pub ack: bool,
}

impl ConfirmTracker {
    pub fn new() -> Self {
        ConfirmTracker { first: 1, results: VecDeque::new() }
    }

    /// Registers the next publish and returns its delivery tag.
    pub fn register(&mut self) -> u64 {
        self.results.push_back(None);
        self.first + self.results.len() as u64 - 1
    }

    pub fn complete(&mut self, tag: u64, ack: bool) {
        if let Some(slot) = tag.checked_sub(self.first).and_then(|i| self.results.get_mut(i as usize)) {
            *slot = Some(ack);
        }
    }

    /// The confirms that can be sent now, in order.
    pub fn drain(&mut self) -> Vec<Confirm> {
        let mut out: Vec<Confirm> = Vec::new();
        while let Some(Some(ack)) = self.results.front().copied() {
            self.results.pop_front();
            let tag = self.first;
            self.first += 1;
            match out.last_mut() {
                Some(last) if ack && last.ack && last.tag + 1 == tag => {
                    last.tag = tag;
                    last.multiple = true;
                }
                _ => out.push(Confirm { tag, multiple: false, ack }),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_go_out_in_order_and_collapse() {
        let mut t = ConfirmTracker::new();
        let tags: Vec<u64> = (0..5).map(|_| t.register()).collect();
        assert_eq!(tags, vec![1, 2, 3, 4, 5]);
        t.complete(2, true);
        assert!(t.drain().is_empty(), "tag 1 still pending");
        t.complete(1, true);
        t.complete(3, false);
        t.complete(4, true);
        let out = t.drain();
        assert_eq!(
            out,
            vec![
                Confirm { tag: 2, multiple: true, ack: true },
                Confirm { tag: 3, multiple: false, ack: false },
                Confirm { tag: 4, multiple: false, ack: true },
            ]
        );
        t.complete(5, true);
        assert_eq!(t.drain(), vec![Confirm { tag: 5, multiple: false, ack: true }]);
        t.complete(99, true);
        assert!(t.drain().is_empty());
    }
}

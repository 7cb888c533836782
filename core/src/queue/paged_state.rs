//! How a queue's ready messages move between its in-memory head and its paged range (see
//! `paging` for the range itself and the store reads).
//!
//! The range's invariant: every seq in `first..=last` is a member of the range — on disk, or
//! pinned in memory — or belongs to no message at all. So reading the queue's log over that span
//! can only find members. At run time the range therefore grows one seq at a time: it starts
//! only above every seq the queue has ever held (`highest_pushed`), and a message that arrives
//! ahead of a seq still being published (accepts can overtake each other) waits in memory until
//! the gap fills. After a restart the gaps are seqs acknowledged before it, which never return.

use super::paging::Paged;
use super::state::{Entry, QueueState};

impl QueueState {
    /// Takes the entry into the paged range if it belongs there; gives it back otherwise (it
    /// then goes to the head).
    pub(super) fn offer_to_range(&mut self, entry: Entry) -> Option<Entry> {
        let is_new = entry.seq > self.highest_pushed;
        self.highest_pushed = self.highest_pushed.max(entry.seq);
        if self.pager.is_none() {
            return Some(entry);
        }
        if self.paged.is_none() {
            if !(is_new && self.head_full()) {
                return Some(entry);
            }
            self.paged = Some(Paged::starting_at(entry.seq));
        }
        let paged = self.paged.as_mut().expect("made above");
        if entry.seq < paged.first {
            return Some(entry);
        }
        paged.bytes += entry.msg.size();
        if entry.seq > paged.last + 1 {
            paged.waiting.insert(entry.seq, entry);
        } else if entry.seq <= paged.last {
            // Only a restart leaves gaps inside the range, and their seqs never come back; if
            // one did, it stays a member, in memory.
            paged.pinned.insert(entry.seq, entry);
        } else {
            self.join_range(entry);
            self.join_waiting();
        }
        None
    }

    fn head_full(&self) -> bool {
        let Some(pager) = &self.pager else { return false };
        self.ready[0].len() >= pager.window.messages || self.head_bytes() >= pager.window.bytes
    }

    /// Appends the entry with seq `last + 1` (its bytes are already counted).
    fn join_range(&mut self, entry: Entry) {
        let (Some(pager), Some(paged)) = (&self.pager, &mut self.paged) else { return };
        paged.last = entry.seq;
        if pager.can_page_out(&entry) {
            paged.on_disk += 1;
            paged.ticket = pager.store.write_ticket();
            pager.resources.sub_message_bytes(entry.msg.memory_footprint());
        } else {
            paged.pinned.insert(entry.seq, entry);
        }
    }

    /// Appends the waiting entries that the last join made contiguous.
    fn join_waiting(&mut self) {
        loop {
            let Some(paged) = &mut self.paged else { return };
            let next = paged.last + 1;
            let Some(entry) = paged.waiting.remove(&next) else { return };
            self.join_range(entry);
        }
    }

    /// Counts a message recovered from the store that stays on disk (its body unread).
    pub fn recover_paged(&mut self, seq: u64, size: usize) {
        self.note_recovered(seq);
        self.highest_pushed = self.highest_pushed.max(seq);
        let paged = self.paged.get_or_insert_with(|| Paged::starting_at(seq));
        // Recovery visits the log in seq order: a jump means entries consumed before the
        // restart (or kept in memory) lie inside.
        paged.gaps |= seq != paged.last + 1;
        paged.last = paged.last.max(seq);
        paged.on_disk += 1;
        paged.bytes += size;
        self.ready_bytes += size;
    }

    /// Messages up to `seq` came from the store at start-up.
    pub fn note_recovered(&mut self, seq: u64) {
        if let Some(pager) = &mut self.pager {
            pager.recovered_below = pager.recovered_below.max(seq + 1);
        }
    }

    /// Reads paged messages back into the head once it runs below half its window, and until
    /// it holds something while any are paged.
    pub(super) fn refill(&mut self) {
        let Some(pager) = &self.pager else { return };
        let low = self.ready[0].len() <= pager.window.messages / 2 && self.head_bytes() <= pager.window.bytes / 2;
        if !low {
            return;
        }
        while self.page_in_once() && self.ready[0].is_empty() {}
    }

    /// Reads one batch back; false when nothing is paged, the store failed, or nothing could
    /// be read yet (writes still being applied).
    pub(super) fn page_in_once(&mut self) -> bool {
        let head_bytes = self.head_bytes();
        let (Some(pager), Some(paged)) = (&self.pager, &mut self.paged) else { return false };
        let head = &mut self.ready[0];
        let want = pager.window.messages.saturating_sub(head.len()).max(1);
        let want_bytes = pager.window.bytes.saturating_sub(head_bytes).max(1);
        let page = match pager.page_in(paged, want, want_bytes) {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, "cannot read paged messages back from the store");
                return false;
            }
        };
        let progressed = page.read_to >= paged.first;
        let rest = paged.pinned.split_off(&(page.read_to + 1));
        let pinned = std::mem::replace(&mut paged.pinned, rest);
        let mut back: Vec<Entry> = page.entries;
        back.extend(pinned.into_values());
        if page.read_to >= paged.last {
            // The range is read to its end: what waited beyond it follows.
            back.extend(std::mem::take(&mut paged.waiting).into_values());
        }
        back.sort_unstable_by_key(|e| e.seq);
        let back_bytes: usize = back.iter().map(|e| e.msg.size()).sum();
        paged.bytes = paged.bytes.saturating_sub(back_bytes + page.lost_bytes);
        paged.on_disk = paged.on_disk.saturating_sub(page.taken_from_disk);
        paged.first = page.read_to + 1;
        self.ready_bytes -= page.lost_bytes.min(self.ready_bytes);
        head.extend(back);
        if paged.first > paged.last && paged.waiting.is_empty() {
            // Whatever the counts still say is not on disk: the range is read to its end.
            self.ready_bytes -= paged.bytes.min(self.ready_bytes);
            self.paged = None;
        }
        progressed
    }
}

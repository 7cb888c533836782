//! Resource accounting and alarms. Queues report the bytes of message data they hold; a
//! periodic check reports free disk space. Above the memory high watermark or below the disk
//! free limit the alarm is raised and adapters stop accepting publishes until it clears.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use tokio::sync::watch;

#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Bytes of message data held in queues above which publishers are blocked; 0 = never.
    pub memory_high_watermark: u64,
    /// Free bytes on the data directory's disk below which publishers are blocked; 0 = never.
    pub disk_free_limit: u64,
    /// Queues one vhost may hold; 0 = no limit.
    pub max_queues: usize,
}

pub struct Resources {
    limits: Limits,
    message_bytes: AtomicI64,
    memory_alarm: AtomicBool,
    disk_alarm: AtomicBool,
    /// True while any alarm is raised.
    alarm: watch::Sender<bool>,
}

impl Resources {
    pub fn new(limits: Limits) -> Resources {
        Resources {
            limits,
            message_bytes: AtomicI64::new(0),
            memory_alarm: AtomicBool::new(false),
            disk_alarm: AtomicBool::new(false),
            alarm: watch::Sender::new(false),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn message_bytes(&self) -> u64 {
        self.message_bytes.load(Ordering::Relaxed).max(0) as u64
    }

    pub fn add_message_bytes(&self, n: usize) {
        let now = self.message_bytes.fetch_add(n as i64, Ordering::Relaxed) + n as i64;
        self.check_memory(now);
    }

    pub fn sub_message_bytes(&self, n: usize) {
        let now = self.message_bytes.fetch_sub(n as i64, Ordering::Relaxed) - n as i64;
        self.check_memory(now);
    }

    fn check_memory(&self, bytes: i64) {
        let hw = self.limits.memory_high_watermark;
        if hw == 0 {
            return;
        }
        let over = bytes as u64 > hw;
        // Touch the watch channel only when the state flips, not on every message.
        if self.memory_alarm.load(Ordering::Relaxed) != over {
            self.memory_alarm.store(over, Ordering::Relaxed);
            self.publish_alarm();
        }
    }

    pub fn set_disk_free(&self, free: u64) {
        let low = self.limits.disk_free_limit > 0 && free < self.limits.disk_free_limit;
        if self.disk_alarm.swap(low, Ordering::Relaxed) != low {
            if low {
                tracing::warn!(free, limit = self.limits.disk_free_limit, "disk alarm raised");
            }
            self.publish_alarm();
        }
    }

    fn publish_alarm(&self) {
        let raised = self.memory_alarm.load(Ordering::Relaxed) || self.disk_alarm.load(Ordering::Relaxed);
        self.alarm.send_if_modified(|v| {
            let changed = *v != raised;
            *v = raised;
            changed
        });
    }

    /// Follows the alarm: `true` while publishers must be blocked.
    pub fn alarm(&self) -> watch::Receiver<bool> {
        self.alarm.subscribe()
    }

    /// (memory alarm, disk alarm).
    pub fn alarms(&self) -> (bool, bool) {
        (self.memory_alarm.load(Ordering::Relaxed), self.disk_alarm.load(Ordering::Relaxed))
    }

    pub fn alarm_raised(&self) -> bool {
        *self.alarm.borrow()
    }

    pub fn disk_free_limit(&self) -> u64 {
        self.limits.disk_free_limit
    }
}

/// Free bytes available to unprivileged users on the filesystem holding `path`.
pub fn disk_free(path: &PathBuf) -> Option<u64> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and stat a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_alarm_flips_both_ways() {
        let r = Resources::new(Limits { memory_high_watermark: 100, ..Default::default() });
        let rx = r.alarm();
        r.add_message_bytes(60);
        assert!(!*rx.borrow());
        r.add_message_bytes(60);
        assert!(*rx.borrow());
        r.sub_message_bytes(60);
        assert!(!*rx.borrow());
    }

    #[test]
    fn disk_free_reads_the_filesystem() {
        assert!(disk_free(&PathBuf::from("/")).is_some_and(|b| b > 0));
        let r = Resources::new(Limits { disk_free_limit: 10, ..Default::default() });
        r.set_disk_free(5);
        assert!(r.alarm_raised());
        r.set_disk_free(50);
        assert!(!r.alarm_raised());
    }
}

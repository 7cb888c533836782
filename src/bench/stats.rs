//! Counters shared by every client of a run, the live progress line and the final summary.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Lock-free counters; clients bump them, the main task reads them.
#[derive(Default)]
pub struct Stats {
    published: AtomicU64,
    confirmed: AtomicU64,
    nacked: AtomicU64,
    consumed: AtomicU64,
    publishers_done: AtomicUsize,
    /// Set by a client whose connection failed, so that the run ends early.
    failed: AtomicBool,
}

/// The counters at one instant.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    pub published: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub consumed: u64,
}

impl Stats {
    pub fn published(&self) {
        self.published.fetch_add(1, Relaxed);
    }
    pub fn confirmed(&self, ack: bool) {
        let counter = if ack { &self.confirmed } else { &self.nacked };
        counter.fetch_add(1, Relaxed);
    }
    pub fn consumed(&self) {
        self.consumed.fetch_add(1, Relaxed);
    }
    pub fn publisher_done(&self) {
        self.publishers_done.fetch_add(1, Relaxed);
    }
    pub fn publishers_done(&self) -> usize {
        self.publishers_done.load(Relaxed)
    }
    pub fn fail(&self) {
        self.failed.store(true, Relaxed);
    }
    pub fn failed(&self) -> bool {
        self.failed.load(Relaxed)
    }

    pub fn snapshot(&self) -> Counts {
        Counts {
            published: self.published.load(Relaxed),
            confirmed: self.confirmed.load(Relaxed),
            nacked: self.nacked.load(Relaxed),
            consumed: self.consumed.load(Relaxed),
        }
    }

    /// After the publishers stop: waits until every published message was consumed `copies`
    /// times (the deliveries one message makes), consumption stalls for half a second, or five
    /// seconds pass.
    pub async fn drain_consumers(&self, copies: u64) {
        if copies == 0 {
            return;
        }
        let expected = self.snapshot().published * copies;
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut last, mut last_change) = (self.snapshot().consumed, Instant::now());
        while Instant::now() < deadline && last < expected && last_change.elapsed() < Duration::from_millis(500) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let consumed = self.snapshot().consumed;
            if consumed != last {
                (last, last_change) = (consumed, Instant::now());
            }
        }
    }
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        count as f64 / secs
    } else {
        0.0
    }
}

pub fn print_progress(at: Duration, last: &Counts, now: &Counts) {
    let second = Duration::from_secs(1);
    eprintln!(
        "[{:>4}s] published {:>8.0}/s  confirmed {:>8.0}/s  consumed {:>8.0}/s",
        at.as_secs(),
        per_second(now.published - last.published, second),
        per_second(now.confirmed - last.confirmed, second),
        per_second(now.consumed - last.consumed, second),
    );
}

/// Publish-to-deliver latency in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub samples: u64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// What the run reports: the run's `settings` (each protocol has its own, flattened into the
/// JSON object), then rates over the publishing window; totals include the drain.
#[derive(Debug, Serialize)]
pub struct Summary<S> {
    #[serde(flatten)]
    pub settings: S,
    pub seconds: f64,
    pub published_per_s: f64,
    pub confirmed_per_s: f64,
    pub consumed_per_s: f64,
    pub totals: Counts,
    pub latency_ms: Latency,
}

impl<S: Serialize> Summary<S> {
    pub fn new(settings: S, elapsed: Duration, window: Counts, totals: Counts, hist: &Histogram<u64>) -> Summary<S> {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Summary {
            settings,
            seconds: elapsed.as_secs_f64(),
            published_per_s: per_second(window.published, elapsed),
            confirmed_per_s: per_second(window.confirmed, elapsed),
            consumed_per_s: per_second(window.consumed, elapsed),
            totals,
            latency_ms: Latency {
                samples: hist.len(),
                p50: ms(hist.value_at_quantile(0.50)),
                p95: ms(hist.value_at_quantile(0.95)),
                p99: ms(hist.value_at_quantile(0.99)),
                max: ms(hist.max()),
            },
        }
    }

    /// The human summary goes to stdout, or to stderr when stdout carries the JSON object.
    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        let text = self.text();
        if json {
            eprint!("{text}");
            println!("{}", serde_json::to_string(self)?);
        } else {
            print!("{text}");
        }
        Ok(())
    }

    fn text(&self) -> String {
        let t = &self.totals;
        let l = &self.latency_ms;
        format!(
            "summary over {:.1} s: published {:.0} msg/s, confirmed {:.0} msg/s, consumed {:.0} msg/s\n\
             totals: published {}, confirmed {}, nacked {}, consumed {}\n\
             latency (ms, {} samples): p50 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}\n",
            self.seconds,
            self.published_per_s,
            self.confirmed_per_s,
            self.consumed_per_s,
            t.published,
            t.confirmed,
            t.nacked,
            t.consumed,
            l.samples,
            l.p50,
            l.p95,
            l.p99,
            l.max,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_json_puts_the_settings_beside_the_figures() {
        #[derive(Serialize)]
        struct Settings {
            consumers: usize,
        }
        let histogram = crate::bench::latency::new_histogram();
        let counts = Counts::default();
        let summary = Summary::new(Settings { consumers: 3 }, Duration::from_secs(1), counts, counts, &histogram);
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["consumers"], 3, "the scripts read the settings at the top level");
        assert_eq!(json["consumed_per_s"], 0.0);
    }
}

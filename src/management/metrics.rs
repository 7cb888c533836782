//! `/metrics`: the Prometheus text exposition format (no authentication, as Prometheus
//! scrapes it; put it behind the network's own controls).

use super::Api;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use junction_core::registry::{Protocol, DELIVERY_LATENCY};
use junction_storage::histogram::Histogram;
use std::fmt::Write;
use std::sync::Arc;

pub async fn metrics(State(api): State<Arc<Api>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render(&api))
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    family(out, name, "histogram", help);
    let (buckets, sum, count) = h.snapshot();
    for (bound, n) in buckets {
        let le = if bound.is_infinite() { "+Inf".to_string() } else { bound.to_string() };
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
}

fn render(api: &Api) -> String {
    let mut out = String::new();
    let registry = api.broker.registry();
    family(&mut out, "junction_connections", "gauge", "Open client connections.");
    for p in Protocol::ALL {
        let _ = writeln!(out, "junction_connections{{protocol=\"{}\"}} {}", p.key(), registry.open_count(p));
    }
    let per_protocol: [(&str, &str, fn(&junction_core::registry::TrafficSnapshot) -> u64); 4] = [
        ("junction_messages_received_total", "Messages published by clients.", |t| t.messages_in),
        ("junction_messages_delivered_total", "Messages handed to clients.", |t| t.messages_out),
        ("junction_received_bytes_total", "Bytes read from clients.", |t| t.recv_bytes),
        ("junction_sent_bytes_total", "Bytes written to clients.", |t| t.sent_bytes),
    ];
    for (name, help, read) in per_protocol {
        family(&mut out, name, "counter", help);
        for p in Protocol::ALL {
            let _ = writeln!(out, "{name}{{protocol=\"{}\"}} {}", p.key(), read(&registry.totals(p)));
        }
    }
    queue_metrics(&mut out, api);
    let store = api.broker.store();
    family(&mut out, "junction_store_bytes", "gauge", "Bytes the store occupies on disk.");
    let _ = writeln!(out, "junction_store_bytes {}", store.disk_size());
    histogram(&mut out, "junction_store_fsync_seconds", "Time to write and fsync one group-commit batch.", &store.stats().sync_latency);
    histogram(&mut out, "junction_publish_to_deliver_seconds", "Time from a message's arrival to its delivery to a client.", &DELIVERY_LATENCY);
    let (memory, disk) = api.broker.resources().alarms();
    family(&mut out, "junction_alarm", "gauge", "1 while a resource alarm blocks publishers.");
    let _ = writeln!(out, "junction_alarm{{resource=\"memory\"}} {}\njunction_alarm{{resource=\"disk\"}} {}", u8::from(memory), u8::from(disk));
    family(&mut out, "junction_queued_message_bytes", "gauge", "Bytes of queued messages the memory alarm counts.");
    let _ = writeln!(out, "junction_queued_message_bytes {}", api.broker.resources().message_bytes());
    family(&mut out, "junction_mqtt_retained_messages", "gauge", "MQTT retained messages.");
    let retained: usize = api.broker.vhosts().iter().map(|v| v.retained().len()).sum();
    let _ = writeln!(out, "junction_mqtt_retained_messages {retained}");
    family(&mut out, "junction_delayed_messages", "gauge", "Messages held back by x-delay.");
    let delayed: usize = api.broker.vhosts().iter().map(|v| v.delayed_count()).sum();
    let _ = writeln!(out, "junction_delayed_messages {delayed}");
    out
}

fn queue_metrics(out: &mut String, api: &Api) {
    let mut rows = Vec::new();
    for v in api.broker.vhosts() {
        for q in v.queues() {
            rows.push((format!("vhost=\"{}\",queue=\"{}\"", label(v.name()), label(q.name())), q.counts()));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let columns: [(&str, &str, fn(&junction_core::queue::QueueCounts) -> usize); 4] = [
        ("junction_queue_messages_ready", "Messages ready for delivery.", |c| c.ready),
        ("junction_queue_messages_unacked", "Messages delivered and not yet acknowledged.", |c| c.unacked),
        ("junction_queue_message_bytes", "Body bytes of ready messages.", |c| c.ready_bytes),
        ("junction_queue_consumers", "Consumers.", |c| c.consumers),
    ];
    for (name, help, read) in columns {
        family(out, name, "gauge", help);
        for (labels, counts) in &rows {
            let _ = writeln!(out, "{name}{{{labels}}} {}", read(counts));
        }
    }
}

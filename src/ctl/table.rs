//! Plain-text tables of API answers for people.

use super::Listing;
use serde_json::Value as Json;

/// A cell: strings as they are, other JSON as JSON.
fn cell(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => String::new(),
        Json::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Prints `rows` under `columns` (header, JSON pointer into each row), columns aligned.
fn print(columns: &[(&str, &str)], rows: &[Json]) {
    let cells: Vec<Vec<String>> =
        rows.iter().map(|r| columns.iter().map(|(_, p)| r.pointer(p).map(cell).unwrap_or_default()).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| cells.iter().map(|row| row[i].chars().count()).chain([h.len()]).max().unwrap_or(0))
        .collect();
    let line = |values: Vec<String>| {
        let padded: Vec<String> = values.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(columns.iter().map(|(h, _)| h.to_string()).collect());
    for row in cells {
        line(row);
    }
}

pub fn listing(what: Listing, list: &Json) {
    let rows = list.as_array().cloned().unwrap_or_default();
    let columns: &[(&str, &str)] = match what {
        Listing::Connections => &[
            ("name", "/name"),
            ("protocol", "/protocol"),
            ("user", "/user"),
            ("vhost", "/vhost"),
            ("client id", "/client_id"),
            ("tls", "/ssl"),
            ("channels", "/channels"),
            ("received", "/recv_oct"),
            ("sent", "/send_oct"),
        ],
        Listing::Channels => &[("name", "/name"), ("user", "/user"), ("vhost", "/vhost")],
        Listing::Queues => &[
            ("vhost", "/vhost"),
            ("name", "/name"),
            ("type", "/type"),
            ("ready", "/messages_ready"),
            ("unacked", "/messages_unacknowledged"),
            ("consumers", "/consumers"),
            ("publish/s", "/message_stats/publish_details/rate"),
        ],
        Listing::Exchanges => &[("vhost", "/vhost"), ("name", "/name"), ("type", "/type"), ("durable", "/durable")],
        Listing::Bindings => &[
            ("vhost", "/vhost"),
            ("source", "/source"),
            ("destination", "/destination"),
            ("kind", "/destination_type"),
            ("routing key", "/routing_key"),
        ],
        Listing::Users => &[("name", "/name"), ("tags", "/tags")],
        Listing::Vhosts => &[("name", "/name"), ("queues", "/queues"), ("messages", "/messages")],
        Listing::Permissions => &[("user", "/user"), ("vhost", "/vhost"), ("configure", "/configure"), ("write", "/write"), ("read", "/read")],
        Listing::MqttSessions => &[
            ("client id", "/client_id"),
            ("vhost", "/vhost"),
            ("connected", "/connected"),
            ("persistent", "/persistent"),
            ("queued", "/queued"),
        ],
    };
    print(columns, &rows);
}

pub fn overview(o: &Json) {
    let get = |p: &str| o.pointer(p).map(cell).unwrap_or_default();
    println!("{} {} on {}", get("/product_name"), get("/product_version"), get("/node"));
    println!(
        "connections {} (amqp {}, mqtt {}, stomp {}), channels {}, queues {}, exchanges {}, consumers {}",
        get("/object_totals/connections"),
        get("/connections_by_protocol/amqp"),
        get("/connections_by_protocol/mqtt"),
        get("/connections_by_protocol/stomp"),
        get("/object_totals/channels"),
        get("/object_totals/queues"),
        get("/object_totals/exchanges"),
        get("/object_totals/consumers"),
    );
    println!(
        "messages ready {}, unacked {}; publish {}/s, deliver {}/s",
        get("/queue_totals/messages_ready"),
        get("/queue_totals/messages_unacknowledged"),
        get("/message_stats/publish_details/rate"),
        get("/message_stats/deliver_get_details/rate"),
    );
    println!("alarms: memory {}, disk {}", get("/alarms/memory"), get("/alarms/disk"));
    let listeners = o.get("listeners").and_then(Json::as_array).cloned().unwrap_or_default();
    print(&[("listener", "/protocol"), ("address", "/ip_address"), ("port", "/port")], &listeners);
}

pub fn messages(list: &Json) {
    let rows = list.as_array().cloned().unwrap_or_default();
    print(&[("routing key", "/routing_key"), ("redelivered", "/redelivered"), ("bytes", "/payload_bytes"), ("payload", "/payload")], &rows);
}

//! The binary keyspace. Every key is big-endian so that RocksDB's byte order is numeric order:
//! a queue's messages sort by sequence number and a range delete can drop an acked prefix.

/// Column family of durable definitions: `[kind] ++ name bytes` -> encoded record.
pub const CF_META: &str = "meta";
/// Column family of message bodies, written once however many queues hold the message:
/// `body id (u64 BE)` -> encoded message.
pub const CF_BODIES: &str = "bodies";
/// Column family of queue logs: `queue id (u64 BE) ++ seq (u64 BE)` -> `body id (u64 BE) ++
/// body size (u32 BE) ++ holders (u32 BE)`, where holders is how many queue logs the body was
/// written into. Stores written before the last two fields existed hold only the body id.
pub const CF_QUEUES: &str = "queues";

pub const ALL_CFS: [&str; 3] = [CF_META, CF_BODIES, CF_QUEUES];

/// Key of one entry of a queue's log.
pub fn queue_entry(queue_id: u64, seq: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&queue_id.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// Splits a queue log key back into `(queue id, seq)`.
pub fn parse_queue_entry(key: &[u8]) -> Option<(u64, u64)> {
    if key.len() != 16 {
        return None;
    }
    let queue_id = u64::from_be_bytes(key[..8].try_into().ok()?);
    let seq = u64::from_be_bytes(key[8..].try_into().ok()?);
    Some((queue_id, seq))
}

pub fn body(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Value of one queue log entry (see `CF_QUEUES`).
pub fn log_value(body_id: u64, size: u32, holders: u32) -> [u8; 16] {
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&body_id.to_be_bytes());
    value[8..12].copy_from_slice(&size.to_be_bytes());
    value[12..].copy_from_slice(&holders.to_be_bytes());
    value
}

/// Splits a queue log value into `(body id, size and holders when recorded)`.
pub fn parse_log_value(bytes: &[u8]) -> Option<(u64, Option<(u32, u32)>)> {
    let body_id = parse_u64(bytes)?;
    let extra = match bytes.get(8..16) {
        Some(rest) => Some((
            u32::from_be_bytes(rest[..4].try_into().ok()?),
            u32::from_be_bytes(rest[4..].try_into().ok()?),
        )),
        None => None,
    };
    Some((body_id, extra))
}

pub fn parse_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keys_sort_numerically() {
        assert!(queue_entry(1, 255) < queue_entry(1, 256));
        assert!(queue_entry(1, u64::MAX) < queue_entry(2, 0));
        assert_eq!(parse_queue_entry(&queue_entry(7, 9)), Some((7, 9)));
        assert_eq!(parse_queue_entry(b"short"), None);
    }

    #[test]
    fn log_values_parse_in_both_formats() {
        assert_eq!(parse_log_value(&log_value(7, 100, 2)), Some((7, Some((100, 2)))));
        assert_eq!(parse_log_value(&body(7)), Some((7, None)), "a value written before sizes were recorded");
        assert_eq!(parse_log_value(b"short"), None);
    }
}

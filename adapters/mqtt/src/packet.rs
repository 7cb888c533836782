//! The project's own MQTT packet types, one shape for every protocol level. The codec crate's
//! v3 and v5 packets are converted to and from these at the edge (`codec.rs`), so the session
//! logic never branches on the wire format, only on what the client negotiated.

use bytes::Bytes;

/// The protocol level from CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// MQTT 3.1 (`MQIsdp`, level 3)
    V31,
    /// MQTT 3.1.1 (level 4)
    V311,
    /// MQTT 5.0 (level 5)
    V5,
}

/// MQTT 5 publish properties (all empty for 3.1.x).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishProps {
    pub payload_utf8: bool,
    pub expiry_secs: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user: Vec<(String, String)>,
    pub subscription_ids: Vec<u32>,
    pub topic_alias: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub packet_id: Option<u16>,
    pub props: PublishProps,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub delay_secs: u32,
    pub props: PublishProps,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub level: Level,
    pub client_id: String,
    pub clean_start: bool,
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub will: Option<Will>,
    /// MQTT 5 session expiry interval (seconds); for 3.1.x derived from clean session.
    pub session_expiry: u32,
    /// How many QoS 1/2 publishes the client accepts at once (65535 when unset).
    pub receive_max: u16,
    pub max_packet_size: Option<u32>,
    pub topic_alias_max: u16,
    pub auth_method: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionOptions {
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    /// 0: send retained at subscribe, 1: only for new subscriptions, 2: never.
    pub retain_handling: u8,
}

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Connect(Box<Connect>),
    Publish(Box<Publish>),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe { packet_id: u16, subscription_id: Option<u32>, filters: Vec<(String, SubscriptionOptions)> },
    Unsubscribe { packet_id: u16, filters: Vec<String> },
    PingReq,
    /// `reason` 0x04 asks for the will to be published; `session_expiry` may change it.
    Disconnect { reason: u8, session_expiry: Option<u32> },
    Auth,
}

/// CONNACK, with v5 reason codes (mapped to 3.1.x return codes on the wire).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    pub session_present: bool,
    pub reason: u8,
    pub assigned_client_id: Option<String>,
    pub receive_max: u16,
    pub server_keep_alive: Option<u16>,
    pub max_packet_size: Option<u32>,
    pub topic_alias_max: u16,
    pub session_expiry: Option<u32>,
    pub reason_string: Option<String>,
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    ConnAck(ConnAck),
    Publish(Box<Publish>),
    PubAck { packet_id: u16, reason: u8 },
    PubRec { packet_id: u16, reason: u8 },
    PubRel { packet_id: u16 },
    PubComp { packet_id: u16 },
    SubAck { packet_id: u16, codes: Vec<u8> },
    UnsubAck { packet_id: u16, codes: Vec<u8> },
    PingResp,
    Disconnect { reason: u8, reason_string: Option<String> },
}

/// MQTT 5 reason codes used by the broker.
pub mod reason {
    pub const SUCCESS: u8 = 0x00;
    pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    pub const UNSPECIFIED: u8 = 0x80;
    pub const MALFORMED_PACKET: u8 = 0x81;
    pub const PROTOCOL_ERROR: u8 = 0x82;
    pub const IMPLEMENTATION_SPECIFIC: u8 = 0x83;
    pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
    pub const CLIENT_ID_NOT_VALID: u8 = 0x85;
    pub const BAD_USERNAME_OR_PASSWORD: u8 = 0x86;
    pub const NOT_AUTHORIZED: u8 = 0x87;
    pub const SERVER_UNAVAILABLE: u8 = 0x88;
    pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    pub const PACKET_ID_NOT_FOUND: u8 = 0x92;
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9E;

    /// The text a server DISCONNECT carries as its Reason String. (Some clients only report
    /// the reason code of a DISCONNECT that has properties: paho-mqtt for Python reads it only
    /// from a packet longer than two bytes.)
    pub fn describe(code: u8) -> &'static str {
        match code {
            MALFORMED_PACKET => "malformed packet",
            PROTOCOL_ERROR => "protocol error",
            SERVER_SHUTTING_DOWN => "server shutting down",
            KEEP_ALIVE_TIMEOUT => "keep alive timeout",
            SESSION_TAKEN_OVER => "session taken over by another connection with the same client id",
            TOPIC_NAME_INVALID => "topic name invalid",
            RECEIVE_MAXIMUM_EXCEEDED => "receive maximum exceeded",
            TOPIC_ALIAS_INVALID => "topic alias invalid",
            PACKET_TOO_LARGE => "packet too large",
            ADMINISTRATIVE_ACTION => "closed by an administrator",
            _ => "unspecified error",
        }
    }
}

/// The 3.1.x CONNACK return code for a v5 reason code.
pub fn v3_return_code(reason: u8) -> u8 {
    match reason {
        reason::SUCCESS => 0,
        reason::UNSUPPORTED_PROTOCOL_VERSION => 1,
        reason::CLIENT_ID_NOT_VALID => 2,
        reason::SERVER_UNAVAILABLE => 3,
        reason::BAD_USERNAME_OR_PASSWORD => 4,
        _ => 5,
    }
}

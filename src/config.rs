//! Configuration: a TOML file (`--config`), overridden by `JUNCTION_*` environment variables,
//! overridden by flags. Every field has a default, so `junction` alone starts a broker.

use junction_core::permissions::{PermissionRecord, TopicPermissionRecord};
use clap::{Parser, Subcommand};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "junction", version, about = "One broker for MQTT, STOMP and AMQP 0-9-1")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML configuration file.
    #[arg(long, env = "JUNCTION_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the store lives (default ./junction-data).
    #[arg(long, env = "JUNCTION_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// AMQP 0-9-1 listener: host:port or `off` (default 0.0.0.0:5672).
    #[arg(long, env = "JUNCTION_AMQP")]
    pub amqp: Option<String>,
    /// MQTT listener: host:port or `off` (default 0.0.0.0:1883).
    #[arg(long, env = "JUNCTION_MQTT")]
    pub mqtt: Option<String>,
    /// STOMP listener: host:port or `off` (default 0.0.0.0:61613).
    #[arg(long, env = "JUNCTION_STOMP")]
    pub stomp: Option<String>,
    /// HTTP listener (management, metrics, WebSocket): host:port or `off` (default 0.0.0.0:15672).
    #[arg(long, env = "JUNCTION_HTTP")]
    pub http: Option<String>,
    /// PEM certificate chain for the TLS listeners (turns amqps / mqtts / stomps on).
    #[arg(long, env = "JUNCTION_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, env = "JUNCTION_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates to verify client certificates against.
    #[arg(long, env = "JUNCTION_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// AMQP over TLS: host:port or `off` (default 0.0.0.0:5671 once a certificate is set).
    #[arg(long, env = "JUNCTION_AMQPS")]
    pub amqps: Option<String>,
    /// MQTT over TLS: host:port or `off` (default 0.0.0.0:8883 once a certificate is set).
    #[arg(long, env = "JUNCTION_MQTTS")]
    pub mqtts: Option<String>,
    /// STOMP over TLS: host:port or `off` (default 0.0.0.0:61614 once a certificate is set).
    #[arg(long, env = "JUNCTION_STOMPS")]
    pub stomps: Option<String>,
    /// HTTPS / WSS (WebSocket endpoints over TLS): host:port or `off` (default 0.0.0.0:15671
    /// once a certificate is set).
    #[arg(long, env = "JUNCTION_HTTPS")]
    pub https: Option<String>,
    /// Log format: `text` or `json`.
    #[arg(long, env = "JUNCTION_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Bytes of message data held in queues above which publishers are blocked (0 = off;
    /// default 40% of the machine's memory).
    #[arg(long, env = "JUNCTION_MEMORY_HIGH_WATERMARK")]
    pub memory_high_watermark: Option<u64>,
    /// Free disk bytes below which publishers are blocked (0 = off).
    #[arg(long, env = "JUNCTION_DISK_FREE_LIMIT")]
    pub disk_free_limit: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prints the argon2 hash of a password, for `[[users]]` entries in the config file.
    HashPassword { password: String },
    /// Load generators for benchmarking a broker (this one or another).
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// Operates a running broker through its management API.
    Ctl(crate::ctl::CtlArgs),
}

/// The file's shape. Every section and field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub log_format: Option<String>,
    #[serde(default)]
    pub listeners: ListenerConfig,
    #[serde(default)]
    pub amqp: AmqpSection,
    #[serde(default)]
    pub mqtt: MqttSection,
    #[serde(default)]
    pub stomp: StompSection,
    #[serde(default)]
    pub tls: TlsSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub users: Vec<UserEntry>,
    pub loopback_users: Option<Vec<String>>,
    #[serde(default)]
    pub vhosts: Vec<String>,
    #[serde(default)]
    pub permissions: Vec<PermissionRecord>,
    #[serde(default)]
    pub topic_permissions: Vec<TopicPermissionRecord>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub amqp: Option<String>,
    pub mqtt: Option<String>,
    pub stomp: Option<String>,
    pub http: Option<String>,
    pub amqps: Option<String>,
    pub mqtts: Option<String>,
    pub stomps: Option<String>,
    pub https: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    #[serde(default)]
    pub require_client_cert: bool,
    /// Log clients in by their verified certificate (SASL EXTERNAL in AMQP; MQTT and STOMP
    /// clients that send no user name).
    #[serde(default)]
    pub cert_login: bool,
    /// Which part of the certificate is the user name: common_name (default), san_dns, san_email.
    pub cert_login_from: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSection {
    pub frame_max: Option<u32>,
    pub channel_max: Option<u16>,
    pub heartbeat: Option<u16>,
    pub handshake_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSection {
    pub max_packet_size: Option<u32>,
    pub max_inflight: Option<u16>,
    pub max_queued_messages: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub max_keep_alive: Option<u16>,
    /// User for clients without a username; "" refuses them.
    pub anonymous_user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StompSection {
    pub max_headers: Option<usize>,
    pub max_header_line: Option<usize>,
    pub connect_timeout_ms: Option<u64>,
    /// User for clients that send no login; "" refuses them.
    pub default_user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub memory_high_watermark: Option<u64>,
    pub disk_free_limit: Option<u64>,
    pub max_message_size: Option<u64>,
    /// Open connections in all (every protocol); 0 = no limit.
    pub max_connections: Option<usize>,
    /// Open connections per user; 0 = no limit.
    pub max_connections_per_user: Option<usize>,
    /// Queues per vhost; 0 = no limit.
    pub max_queues: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    pub name: String,
    /// argon2 PHC string, e.g. from `junction hash-password`.
    pub password_hash: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A listener address, or `None` when turned off.
pub type Listen = Option<SocketAddr>;

/// The configuration after merging file, environment and flags.
#[derive(Debug)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub json_logs: bool,
    pub amqp: Listen,
    pub mqtt: Listen,
    pub stomp: Listen,
    pub http: Listen,
    pub amqps: Listen,
    pub mqtts: Listen,
    pub stomps: Listen,
    pub https: Listen,
    pub tls: Option<junction_tls::TlsFiles>,
    pub amqp_options: junction_amqp::AmqpConfig,
    pub mqtt_options: junction_mqtt::MqttConfig,
    pub stomp_options: junction_stomp::StompConfig,
    pub memory_high_watermark: u64,
    pub disk_free_limit: u64,
    pub connection_limits: junction_core::connections::ConnectionLimits,
    pub max_queues: usize,
    pub users: Vec<UserEntry>,
    pub loopback_users: Vec<String>,
    pub vhosts: Vec<String>,
    pub permissions: Vec<PermissionRecord>,
    pub topic_permissions: Vec<TopicPermissionRecord>,
}

/// A login for clients that send none: the file's value ("" = none), else the default.
fn optional_user(configured: Option<String>, default: Option<String>) -> Option<String> {
    match configured {
        Some(u) if u.is_empty() => None,
        Some(u) => Some(u),
        None => default,
    }
}

/// RabbitMQ's default: 40% of the machine's memory (0 = no alarm if it cannot be read).
fn default_memory_watermark() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    total_kib * 1024 / 10 * 4
}

fn listen(name: &str, value: Option<String>, default: &str) -> anyhow::Result<Listen> {
    let value = value.unwrap_or_else(|| default.to_string());
    if value == "off" {
        return Ok(None);
    }
    let addr = value
        .parse()
        .map_err(|_| anyhow::anyhow!("--{name}: expected host:port or 'off', got '{value}'"))?;
    Ok(Some(addr))
}

/// A TLS listener: on at its standard port once a certificate is configured.
fn tls_listen(name: &str, value: Option<String>, default: &str, tls: bool) -> anyhow::Result<Listen> {
    match (tls, value.as_deref()) {
        (true, _) => listen(name, value, default),
        (false, None | Some("off")) => Ok(None),
        (false, Some(_)) => anyhow::bail!("--{name} needs a certificate (--tls-cert and --tls-key)"),
    }
}

fn cert_login(file: &TlsSection) -> anyhow::Result<Option<junction_tls::CertLoginFrom>> {
    let from = file.cert_login_from.as_deref().unwrap_or("common_name");
    let from = from.parse().map_err(|e: String| anyhow::anyhow!("[tls] cert_login_from: {e}"))?;
    Ok(file.cert_login.then_some(from))
}

fn tls_files(cli: &Cli, file: &TlsSection) -> anyhow::Result<Option<junction_tls::TlsFiles>> {
    let cert = cli.tls_cert.clone().or_else(|| file.cert.clone());
    let key = cli.tls_key.clone().or_else(|| file.key.clone());
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(_), Some(_)) if (file.require_client_cert || file.cert_login) && cli.tls_ca.is_none() && file.ca.is_none() => {
            anyhow::bail!("[tls] require_client_cert and cert_login need a CA to verify client certificates against (--tls-ca or [tls] ca)")
        }
        (Some(cert_chain), Some(key)) => Ok(Some(junction_tls::TlsFiles {
            cert_chain,
            key,
            client_ca: cli.tls_ca.clone().or_else(|| file.ca.clone()),
            crls: file.crls.clone(),
            require_client_cert: file.require_client_cert,
            cert_login: cert_login(file)?,
        })),
        _ => anyhow::bail!("TLS needs both a certificate (--tls-cert) and its key (--tls-key)"),
    }
}

impl Settings {
    pub fn load(cli: Cli) -> anyhow::Result<Settings> {
        let file: FileConfig = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
            }
            None => FileConfig::default(),
        };
        let defaults = junction_amqp::AmqpConfig::default();
        let tls = tls_files(&cli, &file.tls)?;
        let log_format = cli.log_format.or(file.log_format).unwrap_or_else(|| "text".into());
        if log_format != "text" && log_format != "json" {
            anyhow::bail!("log format must be 'text' or 'json', got '{log_format}'");
        }
        let amqp_options = junction_amqp::AmqpConfig {
            frame_max: file.amqp.frame_max.unwrap_or(defaults.frame_max).max(4096),
            channel_max: file.amqp.channel_max.unwrap_or(defaults.channel_max),
            heartbeat: file.amqp.heartbeat.unwrap_or(defaults.heartbeat),
            handshake_timeout: file
                .amqp
                .handshake_timeout_ms
                .map_or(defaults.handshake_timeout, std::time::Duration::from_millis),
            max_message_size: file.limits.max_message_size.unwrap_or(defaults.max_message_size),
        };
        let m = junction_mqtt::MqttConfig::default();
        let mqtt_options = junction_mqtt::MqttConfig {
            max_packet_size: file.mqtt.max_packet_size.unwrap_or(m.max_packet_size),
            max_inflight: file.mqtt.max_inflight.unwrap_or(m.max_inflight).max(1),
            max_queued_messages: file.mqtt.max_queued_messages.unwrap_or(m.max_queued_messages),
            connect_timeout: file.mqtt.connect_timeout_ms.map_or(m.connect_timeout, std::time::Duration::from_millis),
            anonymous_user: optional_user(file.mqtt.anonymous_user, m.anonymous_user),
            max_keep_alive: file.mqtt.max_keep_alive.unwrap_or(m.max_keep_alive),
            vhost: m.vhost,
        };
        let s = junction_stomp::StompConfig::default();
        let stomp_options = junction_stomp::StompConfig {
            limits: junction_stomp::codec::Limits {
                max_headers: file.stomp.max_headers.unwrap_or(s.limits.max_headers),
                max_header_line: file.stomp.max_header_line.unwrap_or(s.limits.max_header_line),
                max_head: s.limits.max_head.max(file.stomp.max_header_line.unwrap_or(0)),
                max_body: amqp_options.max_message_size as usize,
            },
            connect_timeout: file.stomp.connect_timeout_ms.map_or(s.connect_timeout, std::time::Duration::from_millis),
            default_user: optional_user(file.stomp.default_user, s.default_user),
            ..s
        };
        Ok(Settings {
            data_dir: cli.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("junction-data")),
            json_logs: log_format == "json",
            amqp: listen("amqp", cli.amqp.or(file.listeners.amqp), "0.0.0.0:5672")?,
            mqtt: listen("mqtt", cli.mqtt.or(file.listeners.mqtt), "0.0.0.0:1883")?,
            stomp: listen("stomp", cli.stomp.or(file.listeners.stomp), "0.0.0.0:61613")?,
            http: listen("http", cli.http.or(file.listeners.http), "0.0.0.0:15672")?,
            amqps: tls_listen("amqps", cli.amqps.clone().or(file.listeners.amqps.clone()), "0.0.0.0:5671", tls.is_some())?,
            mqtts: tls_listen("mqtts", cli.mqtts.clone().or(file.listeners.mqtts.clone()), "0.0.0.0:8883", tls.is_some())?,
            stomps: tls_listen("stomps", cli.stomps.clone().or(file.listeners.stomps.clone()), "0.0.0.0:61614", tls.is_some())?,
            https: tls_listen("https", cli.https.clone().or(file.listeners.https.clone()), "0.0.0.0:15671", tls.is_some())?,
            tls,
            amqp_options,
            mqtt_options,
            stomp_options,
            memory_high_watermark: cli
                .memory_high_watermark
                .or(file.limits.memory_high_watermark)
                .unwrap_or_else(default_memory_watermark),
            disk_free_limit: cli.disk_free_limit.or(file.limits.disk_free_limit).unwrap_or(50_000_000),
            max_queues: file.limits.max_queues.unwrap_or(0),
            connection_limits: junction_core::connections::ConnectionLimits {
                max_total: file.limits.max_connections.unwrap_or(0),
                max_per_user: file.limits.max_connections_per_user.unwrap_or(0),
            },
            users: file.users,
            loopback_users: file.loopback_users.unwrap_or_else(|| vec!["guest".into()]),
            vhosts: file.vhosts,
            permissions: file.permissions,
            topic_permissions: file.topic_permissions,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("junction").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_flags_and_file_merge() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.toml");
        std::fs::write(
            &path,
            "data_dir = \"/from-file\"\n[listeners]\namqp = \"127.0.0.1:7000\"\nmqtt = \"off\"\n[limits]\nmemory_high_watermark = 5\n[mqtt]\nmax_inflight = 10\nanonymous_user = \"\"\n",
        )
        .unwrap();
        let s = Settings::load(cli(&["--config", path.to_str().unwrap(), "--amqp", "127.0.0.1:7001"])).unwrap();
        assert_eq!(s.amqp, Some("127.0.0.1:7001".parse().unwrap()), "flags beat the file");
        assert_eq!(s.mqtt, None);
        assert_eq!(s.stomp, Some("0.0.0.0:61613".parse().unwrap()));
        assert_eq!(s.data_dir, PathBuf::from("/from-file"));
        assert_eq!(s.memory_high_watermark, 5);
        let defaults = Settings::load(cli(&[])).unwrap();
        assert!(defaults.memory_high_watermark > 0, "40% of the machine's memory by default");
        assert_eq!(s.mqtt_options.max_inflight, 10);
        assert_eq!(s.mqtt_options.anonymous_user, None, "an empty name refuses anonymous clients");
        assert!(Settings::load(cli(&["--http", "nonsense"])).is_err());
        std::fs::write(&path, "unknown_key = 1\n").unwrap();
        assert!(Settings::load(cli(&["--config", path.to_str().unwrap()])).is_err());
    }
}

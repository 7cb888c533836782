//! The `junction` binary: loads configuration, opens the broker, starts the listeners, and shuts
//! everything down cleanly on SIGINT / SIGTERM.

mod bench;
mod config;
mod ctl;
mod dashboard;
mod demo;
mod http;
mod management;
mod tls_listener;

use clap::Parser;
use config::{Cli, Command, Settings};
use junction_core::resources::Limits;
use junction_core::{Broker, BrokerConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

fn main() -> anyhow::Result<()> {
    let mut cli = Cli::parse();
    match cli.command.take() {
        Some(Command::HashPassword { password }) => {
            println!("{}", junction_core::auth::hash_password(&password));
            return Ok(());
        }
        Some(Command::Bench(command)) => return bench::run(command),
        Some(Command::Ctl(args)) => return ctl::run(args),
        None => {}
    }
    let settings = Settings::load(cli)?;
    init_logging(settings.json_logs);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(settings))
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("JUNCTION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let config = BrokerConfig {
        data_dir: settings.data_dir.clone(),
        limits: Limits {
            memory_high_watermark: settings.memory_high_watermark,
            disk_free_limit: settings.disk_free_limit,
            max_queues: settings.max_queues,
        },
        loopback_users: settings.loopback_users.clone(),
        default_vhost: "/".into(),
        connection_limits: settings.connection_limits,
    };
    let broker = Broker::open(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let r = broker.recovery();
    tracing::info!(
        data_dir = %settings.data_dir.display(),
        queues = r.queues,
        exchanges = r.exchanges,
        bindings = r.bindings,
        messages = r.messages,
        millis = r.millis as u64,
        "store recovered"
    );
    for user in &settings.users {
        broker.put_user(&user.name, &user.password_hash, user.tags.clone()).map_err(|e| anyhow::anyhow!("user '{}': {e}", user.name))?;
    }
    for vhost in &settings.vhosts {
        broker.add_vhost(vhost);
    }
    for p in &settings.permissions {
        broker.set_permissions(p.clone()).map_err(|e| anyhow::anyhow!("permissions of '{}' on '{}': {e}", p.user, p.vhost))?;
    }
    for t in &settings.topic_permissions {
        broker.set_topic_permissions(t.clone()).map_err(|e| anyhow::anyhow!("topic permissions of '{}' on '{}': {e}", t.user, t.vhost))?;
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut bound = Vec::new();
    if let Some(addr) = settings.amqp {
        let listener = bind(&mut bound, "amqp", addr).await?;
        let task = junction_amqp::serve(listener, broker.clone(), settings.amqp_options.clone(), shutdown_rx.clone());
        tasks.push(tokio::spawn(task));
    }
    let mqtt = junction_mqtt::Mqtt::new(broker.clone(), settings.mqtt_options.clone());
    if let Some(addr) = settings.mqtt {
        let listener = bind(&mut bound, "mqtt", addr).await?;
        tasks.push(tokio::spawn(junction_mqtt::serve(listener, mqtt.clone(), shutdown_rx.clone())));
    }
    let stomp = junction_stomp::Stomp::new(broker.clone(), settings.stomp_options.clone());
    if let Some(addr) = settings.stomp {
        let listener = bind(&mut bound, "stomp", addr).await?;
        tasks.push(tokio::spawn(junction_stomp::serve(listener, stomp.clone(), shutdown_rx.clone())));
    }
    let tls = match &settings.tls {
        Some(files) => Some(junction_tls::Reloadable::load(files.clone()).map_err(|e| anyhow::anyhow!("TLS: {e}"))?),
        None => None,
    };
    if let Some(tls) = &tls {
        tokio::spawn(tls_listener::reload_on_sighup(tls.clone()));
        if let Some(addr) = settings.amqps {
            let listener = bind(&mut bound, "amqps", addr).await?;
            let (broker, config, shutdown) = (broker.clone(), Arc::new(settings.amqp_options.clone()), shutdown_rx.clone());
            let serve = move |s, link| junction_amqp::serve_stream(s, link, broker.clone(), config.clone(), shutdown.clone());
            tasks.push(tokio::spawn(tls_listener::serve(listener, tls.clone(), shutdown_rx.clone(), serve)));
        }
        if let Some(addr) = settings.mqtts {
            let listener = bind(&mut bound, "mqtts", addr).await?;
            let mqtt = mqtt.clone();
            let serve = move |s, link| mqtt.clone().serve_stream(s, link);
            tasks.push(tokio::spawn(tls_listener::serve(listener, tls.clone(), shutdown_rx.clone(), serve)));
        }
        if let Some(addr) = settings.stomps {
            let listener = bind(&mut bound, "stomps", addr).await?;
            let (stomp, shutdown) = (stomp.clone(), shutdown_rx.clone());
            let serve = move |s, link| stomp.clone().serve_stream(s, link, shutdown.clone());
            tasks.push(tokio::spawn(tls_listener::serve(listener, tls.clone(), shutdown_rx.clone(), serve)));
        }
    }
    let adapters = http::Adapters {
        mqtt: (settings.mqtt.is_some() || settings.mqtts.is_some()).then(|| mqtt.clone()),
        stomp: (settings.stomp.is_some() || settings.stomps.is_some()).then(|| stomp.clone()),
    };
    tracing::info!(
        paths = "/mqtt (MQTT over WebSocket), /ws (STOMP over WebSocket), /demo, /dashboard, /api, /metrics",
        "HTTP endpoints"
    );
    let http_listener = match settings.http {
        Some(addr) => Some(bind(&mut bound, "http", addr).await?),
        None => None,
    };
    let https_listener = match (settings.https, &tls) {
        (Some(addr), Some(tls)) => Some(http::TlsListener::new(bind(&mut bound, "https", addr).await?, tls.clone(), shutdown_rx.clone())?),
        _ => None,
    };
    let api = management::Api::new(broker.clone(), bound);
    if let Some(listener) = http_listener {
        let (adapters, api, shutdown) = (adapters.clone(), api.clone(), shutdown_rx.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = http::serve(listener, adapters, api, shutdown).await {
                tracing::error!(error = %e, "HTTP listener failed");
            }
        }));
    }
    if let Some(listener) = https_listener {
        let shutdown = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = http::serve(listener, adapters, api, shutdown).await {
                tracing::error!(error = %e, "HTTPS listener failed");
            }
        }));
    }
    tokio::spawn(watch_disk(broker.clone(), shutdown_rx.clone()));
    wait_for_signal().await;
    tracing::info!("shutting down");
    let _ = shutdown_tx.send(true);
    // MQTT connections (over TCP, TLS and WebSocket) are told by their adapter, not the watch.
    mqtt.shut_down();
    for task in tasks {
        let _ = task.await;
    }
    // Connections send their close frames; give them a moment before the store closes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    broker.shutdown().await;
    tracing::info!("store closed, bye");
    Ok(())
}

async fn watch_disk(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    loop {
        broker.check_disk();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Binds a listener and logs it.
/// Binds a listener and notes it for `/api/overview`.
async fn bind(
    bound: &mut Vec<management::ListenerInfo>,
    protocol: &'static str,
    addr: std::net::SocketAddr,
) -> anyhow::Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("{protocol} listener {addr}: {e}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(protocol, %addr, "listening");
    bound.push(management::ListenerInfo { protocol, addr });
    Ok(listener)
}

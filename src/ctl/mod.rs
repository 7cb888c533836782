//! `junction ctl`: the management API from the command line (docs/operations.md). Tables for
//! people, `--json` for scripts.

mod client;
mod table;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use client::{segment, Client};
use serde_json::{json, Value as Json};

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The broker's HTTP listener.
    #[arg(long, env = "JUNCTION_CTL_URL", default_value = "http://127.0.0.1:15672")]
    url: String,
    #[arg(long, env = "JUNCTION_CTL_USER", default_value = "guest")]
    user: String,
    #[arg(long, env = "JUNCTION_CTL_PASSWORD", default_value = "guest", hide_env_values = true)]
    password: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Listing {
    Connections,
    Channels,
    Queues,
    Exchanges,
    Bindings,
    Users,
    Vhosts,
    Permissions,
    MqttSessions,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Totals, rates, listeners and alarms.
    Overview,
    /// Lists connections, channels, queues, exchanges, bindings, users, vhosts, permissions or
    /// MQTT sessions.
    List {
        what: Listing,
        /// Only this vhost (queues, exchanges, bindings).
        #[arg(long)]
        vhost: Option<String>,
    },
    /// Declares a queue (`--type stream` for a stream; `--arg x-max-length=1000` for arguments).
    DeclareQueue {
        name: String,
        #[arg(long, default_value = "/")]
        vhost: String,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        durable: bool,
        #[arg(long = "type", default_value = "classic")]
        kind: String,
        #[arg(long = "arg", value_parser = key_value)]
        args: Vec<(String, String)>,
    },
    DeleteQueue {
        name: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    PurgeQueue {
        name: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    DeclareExchange {
        name: String,
        #[arg(long = "type", default_value = "direct")]
        kind: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    DeleteExchange {
        name: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Binds a queue to an exchange.
    Bind {
        exchange: String,
        queue: String,
        #[arg(long, default_value = "")]
        key: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    AddVhost { name: String },
    DeleteVhost { name: String },
    /// Creates or updates a user (`--tags administrator`, `monitoring`, ...).
    AddUser {
        name: String,
        password: String,
        #[arg(long, default_value = "")]
        tags: String,
    },
    DeleteUser { name: String },
    /// Sets a user's configure / write / read patterns on a vhost.
    SetPermissions {
        user: String,
        configure: String,
        write: String,
        read: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    ClearPermissions {
        user: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Closes a client connection (its name as `list connections` shows it).
    CloseConnection {
        name: String,
        #[arg(long, default_value = "Closed via junction ctl")]
        reason: String,
    },
    /// Writes every definition to FILE (`-` for standard output).
    ExportDefinitions { file: String },
    /// Imports definitions from FILE (`-` for standard input).
    ImportDefinitions { file: String },
    /// Writes a consistent copy of the store (a RocksDB checkpoint) into DIR on the broker's
    /// machine; DIR must not exist yet.
    Backup { dir: String },
    /// Publishes a message (exchange "" is the default exchange).
    Publish {
        exchange: String,
        routing_key: String,
        payload: String,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Takes messages from a queue (`--requeue` puts them back).
    Get {
        queue: String,
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[arg(long)]
        requeue: bool,
        #[arg(long, default_value = "/")]
        vhost: String,
    },
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("expected key=value, got '{s}'"))
}

/// An argument value as JSON: integers and booleans typed, anything else a string.
fn argument_value(v: &str) -> Json {
    if let Ok(n) = v.parse::<i64>() {
        return json!(n);
    }
    match v {
        "true" => json!(true),
        "false" => json!(false),
        _ => json!(v),
    }
}

pub fn run(args: CtlArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(execute(args))
}

async fn execute(args: CtlArgs) -> anyhow::Result<()> {
    let api = Client::new(&args.url, &args.user, &args.password)?;
    let done = |what: String| if args.json { println!("{}", json!({ "ok": what })) } else { println!("{what}") };
    let v = segment;
    match args.command {
        CtlCommand::Overview => {
            let o = api.call("GET", "/api/overview", None).await?;
            if args.json { println!("{o}") } else { table::overview(&o) }
        }
        CtlCommand::List { what, vhost } => {
            let list = api.call("GET", &list_path(what, vhost.as_deref()), None).await?;
            if args.json { println!("{list}") } else { table::listing(what, &list) }
        }
        CtlCommand::DeclareQueue { name, vhost, durable, kind, args: arguments } => {
            let mut table: serde_json::Map<String, Json> = arguments.iter().map(|(k, val)| (k.clone(), argument_value(val))).collect();
            if kind != "classic" {
                table.insert("x-queue-type".into(), json!(kind));
            }
            let body = json!({ "durable": durable, "auto_delete": false, "arguments": table });
            api.call("PUT", &format!("/api/queues/{}/{}", v(&vhost), v(&name)), Some(&body)).await?;
            done(format!("queue '{name}' declared"));
        }
        CtlCommand::DeleteQueue { name, vhost } => {
            api.call("DELETE", &format!("/api/queues/{}/{}", v(&vhost), v(&name)), None).await?;
            done(format!("queue '{name}' deleted"));
        }
        CtlCommand::PurgeQueue { name, vhost } => {
            api.call("DELETE", &format!("/api/queues/{}/{}/contents", v(&vhost), v(&name)), None).await?;
            done(format!("queue '{name}' purged"));
        }
        CtlCommand::DeclareExchange { name, kind, vhost } => {
            let body = json!({ "type": kind, "durable": true });
            api.call("PUT", &format!("/api/exchanges/{}/{}", v(&vhost), v(&name)), Some(&body)).await?;
            done(format!("exchange '{name}' declared"));
        }
        CtlCommand::DeleteExchange { name, vhost } => {
            api.call("DELETE", &format!("/api/exchanges/{}/{}", v(&vhost), v(&name)), None).await?;
            done(format!("exchange '{name}' deleted"));
        }
        CtlCommand::Bind { exchange, queue, key, vhost } => {
            let path = format!("/api/bindings/{}/e/{}/q/{}", v(&vhost), v(&exchange), v(&queue));
            api.call("POST", &path, Some(&json!({ "routing_key": key }))).await?;
            done(format!("queue '{queue}' bound to '{exchange}' with key '{key}'"));
        }
        CtlCommand::AddVhost { name } => {
            api.call("PUT", &format!("/api/vhosts/{}", v(&name)), None).await?;
            done(format!("vhost '{name}' added"));
        }
        CtlCommand::DeleteVhost { name } => {
            api.call("DELETE", &format!("/api/vhosts/{}", v(&name)), None).await?;
            done(format!("vhost '{name}' deleted"));
        }
        CtlCommand::AddUser { name, password, tags } => {
            api.call("PUT", &format!("/api/users/{}", v(&name)), Some(&json!({ "password": password, "tags": tags }))).await?;
            done(format!("user '{name}' set"));
        }
        CtlCommand::DeleteUser { name } => {
            api.call("DELETE", &format!("/api/users/{}", v(&name)), None).await?;
            done(format!("user '{name}' deleted"));
        }
        CtlCommand::SetPermissions { user, configure, write, read, vhost } => {
            let body = json!({ "configure": configure, "write": write, "read": read });
            api.call("PUT", &format!("/api/permissions/{}/{}", v(&vhost), v(&user)), Some(&body)).await?;
            done(format!("permissions of '{user}' on '{vhost}' set"));
        }
        CtlCommand::ClearPermissions { user, vhost } => {
            api.call("DELETE", &format!("/api/permissions/{}/{}", v(&vhost), v(&user)), None).await?;
            done(format!("permissions of '{user}' on '{vhost}' cleared"));
        }
        CtlCommand::CloseConnection { name, reason } => {
            api.close_connection(&name, &reason).await?;
            done(format!("connection '{name}' closed"));
        }
        CtlCommand::ExportDefinitions { file } => {
            let doc = api.call("GET", "/api/definitions", None).await?;
            let text = serde_json::to_string_pretty(&doc)?;
            if file == "-" {
                println!("{text}");
            } else {
                std::fs::write(&file, text).with_context(|| format!("cannot write {file}"))?;
                done(format!("definitions written to {file}"));
            }
        }
        CtlCommand::ImportDefinitions { file } => {
            let text = if file == "-" { std::io::read_to_string(std::io::stdin())? } else { std::fs::read_to_string(&file)? };
            let doc: Json = serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))?;
            api.call("POST", "/api/definitions", Some(&doc)).await?;
            done(format!("definitions imported from {file}"));
        }
        CtlCommand::Backup { dir } => {
            api.call("POST", "/api/backup", Some(&json!({ "path": dir }))).await?;
            done(format!("store checkpoint written to {dir}"));
        }
        CtlCommand::Publish { exchange, routing_key, payload, vhost } => {
            let name = if exchange.is_empty() { "amq.default".to_string() } else { exchange };
            let body = json!({ "routing_key": routing_key, "payload": payload, "payload_encoding": "string", "properties": {} });
            let answer = api.call("POST", &format!("/api/exchanges/{}/{}/publish", v(&vhost), v(&name)), Some(&body)).await?;
            let routed = answer.get("routed").and_then(Json::as_bool).unwrap_or(false);
            if args.json { println!("{answer}") } else { println!("{}", if routed { "routed" } else { "not routed" }) }
        }
        CtlCommand::Get { queue, count, requeue, vhost } => {
            let ackmode = if requeue { "ack_requeue_true" } else { "ack_requeue_false" };
            let body = json!({ "count": count, "ackmode": ackmode, "encoding": "auto" });
            let messages = api.call("POST", &format!("/api/queues/{}/{}/get", v(&vhost), v(&queue)), Some(&body)).await?;
            if args.json { println!("{messages}") } else { table::messages(&messages) }
        }
    }
    Ok(())
}

fn list_path(what: Listing, vhost: Option<&str>) -> String {
    let scoped = |base: &str| match vhost {
        Some(v) => format!("{base}/{}", segment(v)),
        None => base.to_string(),
    };
    match what {
        Listing::Connections => "/api/connections".into(),
        Listing::Channels => "/api/channels".into(),
        Listing::Queues => scoped("/api/queues"),
        Listing::Exchanges => scoped("/api/exchanges"),
        Listing::Bindings => scoped("/api/bindings"),
        Listing::Users => "/api/users".into(),
        Listing::Vhosts => "/api/vhosts".into(),
        Listing::Permissions => "/api/permissions".into(),
        Listing::MqttSessions => "/api/mqtt/sessions".into(),
    }
}

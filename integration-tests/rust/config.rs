//! The binary's configuration end to end: users and vhosts from a TOML file, graceful shutdown.

use crate::broker::Broker;
use lapin::{Connection, ConnectionProperties};
use std::process::Command;
use std::time::Duration;
use tokio::time::timeout;

fn hash(password: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_junction")).args(["hash-password", password]).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn try_connect(url: &str) -> Result<Connection, lapin::Error> {
    timeout(Duration::from_secs(10), Connection::connect(url, ConnectionProperties::default()))
        .await
        .expect("connect attempt finishes in time")
}

#[tokio::test]
async fn users_and_vhosts_come_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("junction.toml");
    let toml = format!(
        "vhosts = [\"staging\"]\n\n[[users]]\nname = \"alice\"\npassword_hash = \"{}\"\ntags = [\"administrator\"]\n\n\
         [[permissions]]\nuser = \"alice\"\nvhost = \"staging\"\nconfigure = \".*\"\nwrite = \".*\"\nread = \".*\"\n",
        hash("wonderland")
    );
    std::fs::write(&config, toml).unwrap();
    let b = Broker::start_with(&["--config".into(), config.to_str().unwrap().into()]);
    let conn = try_connect(&b.url_for("alice", "wonderland", "staging")).await.expect("alice logs in");
    conn.close(200, "bye".into()).await.unwrap();
    assert!(try_connect(&b.url_for("alice", "wrong", "staging")).await.is_err(), "wrong password refused");
    assert!(try_connect(&b.url_for("alice", "wonderland", "nowhere")).await.is_err(), "unknown vhost refused");
    assert!(try_connect(&b.url_for("alice", "wonderland", "%2F")).await.is_err(), "no permissions on '/'");
    assert!(try_connect(&b.url()).await.is_ok(), "guest still exists");
}

#[test]
fn a_bad_config_file_stops_start_up_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("junction.toml");
    std::fs::write(&config, "[listeners]\namqp = \"not an address\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_junction"))
        .args(["--config", config.to_str().unwrap(), "--data-dir", dir.path().join("d").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected host:port or 'off'"));
}

//! Starts the real `junction` binary on ephemeral loopback ports with a temp data dir.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    child: Option<Child>,
    extra_args: Vec<String>,
    pub amqp: SocketAddr,
    pub mqtt: SocketAddr,
    data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Broker {
    pub fn start() -> Broker {
        Self::start_with(&[])
    }

    /// Starts with extra command-line arguments (e.g. `--config FILE`).
    pub fn start_with(extra_args: &[String]) -> Broker {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().to_path_buf();
        let amqp: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mqtt: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let extra_args = extra_args.to_vec();
        let mut broker = Broker { child: None, extra_args, amqp, mqtt, data_dir, _tmp: Some(tmp) };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.join("broker.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_junction"))
            .args(["--data-dir", self.data_dir.join("data").to_str().unwrap()])
            .args(["--amqp", &self.amqp.to_string(), "--mqtt", &self.mqtt.to_string(), "--stomp", "off", "--http", "off"])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("junction binary starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let listening = |addr| TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok();
        while !(listening(&self.amqp) && listening(&self.mqtt)) {
            assert!(Instant::now() < deadline, "broker did not listen within 30 s: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("broker.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        self.url_for("guest", "guest", "%2F")
    }

    pub fn url_for(&self, user: &str, password: &str, vhost: &str) -> String {
        format!("amqp://{user}:{password}@{}/{vhost}", self.amqp)
    }

    /// SIGKILL, then start again on the same data dir and port.
    pub fn kill_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

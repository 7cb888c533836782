//! End-to-end tests: the real `junction` binary, started on ephemeral loopback ports with a
//! temp data dir (`broker`), driven by real clients. One test binary, one module per area.

mod amqp_lapin;
mod broker;
mod config;
mod mqtt_rumqttc;

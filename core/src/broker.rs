//! The broker: the store, the vhosts, the users, resource alarms, and start-up recovery.

use crate::auth::{self, User};
use crate::error::{CoreError, CoreResult, ErrorKind};
use crate::message::Message;
use crate::connections::{ConnectionLimits, ConnectionPermit, Connections};
use crate::registry::{ConnectionInfo, Registry, Transport};
use crate::permissions::{Access, PermissionRecord, PermissionTable, TopicPermissionRecord};
use crate::persist::{Record, UserRecord};
use crate::queue::paging::Window;
use crate::queue::{Queue, StoredBody};
use crate::resources::{Limits, Resources};
use crate::vhost::VHost;
use junction_storage::{Op, Store};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub data_dir: PathBuf,
    pub limits: Limits,
    /// Users that may only log in from a loopback address.
    pub loopback_users: Vec<String>,
    pub default_vhost: String,
    pub connection_limits: ConnectionLimits,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            data_dir: PathBuf::from("junction-data"),
            limits: Limits::default(),
            loopback_users: vec!["guest".into()],
            default_vhost: "/".into(),
            connection_limits: ConnectionLimits::default(),
        }
    }
}

/// What start-up recovery found.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub vhosts: usize,
    pub exchanges: usize,
    pub queues: usize,
    pub bindings: usize,
    pub messages: usize,
    pub millis: u128,
}

pub struct Broker {
    config: BrokerConfig,
    store: Arc<Store>,
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    users: RwLock<HashMap<String, UserRecord>>,
    resources: Arc<Resources>,
    queue_ids: Arc<AtomicU64>,
    connection_ids: AtomicU64,
    /// Protocol sessions by (vhost, protocol, id): opaque bytes owned by the adapters.
    sessions: RwLock<HashMap<(String, String, String), Vec<u8>>>,
    permissions: PermissionTable,
    connections: Arc<Connections>,
    registry: Arc<Registry>,
    recovery: RecoveryReport,
}

impl Broker {
    /// Opens the store in the configured data directory and restores everything durable.
    pub fn open(config: BrokerConfig) -> CoreResult<Arc<Broker>> {
        let store = Store::open(&config.data_dir.join("store"))
            .map_err(|e| CoreError::internal(format!("cannot open store: {e}")))?;
        let connections = Connections::new(config.connection_limits);
        let mut broker = Broker {
            resources: Arc::new(Resources::new(config.limits.clone())),
            config,
            store: Arc::new(store),
            vhosts: RwLock::new(HashMap::new()),
            users: RwLock::new(HashMap::new()),
            queue_ids: Arc::new(AtomicU64::new(1)),
            connection_ids: AtomicU64::new(1),
            sessions: RwLock::new(HashMap::new()),
            permissions: PermissionTable::default(),
            connections,
            registry: Arc::default(),
            recovery: RecoveryReport::default(),
        };
        broker.recovery = broker.recover()?;
        let default_vhost = broker.config.default_vhost.clone();
        if broker.vhost(&default_vhost).is_none() {
            broker.add_vhost(&default_vhost);
        }
        broker.grant_permissions_to_users_of_an_older_store()?;
        if broker.users.read().is_empty() {
            // First start, as RabbitMQ: guest/guest, full permissions on the default vhost.
            broker.put_user("guest", &auth::hash_password("guest"), vec!["administrator".into()])?;
            let all = ".*".to_string();
            let full = PermissionRecord { user: "guest".into(), vhost: default_vhost, configure: all.clone(), write: all.clone(), read: all };
            broker.set_permissions(full)?;
        }
        Ok(Arc::new(broker))
    }

    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn resources(&self) -> &Arc<Resources> {
        &self.resources
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn next_connection_id(&self) -> u64 {
        self.connection_ids.fetch_add(1, Ordering::Relaxed)
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }

    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        self.vhosts.read().values().cloned().collect()
    }

    pub fn add_vhost(&self, name: &str) -> Arc<VHost> {
        let mut vhosts = self.vhosts.write();
        if let Some(v) = vhosts.get(name) {
            return v.clone();
        }
        self.store.submit(vec![Record::VHost { name: name.into() }.put()]);
        let vhost = VHost::new(name, self.store.clone(), self.resources.clone(), self.queue_ids.clone());
        vhosts.insert(name.into(), vhost.clone());
        vhost
    }

    /// Creates or replaces a user with an argon2 hash (PHC string).
    pub fn put_user(&self, name: &str, password_hash: &str, tags: Vec<String>) -> CoreResult<()> {
        auth::validate_hash(password_hash)?;
        let record = UserRecord { name: name.into(), password_hash: password_hash.into(), tags };
        self.store.submit(vec![Record::User(record.clone()).put()]);
        self.users.write().insert(name.into(), record);
        Ok(())
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<UserRecord> {
        let mut users: Vec<UserRecord> = self.users.read().values().cloned().collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        users
    }

    pub fn user(&self, name: &str) -> Option<UserRecord> {
        self.users.read().get(name).cloned()
    }

    /// Deletes a user and its permissions everywhere; false when there was none.
    pub fn delete_user(&self, name: &str) -> bool {
        let Some(record) = self.users.write().remove(name) else { return false };
        let mut ops = vec![Record::User(record).delete()];
        for vhost in self.vhosts.read().keys() {
            ops.extend(self.permission_deletes(name, vhost));
        }
        self.store.submit(ops);
        true
    }

    /// Removes a user's permissions on a vhost, durably; false when it had none.
    pub fn delete_permissions(&self, user: &str, vhost: &str) -> bool {
        let ops = self.permission_deletes(user, vhost);
        let found = !ops.is_empty();
        self.store.submit(ops);
        found
    }

    fn permission_deletes(&self, user: &str, vhost: &str) -> Vec<junction_storage::Op> {
        let (permission, topics) = self.permissions.remove(user, vhost);
        let mut ops: Vec<_> = permission.into_iter().map(|p| Record::Permission(p).delete()).collect();
        ops.extend(topics.into_iter().map(|t| Record::TopicPermission(t).delete()));
        ops
    }

    /// Deletes a vhost with everything in it; false when there was none. The default vhost
    /// cannot be deleted.
    pub fn delete_vhost(&self, name: &str) -> CoreResult<bool> {
        if name == self.config.default_vhost {
            return Err(CoreError::precondition(format!("the default vhost '{name}' cannot be deleted")));
        }
        let Some(vhost) = self.vhosts.write().remove(name) else { return Ok(false) };
        for connection in self.registry.list().iter().filter(|c| *c.info.vhost == *name) {
            connection.request_close(&format!("vhost '{name}' is deleted"));
        }
        vhost.delete_everything();
        let mut ops = vec![Record::VHost { name: name.into() }.delete()];
        for user in self.users.read().keys() {
            ops.extend(self.permission_deletes(user, name));
        }
        self.store.submit(ops);
        Ok(true)
    }

    /// A store from before permissions existed has users but no permission records: every user
    /// could use every vhost then, so each keeps full permissions on each vhost.
    fn grant_permissions_to_users_of_an_older_store(&self) -> CoreResult<()> {
        if self.permissions.records().is_empty() && !self.users.read().is_empty() {
            let users: Vec<String> = self.users.read().keys().cloned().collect();
            for user in users {
                for vhost in self.vhosts.read().keys().cloned().collect::<Vec<_>>() {
                    let all = ".*".to_string();
                    let full = PermissionRecord { user: user.clone(), vhost, configure: all.clone(), write: all.clone(), read: all };
                    self.set_permissions(full)?;
                }
            }
            tracing::info!("store without permissions: existing users keep full access to every vhost");
        }
        Ok(())
    }

    /// Sets (replaces) a user's permissions on a vhost, durably.
    pub fn set_permissions(&self, record: PermissionRecord) -> CoreResult<()> {
        self.permissions.set(record.clone())?;
        self.store.submit(vec![Record::Permission(record).put()]);
        Ok(())
    }

    /// Sets (replaces) a user's topic permissions on one exchange of a vhost, durably.
    pub fn set_topic_permissions(&self, record: TopicPermissionRecord) -> CoreResult<()> {
        self.permissions.set_topic(record.clone())?;
        self.store.submit(vec![Record::TopicPermission(record).put()]);
        Ok(())
    }

    pub fn permissions(&self) -> &PermissionTable {
        &self.permissions
    }

    /// Opens `vhost` for a logged-in user: refused (RabbitMQ's text) without permissions there.
    pub fn access(&self, user: &User, vhost: &str) -> CoreResult<Access> {
        self.permissions.access(&user.name, vhost).ok_or_else(|| {
            CoreError::new(ErrorKind::NotAllowed, format!("access to vhost '{vhost}' refused for user '{}'", user.name))
        })
    }

    /// Admits a connection under the connection limits of the user it is listed under, and
    /// lists it for operators (`traffic` is what its `registry::Counted` stream counts). The
    /// permit uncounts that same listed user.
    pub fn admit_connection(&self, info: ConnectionInfo, transport: &Transport) -> CoreResult<ConnectionPermit> {
        let id = self.next_connection_id();
        let user = info.user.clone();
        self.connections.admit(&user, || self.registry.register(id, info, transport.traffic.clone()))
    }

    /// The open connections, for operators.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn connections(&self) -> &Arc<Connections> {
        &self.connections
    }

    /// Checks a login. The hash is verified on the blocking pool. An address with too many
    /// recent failures is refused without a check.
    pub async fn authenticate(&self, name: &str, password: &str, peer: IpAddr) -> CoreResult<User> {
        if self.connections.login_blocked(peer, name) {
            tracing::warn!(%peer, user = name, "login refused: too many failed logins for this user from this address");
            return Err(CoreError::refused(format!("login refused for user '{name}': too many failed logins")));
        }
        let result = self.check_password(name, password, peer).await;
        if result.is_err() {
            self.connections.login_failed(peer, name);
        }
        result
    }

    async fn check_password(&self, name: &str, password: &str, peer: IpAddr) -> CoreResult<User> {
        let refused = || CoreError::refused(format!("login refused for user '{name}'"));
        let Some(record) = self.users.read().get(name).cloned() else {
            return Err(refused());
        };
        if !auth::peer_allowed(name, peer, &self.config.loopback_users) {
            return Err(CoreError::refused(format!(
                "user '{name}' can only connect via localhost"
            )));
        }
        let (hash, password) = (record.password_hash.clone(), password.to_string());
        let ok = tokio::task::spawn_blocking(move || auth::verify_password(&hash, &password))
            .await
            .unwrap_or(false);
        if ok {
            Ok(User::from(&record))
        } else {
            Err(refused())
        }
    }

    /// Stores a protocol session record (durable when the receipt resolves).
    pub fn put_session(&self, vhost: &str, protocol: &str, id: &str, data: Vec<u8>) -> junction_storage::DurableReceipt {
        let record = Record::Session { vhost: vhost.into(), protocol: protocol.into(), id: id.into(), data };
        let receipt = self.store.submit_durable(vec![record.put()]);
        if let Record::Session { vhost, protocol, id, data } = record {
            self.sessions.write().insert((vhost, protocol, id), data);
        }
        receipt
    }

    pub fn delete_session(&self, vhost: &str, protocol: &str, id: &str) {
        let key = (vhost.to_string(), protocol.to_string(), id.to_string());
        if self.sessions.write().remove(&key).is_some() {
            let record = Record::Session { vhost: key.0, protocol: key.1, id: key.2, data: Vec::new() };
            self.store.submit(vec![record.delete()]);
        }
    }

    pub fn session(&self, vhost: &str, protocol: &str, id: &str) -> Option<Vec<u8>> {
        self.sessions.read().get(&(vhost.to_string(), protocol.to_string(), id.to_string())).cloned()
    }

    /// Every stored session of one protocol: (vhost, id, data).
    pub fn sessions(&self, protocol: &str) -> Vec<(String, String, Vec<u8>)> {
        self.sessions
            .read()
            .iter()
            .filter(|((_, p, _), _)| p == protocol)
            .map(|((v, _, id), data)| (v.clone(), id.clone(), data.clone()))
            .collect()
    }

    /// Logs in as `name` without a password: the MQTT anonymous user, the STOMP default user, or
    /// the user a verified client certificate names. The user must exist, and the same loopback
    /// rule as for a password login applies.
    pub fn authenticate_trusted(&self, name: &str, peer: IpAddr) -> CoreResult<User> {
        let record = self.users.read().get(name).cloned();
        match record {
            Some(r) if auth::peer_allowed(name, peer, &self.config.loopback_users) => Ok(User::from(&r)),
            Some(_) => Err(CoreError::refused(format!("user '{name}' can only connect via localhost"))),
            None => Err(CoreError::refused(format!("login without a password as '{name}' refused: no such user"))),
        }
    }

    /// Samples free disk space for the disk alarm; call periodically.
    pub fn check_disk(&self) {
        if self.resources.disk_free_limit() == 0 {
            return;
        }
        if let Some(free) = crate::resources::disk_free(&self.config.data_dir) {
            self.resources.set_disk_free(free);
        }
    }

    /// Syncs everything written and closes the store.
    pub async fn shutdown(&self) {
        let _ = self.store.barrier().await;
        self.store.close();
    }

    fn recover(&mut self) -> CoreResult<RecoveryReport> {
        let started = Instant::now();
        let internal = |e: junction_storage::StoreError| CoreError::internal(e.to_string());
        let mut report = RecoveryReport::default();
        let mut records: Vec<Record> = Vec::new();
        for (_, value) in self.store.load_meta().map_err(internal)? {
            match Record::decode(&value) {
                Some(r) => records.push(r),
                None => tracing::warn!("skipping unreadable definition record"),
            }
        }
        // Keys sort by kind: vhosts, exchanges, queues, bindings, users. Restore in that order.
        let mut queues_by_id: HashMap<u64, Arc<Queue>> = HashMap::new();
        for record in records {
            match record {
                Record::VHost { name } => {
                    let vhost = VHost::new(&name, self.store.clone(), self.resources.clone(), self.queue_ids.clone());
                    self.vhosts.write().insert(name, vhost);
                    report.vhosts += 1;
                }
                Record::Exchange { vhost, spec } => {
                    if let Some(v) = self.restored_vhost(&vhost) {
                        v.restore_exchange(spec);
                        report.exchanges += 1;
                    }
                }
                Record::Queue { vhost, spec } => {
                    self.queue_ids.fetch_max(spec.id + 1, Ordering::Relaxed);
                    let id = spec.id;
                    if let Some(v) = self.restored_vhost(&vhost) {
                        queues_by_id.insert(id, v.restore_queue(spec)?);
                        report.queues += 1;
                    }
                }
                Record::Binding(b) => {
                    if let Some(v) = self.restored_vhost(&b.vhost) {
                        v.restore_binding(&b);
                        report.bindings += 1;
                    }
                }
                Record::User(u) => {
                    self.users.write().insert(u.name.clone(), u);
                }
                Record::Retained { vhost, topic, message, stored_at_ms } => {
                    if let Some(v) = self.restored_vhost(&vhost) {
                        v.retained().restore(topic, message, stored_at_ms);
                    }
                }
                Record::Session { vhost, protocol, id, data } => {
                    self.sessions.write().insert((vhost, protocol, id), data);
                }
                Record::Permission(p) => self.permissions.set(p)?,
                Record::TopicPermission(t) => self.permissions.set_topic(t)?,
                Record::Delayed { vhost, due_ms, tie, exchange, message } => {
                    if let Some(v) = self.restored_vhost(&vhost) {
                        v.restore_held(due_ms, tie, exchange, message);
                    }
                }
                Record::StreamOffset { vhost, queue, consumer, offset } => {
                    if let Some(q) = self.restored_vhost(&vhost).and_then(|v| v.queue(&queue)) {
                        q.restore_stream_position(consumer, offset);
                    }
                }
            }
        }
        report.messages = self.recover_messages(&queues_by_id)?;
        for vhost in self.vhosts.read().values() {
            if vhost.delayed_count() > 0 {
                vhost.start_delay_timer();
            }
        }
        report.millis = started.elapsed().as_millis();
        Ok(report)
    }

    /// The vhost a stored record belongs to. A record can outlive its vhost (written by a
    /// connection that was still open while the vhost was deleted): it is skipped, not fatal.
    fn restored_vhost(&self, name: &str) -> Option<Arc<VHost>> {
        let vhost = self.vhost(name);
        if vhost.is_none() {
            tracing::warn!(vhost = name, "skipping a stored record of a deleted vhost");
        }
        vhost
    }

    /// Reloads every logged message into its queue; bodies are decoded once and shared. A
    /// queue that pages takes its head window into memory and only counts the rest, whose
    /// bodies stay unread until consumers get near them.
    fn recover_messages(&self, queues: &HashMap<u64, Arc<Queue>>) -> CoreResult<usize> {
        let internal = |e: junction_storage::StoreError| CoreError::internal(e.to_string());
        let windows: HashMap<u64, Window> =
            queues.iter().filter_map(|(id, q)| q.paging_window().map(|w| (*id, w))).collect();
        let mut in_memory: HashMap<u64, (usize, usize)> = HashMap::new();
        let mut entries = Vec::new();
        let mut refs: HashMap<u64, u32> = HashMap::new();
        let mut paged = 0;
        let mut garbage: Vec<Op> = Vec::new();
        self.store
            .scan_queue_logs(|e| {
                let Some(queue) = queues.get(&e.queue_id) else {
                    // The log of a queue whose definition is gone: a later queue could get its id.
                    garbage.push(Op::Dequeue { queue_id: e.queue_id, seq: e.seq });
                    if e.size_and_holders.is_some_and(|(_, holders)| holders == 1) {
                        garbage.push(Op::DeleteBody { id: e.body_id });
                    }
                    return;
                };
                let (count, bytes) = in_memory.entry(e.queue_id).or_default();
                let window = windows.get(&e.queue_id);
                match (window, e.size_and_holders) {
                    (Some(w), Some((size, 1))) if *count >= w.messages || *bytes >= w.bytes => {
                        queue.recover_paged(e.seq, size as usize);
                        paged += 1;
                    }
                    _ => {
                        *count += 1;
                        *bytes += e.size_and_holders.map_or(0, |(size, _)| size as usize);
                        *refs.entry(e.body_id).or_default() += 1;
                        entries.push(e);
                    }
                }
            })
            .map_err(internal)?;
        let bodies = self.read_recovered_bodies(&refs)?;
        let mut orphans = garbage;
        let mut recovered = 0;
        for e in entries {
            match bodies.get(&e.body_id) {
                Some((msg, stored)) => {
                    queues[&e.queue_id].recover(e.seq, msg.clone(), stored.clone());
                    recovered += 1;
                }
                None => orphans.push(Op::Dequeue { queue_id: e.queue_id, seq: e.seq }),
            }
        }
        if !orphans.is_empty() {
            tracing::info!(count = orphans.len(), "removing queue log entries whose bodies are gone");
            self.store.submit(orphans);
        }
        Ok(recovered + paged)
    }

    /// Reads and decodes the bodies recovery keeps in memory, each once however many queues
    /// hold it (`refs`).
    fn read_recovered_bodies(&self, refs: &HashMap<u64, u32>) -> CoreResult<HashMap<u64, (Arc<Message>, Arc<StoredBody>)>> {
        let internal = |e: junction_storage::StoreError| CoreError::internal(e.to_string());
        let mut ids: Vec<u64> = refs.keys().copied().collect();
        ids.sort_unstable();
        let mut bodies = HashMap::with_capacity(ids.len());
        let mut undecodable = 0usize;
        for chunk in ids.chunks(4096) {
            for (id, bytes) in chunk.iter().zip(self.store.read_bodies(chunk).map_err(internal)?) {
                let Some(bytes) = bytes else { continue };
                match Message::decode(&bytes) {
                    Some(msg) => {
                        let stored = Arc::new(StoredBody { id: *id, refs: AtomicU32::new(refs[id]) });
                        bodies.insert(*id, (Arc::new(msg), stored));
                    }
                    None => undecodable += 1,
                }
            }
        }
        if undecodable > 0 {
            // Never delete what we cannot read: it may be a newer or older format.
            return Err(CoreError::internal(format!(
                "{undecodable} stored messages cannot be decoded (a store written by another version?); \
                 refusing to start rather than lose them"
            )));
        }
        Ok(bodies)
    }
}

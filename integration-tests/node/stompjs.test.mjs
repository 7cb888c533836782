// @stomp/stompjs (with the ws package) against Junction's STOMP over WebSocket at /ws.
// Run by integration-tests/python/test_node_clients.py, which starts the broker and sets
// JUNCTION_STOMP_WS_URL and JUNCTION_MQTT_URL.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client, Versions } from '@stomp/stompjs';
import WebSocket from 'ws';
import mqtt from 'mqtt';

const WS_URL = process.env.JUNCTION_STOMP_WS_URL;
const MQTT_URL = process.env.JUNCTION_MQTT_URL;
const WAIT_MS = 10000;
const opened = [];
after(() => opened.forEach((c) => c.deactivate()));

/** Connects offering the given STOMP versions (as accept-version and as WebSocket subprotocols). */
function connect(versions = ['1.2', '1.1', '1.0']) {
  const protocols = versions.map((v) => `v${v.replace('.', '')}.stomp`);
  const client = new Client({
    stompVersions: new Versions(versions),
    webSocketFactory: () => new WebSocket(WS_URL, protocols),
    connectHeaders: { login: 'guest', passcode: 'guest', host: 'localhost' },
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
  });
  opened.push(client);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no CONNECTED')), WAIT_MS);
    client.onConnect = (frame) => { clearTimeout(timer); resolve({ client, frame }); };
    client.onStompError = (frame) => { clearTimeout(timer); reject(new Error(frame.headers.message)); };
    client.activate();
  });
}

function collect(client, destination, n, headers = {}) {
  const got = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`expected ${n} messages on ${destination}, got ${got.length}`)), WAIT_MS);
    client.subscribe(destination, (message) => {
      got.push(message);
      if (got.length === n) { clearTimeout(timer); resolve(got); }
    }, headers);
  });
}

function receipt(client, id) {
  return new Promise((resolve) => client.watchForReceipt(id, resolve));
}

const unique = (prefix) => `${prefix}-${Math.random().toString(16).slice(2, 10)}`;

for (const version of ['1.2', '1.1', '1.0']) {
  test(`publish and subscribe over /ws with STOMP ${version}`, async () => {
    const { client, frame } = await connect([version]);
    assert.equal(frame.headers.version, version === '1.0' ? undefined : version, 'CONNECTED of 1.0 has no version');
    const topic = `/topic/${unique('board')}`;
    const subscribed = unique('sub');
    const arrived = collect(client, topic, 2, { receipt: subscribed });
    await receipt(client, subscribed);
    client.publish({ destination: topic, body: 'line 1' });
    client.publish({ destination: topic, body: 'line:2\nwith newline', headers: { 'x-key': 'a:b' } });
    const got = await arrived;
    assert.deepEqual(got.map((m) => m.body), ['line 1', 'line:2\nwith newline']);
    // stompjs resolves header escapes only for 1.2 (STOMP 1.1 defines them too; stomp.py
    // resolves them, see test_stomp.py), so the raw value is checked for 1.1.
    assert.equal(got[1].headers['x-key'], version === '1.1' ? 'a\\cb' : 'a:b');
    await client.deactivate();
  });
}

test('an MQTT publish reaches a browser-style STOMP subscriber', async () => {
  const { client } = await connect();
  const level = unique('sensor');
  const subscribed = unique('sub');
  const arrived = collect(client, `/topic/plant.${level}`, 1, { receipt: subscribed });
  await receipt(client, subscribed);
  const m = mqtt.connect(MQTT_URL, { reconnectPeriod: 0 });
  opened.push({ deactivate: () => m.end(true) });
  await new Promise((resolve) => m.once('connect', resolve));
  await m.publishAsync(`plant/${level}`, '21.5', { qos: 1 });
  const [msg] = await arrived;
  assert.equal(msg.body, '21.5');
  assert.equal(msg.headers.destination, `/topic/plant.${level}`);
  await m.endAsync();
  await client.deactivate();
});

test('client-individual acks and a persistent send with a receipt over /ws', async () => {
  const { client } = await connect();
  const queue = `/queue/${unique('work')}`;
  const sent = unique('receipt');
  const stored = receipt(client, sent);
  client.publish({ destination: queue, body: 'job', headers: { persistent: 'true', receipt: sent } });
  await stored;
  const [msg] = await collect(client, queue, 1, { ack: 'client-individual' });
  assert.equal(msg.body, 'job');
  assert.equal(msg.headers.persistent, 'true');
  msg.ack();
  await client.deactivate();
});

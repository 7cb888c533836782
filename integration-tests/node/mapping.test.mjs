// The cross-protocol mapping (docs/mapping.md) with one Node client per protocol: amqplib
// (AMQP 0-9-1), MQTT.js 5 over TCP and @stomp/stompjs over WebSocket.
// Run by integration-tests/python/test_node_clients.py, which starts the broker and sets
// JUNCTION_AMQP_URL, JUNCTION_MQTT_URL and JUNCTION_STOMP_WS_URL.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import amqp from 'amqplib';
import mqtt from 'mqtt';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';

const AMQP_URL = process.env.JUNCTION_AMQP_URL;
const MQTT_URL = process.env.JUNCTION_MQTT_URL;
const STOMP_URL = process.env.JUNCTION_STOMP_WS_URL;
const WAIT_MS = 10000;

// Everything opened, closed at the end so that a failed test cannot keep the process alive.
const closers = [];
after(async () => {
  for (const close of closers.reverse()) {
    try { await close(); } catch { /* already closed */ }
  }
});

const unique = (prefix) => `${prefix}-${Math.random().toString(16).slice(2, 10)}`;

function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`)), WAIT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function amqpChannel() {
  const conn = await within(amqp.connect(AMQP_URL), 'the AMQP connection');
  closers.push(() => conn.close());
  return conn.createChannel();
}

/** Consumes an exclusive queue bound to amq.topic with `key`; resolves (once the consumer is
 * set up) with `{ next }`, a promise of its first message. */
async function amqpNext(ch, key) {
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, 'amq.topic', key);
  let resolve;
  const arrived = new Promise((r) => { resolve = r; });
  await ch.consume(queue, (msg) => resolve(msg), { noAck: true });
  return { next: within(arrived, `an AMQP message on ${key}`) };
}

async function mqttClient() {
  const client = mqtt.connect(MQTT_URL, {
    protocolVersion: 5, clientId: unique('node-map'), reconnectPeriod: 0, connectTimeout: WAIT_MS,
  });
  closers.push(() => client.end(true));
  await within(new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  }), 'the CONNACK');
  return client;
}

/** Subscribes `client` to `topic`; resolves (after the SUBACK) with `{ next }`, a promise of its
 * first message. */
async function mqttNext(client, topic) {
  let resolve;
  const arrived = new Promise((r) => { resolve = r; });
  client.on('message', (t, payload, packet) => { if (t === topic) resolve({ payload, packet }); });
  await client.subscribeAsync(topic, { qos: 1 });
  return { next: within(arrived, `an MQTT message on ${topic}`) };
}

async function stompClient() {
  const client = new Client({
    webSocketFactory: () => new WebSocket(STOMP_URL, ['v12.stomp']),
    connectHeaders: { login: 'guest', passcode: 'guest', host: 'localhost' },
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
  });
  closers.push(() => client.deactivate());
  await within(new Promise((resolve, reject) => {
    client.onConnect = resolve;
    client.onStompError = (frame) => reject(new Error(frame.headers.message));
    client.activate();
  }), 'STOMP CONNECTED');
  return client;
}

/** Subscribes to `destination`; resolves (after the RECEIPT) with `{ next }`, a promise of its
 * first message. */
async function stompNext(client, destination) {
  let resolve;
  const arrived = new Promise((r) => { resolve = r; });
  const receipt = unique('sub');
  const subscribed = new Promise((r) => client.watchForReceipt(receipt, r));
  client.subscribe(destination, (message) => resolve(message), { receipt });
  await within(subscribed, `the RECEIPT for ${destination}`);
  return { next: within(arrived, `a STOMP message on ${destination}`) };
}

const BODY = Buffer.from([0, 1, 2, 0xfe, 0xff, 0]);
const TYPED = { color: 'blue', count: 42, big: 2 ** 40, flag: true, ratio: 2.5, blob: Buffer.from([0, 0xff]) };
const TYPED_TEXT = { color: 'blue', count: '42', big: String(2 ** 40), flag: 'true', ratio: '2.5', blob: 'AP8=' };
const AMQP_PROPERTIES = {
  contentType: 'application/octet-stream', contentEncoding: 'identity', correlationId: 'corr-node',
  replyTo: 'replies', messageId: 'm-node-1', timestamp: 1700000000, priority: 5, type: 'reading',
  userId: 'guest', appId: 'node-app', persistent: true, expiration: '60000', headers: TYPED,
};

test('an amqplib message with properties and typed headers reaches MQTT.js 5 and stompjs', async () => {
  const id = unique('n');
  const key = `node.${id}.down`;
  const m = await mqttClient();
  const toMqtt = (await mqttNext(m, `node/${id}/down`)).next;
  const s = await stompClient();
  const toStomp = (await stompNext(s, `/topic/${key}`)).next;
  const ch = await amqpChannel();
  ch.publish('amq.topic', key, BODY, AMQP_PROPERTIES);

  const { payload, packet } = await toMqtt;
  assert.deepEqual(payload, BODY);
  assert.equal(packet.qos, 1, 'persistent: QoS 1');
  const p = packet.properties;
  assert.equal(p.contentType, 'application/octet-stream');
  assert.deepEqual(p.correlationData, Buffer.from('corr-node'));
  assert.equal(p.responseTopic, 'replies');
  assert.ok(p.messageExpiryInterval >= 50 && p.messageExpiryInterval <= 60, `expiry ${p.messageExpiryInterval}`);
  const user = p.userProperties;
  for (const [name, text] of Object.entries(TYPED_TEXT)) assert.equal(user[name], text, name);
  assert.deepEqual(
    [user['x-amqp-content-encoding'], user['x-amqp-message-id'], user['x-amqp-timestamp'], user['x-amqp-priority'],
      user['x-amqp-type'], user['x-amqp-user-id'], user['x-amqp-app-id']],
    ['identity', 'm-node-1', '1700000000', '5', 'reading', 'guest', 'node-app'],
  );
  assert.ok(user['x-junction-typed-headers'], 'typed values are listed for the way back');

  const frame = await toStomp;
  assert.deepEqual(Buffer.from(frame.binaryBody), BODY);
  const h = frame.headers;
  for (const [name, text] of Object.entries(TYPED_TEXT)) assert.equal(h[name], text, name);
  assert.deepEqual(
    [h['content-type'], h['content-encoding'], h['correlation-id'], h['reply-to'], h['amqp-message-id'], h.timestamp,
      h.priority, h.type, h['user-id'], h['app-id'], h.persistent, h.expiration],
    ['application/octet-stream', 'identity', 'corr-node', 'replies', 'm-node-1', '1700000000', '5', 'reading', 'guest',
      'node-app', 'true', '60000'],
  );
  assert.ok(h['x-junction-typed-headers']);
});

test('an MQTT.js 5 publish reaches amqplib with its properties', async () => {
  const id = unique('n');
  const ch = await amqpChannel();
  const toAmqp = (await amqpNext(ch, `node.${id}.up`)).next;
  const m = await mqttClient();
  await m.publishAsync(`node/${id}/up`, 'héllo', {
    qos: 1,
    properties: {
      contentType: 'text/plain', correlationData: Buffer.from([0, 0xff, 1]), responseTopic: 'resp/node',
      payloadFormatIndicator: true, messageExpiryInterval: 120,
      userProperties: { color: 'blue', 'x-amqp-message-id': 'm-2', 'x-amqp-type': 'evt', 'x-amqp-priority': '3' },
    },
  });
  const msg = await toAmqp;
  assert.equal(msg.content.toString(), 'héllo');
  assert.equal(msg.fields.routingKey, `node.${id}.up`);
  const p = msg.properties;
  assert.deepEqual(
    [p.contentType, p.replyTo, p.messageId, p.type, p.priority, p.deliveryMode, p.expiration, p.correlationId],
    ['text/plain', 'resp/node', 'm-2', 'evt', 3, 2, '120000', undefined],
  );
  assert.deepEqual(p.headers['x-correlation-data'], Buffer.from([0, 0xff, 1]), 'binary correlation data');
  assert.equal(p.headers.color, 'blue');
  assert.equal(p.headers['x-mqtt-publish-qos'], 1);
  assert.equal(p.headers['x-mqtt-payload-format'], 1);
  for (const name of ['x-amqp-message-id', 'x-amqp-type', 'x-amqp-priority']) {
    assert.equal(p.headers[name], undefined, `${name} is the property, not a header`);
  }
});

test('typed amqplib headers come back typed after an MQTT.js client republishes everything it got', async () => {
  const id = unique('n');
  const ch = await amqpChannel();
  const back = (await amqpNext(ch, `node.${id}.back`)).next;
  const m = await mqttClient();
  const toMqtt = (await mqttNext(m, `node/${id}/out`)).next;
  ch.publish('amq.topic', `node.${id}.out`, BODY, AMQP_PROPERTIES);
  const { payload, packet } = await toMqtt;
  const p = packet.properties;
  await m.publishAsync(`node/${id}/back`, payload, {
    qos: packet.qos,
    properties: {
      contentType: p.contentType, correlationData: p.correlationData, responseTopic: p.responseTopic,
      messageExpiryInterval: p.messageExpiryInterval, userProperties: p.userProperties,
    },
  });
  const msg = await back;
  assert.deepEqual(msg.content, BODY);
  const q = msg.properties;
  assert.deepEqual(
    [q.contentType, q.contentEncoding, q.correlationId, q.replyTo, q.messageId, q.timestamp, q.priority, q.type,
      q.userId, q.appId, q.deliveryMode],
    ['application/octet-stream', 'identity', 'corr-node', 'replies', 'm-node-1', 1700000000, 5, 'reading', 'guest',
      'node-app', 2],
  );
  const headers = Object.fromEntries(Object.entries(q.headers).filter(([k]) => !k.startsWith('x-mqtt-')));
  assert.deepEqual(headers, TYPED, 'the same headers with the same types');
});

// MQTT.js against Junction over WebSocket (ws://.../mqtt) with protocol versions 3, 4 and 5.
// Run by integration-tests/python/test_node_clients.py, which starts the broker and sets
// JUNCTION_MQTT_WS_URL and JUNCTION_MQTT_URL; by hand: `node --test mqttjs.test.mjs`.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';

const WS_URL = process.env.JUNCTION_MQTT_WS_URL;
const TCP_URL = process.env.JUNCTION_MQTT_URL;
const WAIT_MS = 10000;

// Every client, so that a failed test cannot keep the process alive.
const opened = [];
after(() => opened.forEach((c) => c.end(true)));

function open(url, options) {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: WAIT_MS, ...options });
  opened.push(client);
  return client;
}

function connect(url, options) {
  const client = open(url, options);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no CONNACK from ' + url)), WAIT_MS);
    client.once('connect', (connack) => { clearTimeout(timer); resolve({ client, connack }); });
    client.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

/** Resolves with the first `n` messages `client` receives. */
function collect(client, n) {
  const got = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`expected ${n} messages, got ${got.length}`)), WAIT_MS);
    client.on('message', (topic, payload, packet) => {
      got.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain, properties: packet.properties });
      if (got.length === n) { clearTimeout(timer); resolve(got); }
    });
  });
}

const unique = (prefix) => `${prefix}-${Math.random().toString(16).slice(2, 10)}`;

for (const protocolVersion of [3, 4, 5]) {
  test(`publish and subscribe at QoS 0, 1 and 2 over WebSocket, protocol ${protocolVersion}`, async () => {
    const root = unique('js');
    const { client: sub } = await connect(WS_URL, { protocolVersion, clientId: unique('sub') });
    await sub.subscribeAsync(`${root}/+/temp`, { qos: 2 });
    const arrived = collect(sub, 3);
    const { client: pub } = await connect(WS_URL, { protocolVersion, clientId: unique('pub') });
    for (const qos of [0, 1, 2]) {
      await pub.publishAsync(`${root}/room${qos}/temp`, `t${qos}`, { qos });
    }
    await pub.publishAsync(`${root}/room/humidity`, 'not matched', { qos: 1 });
    const got = await arrived;
    assert.deepEqual(got.map((m) => [m.topic, m.payload, m.qos]).sort(), [
      [`${root}/room0/temp`, 't0', 0], [`${root}/room1/temp`, 't1', 1], [`${root}/room2/temp`, 't2', 2]]);
    await pub.endAsync();
    await sub.endAsync();
  });

  test(`retained messages reach a later wildcard subscriber, protocol ${protocolVersion}`, async () => {
    const root = unique('retained');
    const { client: pub } = await connect(WS_URL, { protocolVersion, clientId: unique('pub') });
    await pub.publishAsync(`${root}/a`, 'A', { qos: 1, retain: true });
    await pub.publishAsync(`${root}/b/c`, 'BC', { qos: 1, retain: true });
    const { client: sub } = await connect(WS_URL, { protocolVersion, clientId: unique('sub') });
    const arrived = collect(sub, 2);
    await sub.subscribeAsync(`${root}/#`, { qos: 1 });
    const got = await arrived;
    assert.deepEqual(got.map((m) => [m.topic, m.payload, m.retain]).sort(), [[`${root}/a`, 'A', true], [`${root}/b/c`, 'BC', true]]);
    await pub.publishAsync(`${root}/a`, '', { qos: 1, retain: true }); // clears it
    await pub.publishAsync(`${root}/b/c`, '', { qos: 1, retain: true });
    await pub.endAsync();
    await sub.endAsync();
  });

  test(`a persistent session gets what was published while it was away, protocol ${protocolVersion}`, async () => {
    const clientId = unique('persist');
    const topic = `${clientId}/inbox`;
    const v5 = protocolVersion === 5;
    const sessionOptions = { protocolVersion, clientId, clean: false, ...(v5 ? { properties: { sessionExpiryInterval: 300 } } : {}) };
    // A fresh id starts a fresh session; MQTT 5 needs Clean Start 0 only to resume.
    const { client: first } = await connect(WS_URL, { ...sessionOptions, clean: v5 });
    await first.subscribeAsync(topic, { qos: 1 });
    await first.endAsync();
    const { client: pub } = await connect(TCP_URL, { protocolVersion, clientId: unique('pub') });
    await pub.publishAsync(topic, 'while away', { qos: 1 });
    await pub.endAsync();
    const back = open(WS_URL, sessionOptions);
    const arrived = collect(back, 1);
    const connack = await new Promise((resolve) => back.once('connect', resolve));
    assert.equal(connack.sessionPresent, true);
    const [msg] = await arrived;
    assert.deepEqual([msg.topic, msg.payload, msg.qos], [topic, 'while away', 1]);
    await back.endAsync();
  });
}

test('MQTT 5 properties travel intact: user properties, content type, response topic, correlation data, expiry', async () => {
  const topic = unique('props') + '/req';
  const { client: sub } = await connect(WS_URL, { protocolVersion: 5, clientId: unique('sub') });
  await sub.subscribeAsync(topic, { qos: 1 });
  const arrived = collect(sub, 1);
  const { client: pub } = await connect(WS_URL, { protocolVersion: 5, clientId: unique('pub') });
  await pub.publishAsync(topic, '{"on":true}', {
    qos: 1,
    properties: {
      payloadFormatIndicator: true,
      contentType: 'application/json',
      responseTopic: 'replies/here',
      correlationData: Buffer.from([0, 1, 2, 255]),
      messageExpiryInterval: 60,
      userProperties: { site: 'plant-7', line: '3' },
    },
  });
  const [msg] = await arrived;
  const p = msg.properties;
  assert.equal(p.payloadFormatIndicator, true);
  assert.equal(p.contentType, 'application/json');
  assert.equal(p.responseTopic, 'replies/here');
  assert.deepEqual([...p.correlationData], [0, 1, 2, 255]);
  assert.ok(p.messageExpiryInterval > 0 && p.messageExpiryInterval <= 60, `expiry ${p.messageExpiryInterval}`);
  assert.deepEqual({ ...p.userProperties }, { site: 'plant-7', line: '3' });
  await pub.endAsync();
  await sub.endAsync();
});

test('MQTT 5 shared subscription over WebSocket balances between members', async () => {
  const topic = unique('work') + '/jobs';
  const members = [];
  for (let i = 0; i < 2; i++) {
    const { client } = await connect(WS_URL, { protocolVersion: 5, clientId: unique('member') });
    await client.subscribeAsync(`$share/workers/${topic}`, { qos: 1 });
    const got = [];
    client.on('message', (_t, payload) => got.push(payload.toString()));
    members.push({ client, got });
  }
  const { client: pub } = await connect(TCP_URL, { protocolVersion: 5, clientId: unique('pub') });
  for (let i = 0; i < 20; i++) await pub.publishAsync(topic, `job${i}`, { qos: 1 });
  const deadline = Date.now() + WAIT_MS;
  while (members[0].got.length + members[1].got.length < 20 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const all = [...members[0].got, ...members[1].got].sort();
  assert.equal(all.length, 20, 'each job delivered exactly once');
  assert.deepEqual(new Set(all).size, 20);
  assert.ok(members[0].got.length > 0 && members[1].got.length > 0, `both members got work: ${members[0].got.length}/${members[1].got.length}`);
  await pub.endAsync();
  for (const m of members) await m.client.endAsync();
});

test('the server assigns topic aliases when the client allows them', async () => {
  const topic = unique('alias') + '/long/topic/name';
  const { client: sub } = await connect(WS_URL, { protocolVersion: 5, clientId: unique('sub'), properties: { topicAliasMaximum: 4 } });
  const raw = [];
  sub.on('packetreceive', (packet) => { if (packet.cmd === 'publish') raw.push(packet); });
  await sub.subscribeAsync(topic, { qos: 1 });
  const arrived = collect(sub, 3);
  const { client: pub } = await connect(WS_URL, { protocolVersion: 5, clientId: unique('pub') });
  for (const n of [1, 2, 3]) await pub.publishAsync(topic, `m${n}`, { qos: 1 });
  const got = await arrived;
  assert.deepEqual(got.map((m) => [m.topic, m.payload]), [[topic, 'm1'], [topic, 'm2'], [topic, 'm3']], 'MQTT.js resolves the aliases');
  const alias = raw[0].properties.topicAlias;
  assert.ok(alias >= 1 && alias <= 4);
  assert.equal(raw[0].topic, topic, 'the first publish carries the topic');
  assert.ok(raw.slice(1).every((p) => p.topic === '' && p.properties.topicAlias === alias), 'later ones only the alias');
  await pub.endAsync();
  await sub.endAsync();
});

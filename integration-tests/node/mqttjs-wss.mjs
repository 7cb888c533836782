// MQTT.js (protocol version 5) over wss:// against Junction's HTTPS listener, verifying the
// server certificate against the test CA: subscribe, publish QoS 1, receive it back.
// Usage: JUNCTION_MQTT_WSS_URL=wss://localhost:PORT/mqtt JUNCTION_CA=/path/ca.pem node mqttjs-wss.mjs
import fs from 'node:fs';
import mqtt from 'mqtt';

const url = process.env.JUNCTION_MQTT_WSS_URL;
const ca = fs.readFileSync(process.env.JUNCTION_CA);
const client = mqtt.connect(url, { protocolVersion: 5, ca, rejectUnauthorized: true, clientId: 'mqttjs-wss', reconnectPeriod: 0 });
const timer = setTimeout(() => { console.error('timed out'); process.exit(1); }, 20000);
let received = false;
// After the message arrived, errors of the closing socket do not matter.
client.on('error', (e) => { console.error('error', e.message); process.exit(received ? 0 : 1); });
client.on('connect', async () => {
  await client.subscribeAsync('wss/js', { qos: 1 });
  await client.publishAsync('wss/js', 'over wss from MQTT.js', { qos: 1 });
});
client.on('message', (topic, payload) => {
  clearTimeout(timer);
  received = true;
  console.log(JSON.stringify({ topic, payload: payload.toString() }));
  client.end(false, () => process.exit(0));
});

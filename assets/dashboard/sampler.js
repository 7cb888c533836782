// Polls GET /api/overview every 2 s while logged in and keeps the last 5 minutes of samples,
// so the Overview charts have history even after visiting other pages.
import { get } from './api.js';
import { rateOf } from './dom.js';

export const PERIOD_MS = 2000;
const KEEP_MS = 5 * 60 * 1000;
const PROTOCOLS = ['amqp', 'mqtt', 'stomp'];

export const samples = []; // { t, v: { publish, deliver, amqp, mqtt, stomp } }
export let latest = null; // the last /api/overview document
export let lastError = null;
const listeners = new Set();
let timer = null;
let busy = false;

function sampleOf(o) {
  const stats = o.message_stats || {};
  const byProto = o.connections_by_protocol || {};
  const v = { publish: rateOf(stats.publish_details), deliver: rateOf(stats.deliver_get_details) };
  for (const p of PROTOCOLS) v[p] = Number(byProto[p]) || 0;
  return v;
}

async function tick() {
  if (busy) return;
  busy = true;
  try {
    latest = await get('overview');
    lastError = null;
    const t = Date.now();
    samples.push({ t, v: sampleOf(latest) });
    while (samples.length && samples[0].t < t - KEEP_MS) samples.shift();
  } catch (e) {
    lastError = e;
  } finally {
    busy = false;
  }
  if (timer) for (const fn of listeners) fn();
}

export function start() {
  if (timer) return;
  timer = setInterval(tick, PERIOD_MS);
  tick();
}

export function stop() {
  clearInterval(timer);
  timer = null;
  samples.length = 0;
  latest = null;
}

// subscribe(fn) -> unsubscribe; fn runs after every poll (success or failure).
export function subscribe(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

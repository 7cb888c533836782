// Overview: totals, alarms, listeners and live charts, all from GET /api/overview (see sampler.js).
import { h, clear, num } from '../dom.js';
import { lineChart } from '../charts.js';
import * as sampler from '../sampler.js';

const TOTALS = [
  ['connections', 'Connections', (o) => o.object_totals?.connections],
  ['channels', 'Channels', (o) => o.object_totals?.channels],
  ['queues', 'Queues', (o) => o.object_totals?.queues],
  ['exchanges', 'Exchanges', (o) => o.object_totals?.exchanges],
  ['consumers', 'Consumers', (o) => o.object_totals?.consumers],
  ['messages', 'Messages', (o) => o.queue_totals?.messages],
  ['messages-ready', 'Ready', (o) => o.queue_totals?.messages_ready],
  ['messages-unacked', 'Unacked', (o) => o.queue_totals?.messages_unacknowledged],
];

export function mount(root) {
  const about = h('p', { class: 'muted', testid: 'about' }, 'Loading…');
  const values = {};
  const cards = h('div', { class: 'cards' }, TOTALS.map(([key, label]) => h('div', { class: 'card' },
    h('div', { class: 'label' }, label), values[key] = h('div', { class: 'value', testid: `total-${key}` }, '–'))));
  const alarms = h('div', { class: 'cards', testid: 'alarms' });
  const rates = lineChart({ testid: 'chart-rates', title: 'Message rates (msg/s)', unit: '/s', series: [
    { key: 'publish', label: 'Publish', color: '#0969da' },
    { key: 'deliver', label: 'Deliver / get', color: '#1a7f37', dash: '6 3' },
  ] });
  const conns = lineChart({ testid: 'chart-connections', title: 'Connections by protocol', integer: true, series: [
    { key: 'amqp', label: 'AMQP', color: '#8250df' },
    { key: 'mqtt', label: 'MQTT', color: '#bf8700' },
    { key: 'stomp', label: 'STOMP', color: '#cf222e' },
  ] });
  const listeners = h('tbody');
  const status = h('p', { class: 'error', testid: 'overview-error', hidden: true });

  root.append(h('h1', null, 'Overview'), about, status, cards,
    h('h2', null, 'Live'), h('div', { class: 'charts' }, rates.el, conns.el),
    h('h2', null, 'Alarms'), alarms,
    h('h2', null, 'Listeners'),
    h('table', { testid: 'listeners' }, h('thead', null, h('tr', null,
      h('th', null, 'Protocol'), h('th', null, 'Address'), h('th', { class: 'num' }, 'Port'))), listeners));

  function render() {
    status.hidden = !sampler.lastError;
    status.textContent = sampler.lastError ? `Cannot load the overview: ${sampler.lastError.message}` : '';
    rates.update(sampler.samples);
    conns.update(sampler.samples);
    const o = sampler.latest;
    if (!o) return;
    about.textContent = [o.product_name, o.product_version, o.node && `on ${o.node}`].filter(Boolean).join(' ');
    for (const [key, , pick] of TOTALS) values[key].textContent = num(pick(o));
    const a = o.alarms;
    clear(alarms, ['memory', 'disk'].map((kind) => {
      const on = a ? a[kind] === true : null;
      return h('div', { class: 'card' }, h('div', { class: 'label' }, `${kind} alarm`),
        h('div', { class: `value ${on ? 'bad' : on === false ? 'ok' : 'muted'}`, testid: `alarm-${kind}` },
          on ? 'ALARM' : on === false ? 'OK' : 'unknown'));
    }));
    clear(listeners, (o.listeners || []).map((l) => h('tr', { testid: `listener-${l.protocol}-${l.port}` },
      h('td', null, l.protocol), h('td', null, l.ip_address), h('td', { class: 'num' }, String(l.port)))));
  }

  const unsubscribe = sampler.subscribe(render);
  render();
  return { destroy: unsubscribe };
}

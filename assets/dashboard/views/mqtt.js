// MQTT clients: GET /api/mqtt/sessions and GET /api/mqtt/retained (Junction extras).
import { get } from '../api.js';
import { h, clear, num, yesNo } from '../dom.js';
import { dataTable } from '../table.js';

const subs = (s) => (s.subscriptions || []).map((x) => `${x.filter} (QoS ${x.qos})`).join(', ');

export function mount(root) {
  const sessions = dataTable({
    id: 'mqtt',
    rowTestId: (s) => `row-mqtt-${s.client_id}`,
    empty: 'No MQTT sessions.',
    columns: [
      { key: 'client_id', label: 'Client id' },
      { key: 'vhost', label: 'Vhost' },
      { key: 'connected', label: 'Connected', value: (s) => yesNo(s.connected) },
      { key: 'persistent', label: 'Persistent session', value: (s) => yesNo(s.persistent) },
      { key: 'subscriptions', label: 'Subscriptions', value: subs },
      { key: 'queued', label: 'Queued', num: true, search: false, cell: (s) => num(s.queued) },
    ],
  });
  const retained = dataTable({
    id: 'mqtt-retained',
    rowTestId: (r) => `row-retained-${r.topic}`,
    empty: 'No retained messages.',
    columns: [
      { key: 'topic', label: 'Topic' },
      { key: 'vhost', label: 'Vhost' },
      { key: 'qos', label: 'QoS', num: true },
      { key: 'payload_bytes', label: 'Bytes', num: true },
    ],
  });
  const body = h('div', null, h('h2', null, 'Sessions'), sessions.el, h('h2', null, 'Retained messages'), retained.el);
  const missing = h('p', { class: 'muted', testid: 'mqtt-unavailable', hidden: true },
    'This broker does not provide /api/mqtt/sessions.');
  root.append(h('h1', null, 'MQTT clients'), missing, body);

  async function refresh() {
    try {
      sessions.update(await get('mqtt/sessions'));
    } catch (e) {
      if (e.status !== 404) throw e;
      missing.hidden = false;
      clear(body);
      return;
    }
    retained.update(await get('mqtt/retained').catch((e) => { if (e.status === 404) return []; throw e; }));
  }
  return { refresh };
}

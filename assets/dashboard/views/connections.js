// Connections: GET /api/connections, Close = DELETE /api/connections/{name}.
import { get, del, enc } from '../api.js';
import { h, num, bytes, rate, rateOf, time, flash } from '../dom.js';
import { dataTable } from '../table.js';

// AMQP connection_name / MQTT client id / STOMP client (RabbitMQ keeps it in client_properties).
const clientId = (c) => c.client_id ?? c.client_properties?.connection_name ?? c.client_properties?.client_id ?? '';

export function mount(root) {
  let refresh;
  async function close(c) {
    if (!confirm(`Close connection ${c.name}?`)) return;
    try {
      await del(`connections/${enc(c.name)}`);
      flash(`Closed ${c.name}`);
    } catch (e) {
      flash(e, true);
    }
    refresh().catch(() => {}); // the periodic refresh reports errors
  }

  const table = dataTable({
    id: 'connections',
    rowTestId: (c) => `row-connection-${c.name}`,
    empty: 'No connections.',
    columns: [
      { key: 'name', label: 'Name' },
      { key: 'protocol', label: 'Protocol' },
      { key: 'client_id', label: 'Client', value: clientId },
      { key: 'user', label: 'User' },
      { key: 'vhost', label: 'Vhost' },
      { key: 'ssl', label: 'TLS', value: (c) => (c.ssl ? 'yes' : 'no') },
      { key: 'channels', label: 'Channels', num: true, cell: (c) => num(c.channels) },
      { key: 'recv_rate', label: 'From client', num: true, search: false, value: (c) => rateOf(c.recv_oct_details),
        cell: (c) => `${bytes(c.recv_oct)} (${rate(c.recv_oct_details)})` },
      { key: 'send_rate', label: 'To client', num: true, search: false, value: (c) => rateOf(c.send_oct_details),
        cell: (c) => `${bytes(c.send_oct)} (${rate(c.send_oct_details)})` },
      { key: 'connected_at', label: 'Connected at', search: false, cell: (c) => time(c.connected_at) },
      { key: 'actions', label: '', sort: false, search: false, value: () => '',
        cell: (c) => h('button', { type: 'button', class: 'danger', testid: 'close-connection', onclick: () => close(c) }, 'Close') },
    ],
  });
  root.append(h('h1', null, 'Connections'), table.el);
  refresh = async () => table.update(await get('connections'));
  return { refresh };
}

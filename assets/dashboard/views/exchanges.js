// Exchanges: GET /api/exchanges.
import { get } from '../api.js';
import { h, yesNo, json } from '../dom.js';
import { dataTable } from '../table.js';
import { publishForm } from '../forms.js';

const display = (name) => name || '(AMQP default)';

export function mount(root) {
  const table = dataTable({
    id: 'exchanges',
    rowTestId: (x) => `row-exchange-${x.name}`,
    empty: 'No exchanges.',
    columns: [
      { key: 'name', label: 'Name', value: (x) => display(x.name) },
      { key: 'vhost', label: 'Vhost' },
      { key: 'type', label: 'Type' },
      { key: 'durable', label: 'Durable', value: (x) => yesNo(x.durable) },
      { key: 'auto_delete', label: 'Auto-delete', value: (x) => yesNo(x.auto_delete) },
      { key: 'internal', label: 'Internal', value: (x) => yesNo(x.internal) },
      { key: 'arguments', label: 'Arguments', sort: false, value: (x) => (Object.keys(x.arguments || {}).length ? json(x.arguments) : '') },
    ],
  });
  root.append(h('h1', null, 'Exchanges'), table.el,
    h('section', { class: 'panel' }, h('h2', null, 'Publish a test message'), publishForm({})));
  return { refresh: async () => table.update(await get('exchanges')) };
}

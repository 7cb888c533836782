// Queues: GET /api/queues, plus the "create a queue" and "publish a test message" forms.
import { get } from '../api.js';
import { h, num, rate, rateOf, queueHref } from '../dom.js';
import { dataTable } from '../table.js';
import { createQueueForm, publishForm } from '../forms.js';

const stat = (q, key) => q.message_stats?.[`${key}_details`];

export function mount(root) {
  const table = dataTable({
    id: 'queues',
    rowTestId: (q) => `row-queue-${q.name}`,
    empty: 'No queues.',
    columns: [
      { key: 'name', label: 'Name', cell: (q) => h('a', { href: queueHref(q.vhost, q.name), testid: 'queue-link' }, q.name) },
      { key: 'vhost', label: 'Vhost' },
      { key: 'type', label: 'Type', value: (q) => q.type || 'classic' },
      { key: 'state', label: 'State', value: (q) => q.state || '' },
      { key: 'messages_ready', label: 'Ready', num: true, search: false, cell: (q) => num(q.messages_ready) },
      { key: 'messages_unacknowledged', label: 'Unacked', num: true, search: false, cell: (q) => num(q.messages_unacknowledged) },
      { key: 'messages', label: 'Total', num: true, search: false, cell: (q) => num(q.messages) },
      { key: 'consumers', label: 'Consumers', num: true, search: false, cell: (q) => num(q.consumers) },
      { key: 'publish_rate', label: 'Publish', num: true, search: false, value: (q) => rateOf(stat(q, 'publish')),
        cell: (q) => rate(stat(q, 'publish')) },
      { key: 'deliver_rate', label: 'Deliver / get', num: true, search: false, value: (q) => rateOf(stat(q, 'deliver_get')),
        cell: (q) => rate(stat(q, 'deliver_get')) },
      { key: 'ack_rate', label: 'Ack', num: true, search: false, value: (q) => rateOf(stat(q, 'ack')),
        cell: (q) => rate(stat(q, 'ack')) },
    ],
  });
  const refresh = async () => table.update(await get('queues'));
  const soon = () => setTimeout(() => refresh().catch(() => {}), 300);
  root.append(h('h1', null, 'Queues'), table.el,
    h('div', { class: 'panels' },
      h('section', { class: 'panel' }, h('h2', null, 'Create a queue'), createQueueForm(soon)),
      h('section', { class: 'panel' }, h('h2', null, 'Publish a test message'), publishForm({}, soon))));
  return { refresh };
}

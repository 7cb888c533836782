// One queue (#/queues/<vhost>/<name>): GET /api/queues/{vhost}/{name} (counts, rates, consumer_details,
// arguments), GET .../bindings, "Peek" = POST .../get (ack_requeue_true), Purge = DELETE .../contents,
// Delete = DELETE /api/queues/{vhost}/{name}.
import { get, post, del, enc } from '../api.js';
import { h, clear, num, rate, bytes, yesNo, json, flash, kvTable } from '../dom.js';
import { dataTable } from '../table.js';
import { publishForm } from '../forms.js';

function card(label, testid) {
  const value = h('div', { class: 'value', testid }, '–');
  return [h('div', { class: 'card' }, h('div', { class: 'label' }, label), value), value];
}

function message(m, i) {
  const enc64 = m.payload_encoding === 'base64';
  return h('div', { class: 'message', testid: 'peek-message' },
    h('div', { class: 'meta' }, `#${i + 1} · exchange "${m.exchange ?? ''}" · routing key "${m.routing_key ?? ''}" · `
      + `${num(m.payload_bytes)} bytes · redelivered: ${yesNo(m.redelivered)}${enc64 ? ' · base64' : ''}`),
    h('pre', { testid: 'peek-payload' }, m.payload ?? ''),
    Object.keys(m.properties || {}).length ? h('details', null, h('summary', null, 'Properties'), kvTable(m.properties)) : null);
}

export function mount(root, { vhost, name }) {
  const path = `queues/${enc(vhost)}/${enc(name)}`;
  const info = h('p', { class: 'muted', testid: 'queue-info' });
  const counts = {};
  const cards = h('div', { class: 'cards' }, [
    ['Total', 'messages'], ['Ready', 'ready'], ['Unacked', 'unacked'], ['Consumers', 'consumers'], ['Bytes', 'bytes'],
    ['Publish', 'rate-publish'], ['Deliver / get', 'rate-deliver'], ['Ack', 'rate-ack'],
  ].map(([label, key]) => { const [el, value] = card(label, `queue-${key}`); counts[key] = value; return el; }));

  const peekOut = h('div', { class: 'messages', testid: 'peek-result' });
  const buttons = h('div', { class: 'toolbar' },
    h('button', { type: 'button', testid: 'peek-messages', onclick: peek }, 'Peek messages'),
    h('button', { type: 'button', class: 'danger', testid: 'purge-queue', onclick: purge }, 'Purge'),
    h('button', { type: 'button', class: 'danger', testid: 'delete-queue', onclick: remove }, 'Delete'));

  const consumers = dataTable({
    id: 'consumers', searchable: false, rowTestId: (c) => `row-consumer-${c.consumer_tag}`, empty: 'No consumers.',
    columns: [
      { key: 'consumer_tag', label: 'Consumer tag' },
      { key: 'channel', label: 'Channel', value: (c) => c.channel_details?.name ?? '' },
      { key: 'connection', label: 'Connection', value: (c) => c.channel_details?.connection_name ?? '' },
      { key: 'ack_required', label: 'Ack required', value: (c) => yesNo(c.ack_required) },
      { key: 'prefetch_count', label: 'Prefetch', num: true },
    ],
  });
  const bindings = dataTable({
    id: 'bindings', searchable: false, rowTestId: (b) => `row-binding-${b.source}-${b.routing_key}`, empty: 'No bindings.',
    columns: [
      { key: 'source', label: 'From exchange', value: (b) => b.source || '(AMQP default)' },
      { key: 'routing_key', label: 'Routing key' },
      { key: 'arguments', label: 'Arguments', sort: false, value: (b) => (Object.keys(b.arguments || {}).length ? json(b.arguments) : '') },
    ],
  });
  const args = h('div');
  const notFound = h('p', { class: 'error', testid: 'queue-not-found', hidden: true }, 'No such queue.');
  const body = h('div', null, info, cards, buttons, peekOut,
    h('h2', null, 'Consumers'), consumers.el,
    h('h2', null, 'Bindings'), bindings.el,
    h('h2', null, 'Arguments'), args,
    h('section', { class: 'panel' }, h('h2', null, 'Publish to this queue'),
      publishForm({ vhost, exchange: '', routingKey: name }, () => setTimeout(() => refresh().catch(() => {}), 300))));
  root.append(h('p', null, h('a', { href: '#/queues' }, '← Queues')),
    h('h1', { testid: 'queue-name' }, name), notFound, body);

  async function refresh() {
    let q;
    try {
      q = await get(path);
    } catch (e) {
      if (e.status !== 404) throw e;
      notFound.hidden = false;
      body.hidden = true;
      return;
    }
    notFound.hidden = true;
    body.hidden = false;
    info.textContent = [`vhost ${q.vhost}`, `type ${q.type || 'classic'}`, q.durable ? 'durable' : 'transient',
      q.auto_delete && 'auto-delete', q.exclusive && 'exclusive', q.state && `state ${q.state}`].filter(Boolean).join(' · ');
    counts.messages.textContent = num(q.messages);
    counts.ready.textContent = num(q.messages_ready);
    counts.unacked.textContent = num(q.messages_unacknowledged);
    counts.consumers.textContent = num(q.consumers);
    counts.bytes.textContent = bytes(q.message_bytes);
    const st = q.message_stats || {};
    counts['rate-publish'].textContent = rate(st.publish_details);
    counts['rate-deliver'].textContent = rate(st.deliver_get_details);
    counts['rate-ack'].textContent = rate(st.ack_details);
    consumers.update(q.consumer_details || []);
    clear(args, kvTable(q.arguments, 'queue-arguments'));
    bindings.update(await get(`${path}/bindings`));
  }

  async function peek() {
    clear(peekOut, h('p', { class: 'muted' }, 'Fetching…'));
    try {
      const msgs = await post(`${path}/get`, { count: 5, ackmode: 'ack_requeue_true', encoding: 'auto' });
      clear(peekOut, msgs && msgs.length ? msgs.map(message) : h('p', { class: 'muted', testid: 'peek-empty' }, 'The queue is empty.'));
    } catch (e) {
      clear(peekOut, h('p', { class: 'error' }, `Peek failed: ${e.message}`));
    }
    refresh().catch(() => {});
  }

  async function purge() {
    if (!confirm(`Purge all ready messages of queue ${name}?`)) return;
    try {
      await del(`${path}/contents`);
      flash(`Queue ${name} purged`);
      clear(peekOut);
    } catch (e) {
      flash(e, true);
    }
    refresh().catch(() => {});
  }

  async function remove() {
    if (!confirm(`Delete queue ${name} and its messages?`)) return;
    try {
      await del(path);
      flash(`Queue ${name} deleted`);
      location.hash = '#/queues';
    } catch (e) {
      flash(e, true);
    }
  }

  return { refresh };
}

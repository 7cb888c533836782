// The action forms: create a queue (PUT /api/queues/{vhost}/{name}) and publish a test message
// (POST /api/exchanges/{vhost}/{exchange}/publish, the default exchange being "amq.default").
import { get, put, post, enc } from './api.js';
import { h, flash } from './dom.js';

const field = (label, input) => h('label', null, h('span', null, label), input);

// A <select> of the vhosts (GET /api/vhosts), "/" first; `selected` preselects one.
export function vhostSelect(testid, selected = '/') {
  const select = h('select', { testid }, h('option', { value: selected }, selected));
  get('vhosts').then((vhosts) => {
    const names = (vhosts || []).map((v) => v.name).sort((a, b) => (a === '/' ? -1 : b === '/' ? 1 : a.localeCompare(b)));
    if (!names.includes(selected)) names.unshift(selected);
    select.replaceChildren(...names.map((n) => h('option', { value: n, selected: n === selected }, n)));
  }).catch(() => {}); // keep the single option
  return select;
}

export function createQueueForm(onCreated) {
  const vhost = vhostSelect('create-queue-vhost');
  const name = h('input', { type: 'text', required: true, testid: 'create-queue-name', placeholder: 'queue name' });
  const durable = h('input', { type: 'checkbox', checked: true, testid: 'create-queue-durable' });
  const type = h('select', { testid: 'create-queue-type' },
    h('option', { value: 'classic' }, 'classic'), h('option', { value: 'stream' }, 'stream'));
  const form = h('form', { class: 'inline', testid: 'create-queue-form' },
    field('Virtual host', vhost), field('Name', name), field('Type', type), field('Durable', durable),
    h('div', null, h('button', { type: 'submit', testid: 'create-queue-submit' }, 'Create queue')));
  type.addEventListener('change', () => { if (type.value === 'stream') durable.checked = true; });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const q = name.value.trim();
    if (!q) return;
    const body = { durable: durable.checked, auto_delete: false, arguments: {} };
    if (type.value === 'stream') body.arguments['x-queue-type'] = 'stream';
    try {
      await put(`queues/${enc(vhost.value)}/${enc(q)}`, body);
      flash(`Queue ${q} created`);
      name.value = '';
      onCreated?.(vhost.value, q);
    } catch (e) {
      flash(e, true);
    }
  });
  return form;
}

// defaults: { vhost, exchange, routingKey }; onPublished(result) after a successful publish.
export function publishForm(defaults = {}, onPublished) {
  const vhost = vhostSelect('publish-vhost', defaults.vhost || '/');
  const exchange = h('input', { type: 'text', testid: 'publish-exchange', value: defaults.exchange || '',
    placeholder: '(AMQP default)' });
  const key = h('input', { type: 'text', testid: 'publish-routing-key', value: defaults.routingKey || '' });
  const payload = h('textarea', { rows: 3, testid: 'publish-payload', placeholder: 'payload (text)' });
  const result = h('span', { class: 'muted', testid: 'publish-result' });
  const form = h('form', { class: 'inline', testid: 'publish-form' },
    field('Virtual host', vhost), field('Exchange', exchange), field('Routing key', key), field('Payload', payload),
    h('div', null, h('button', { type: 'submit', testid: 'publish-submit' }, 'Publish message'), ' ', result));
  let sent = 0;
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const x = exchange.value.trim() || 'amq.default';
    result.textContent = 'publishing…';
    try {
      const res = await post(`exchanges/${enc(vhost.value)}/${enc(x)}/publish`,
        { properties: {}, routing_key: key.value, payload: payload.value, payload_encoding: 'string' });
      sent++;
      result.textContent = res && res.routed ? `#${sent}: routed` : `#${sent}: published but NOT routed to any queue`;
      result.className = res && res.routed ? 'ok' : 'error';
      onPublished?.(res);
    } catch (e) {
      result.textContent = `failed: ${e.message}`;
      result.className = 'error';
    }
  });
  return form;
}

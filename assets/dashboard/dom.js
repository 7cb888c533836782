// DOM helpers. Data only ever reaches the page as text nodes or attribute values, never as HTML.

// h('td', { class: 'num', testid: 'x', onclick: fn }, 'text', childNode, [more])
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'testid') el.setAttribute('data-testid', v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren();
  for (const c of children.flat(Infinity)) if (c != null && c !== false) el.append(c);
  return el;
}

export const num = (n) => (typeof n === 'number' && Number.isFinite(n) ? String(n) : '0');
export const rate = (details) => `${(details && typeof details.rate === 'number' ? details.rate : 0).toFixed(1)}/s`;
export const rateOf = (details) => (details && typeof details.rate === 'number' ? details.rate : 0);
export const yesNo = (b) => (b ? 'yes' : 'no');
export const json = (v) => JSON.stringify(v ?? {});

export function bytes(n) {
  if (typeof n !== 'number') return '0 B';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function time(ms) {
  return typeof ms === 'number' ? new Date(ms).toLocaleString() : '';
}

export const queueHref = (vhost, name) => `#/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`;

let flashTimer = null;
// A short message under the header: flash('Queue created') or flash(error, true).
export function flash(message, isError = false) {
  const el = document.getElementById('flash');
  el.textContent = message instanceof Error ? message.message : String(message);
  el.className = isError ? 'flash error' : 'flash';
  el.hidden = false;
  clearTimeout(flashTimer);
  flashTimer = setTimeout(() => { el.hidden = true; }, isError ? 10000 : 5000);
}

// A table of key/value pairs (queue arguments, message properties).
export function kvTable(obj, testid) {
  const entries = Object.entries(obj || {});
  if (!entries.length) return h('p', { class: 'empty', testid }, 'none');
  return h('table', { testid },
    h('tbody', null, entries.map(([k, v]) => h('tr', null,
      h('th', null, k), h('td', { class: 'mono' }, typeof v === 'string' ? v : JSON.stringify(v))))));
}

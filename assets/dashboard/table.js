// A searchable table with click-to-sort columns.
//   const t = dataTable({ id: 'queues', columns, rowTestId: (q) => `row-queue-${q.name}` });
//   root.append(t.el); t.update(rows);
// Options: searchable: false drops the search box (small tables).
// A column: { key, label, value(row) -> sort/search value, cell(row) -> Node|string (default value),
//             num: true for right-aligned numbers, search: false to leave it out of the search }.
// Every cell carries data-col="<key>" so tests can read it.
import { h, clear } from './dom.js';

const saved = new Map(); // table id -> { sortKey, sortDir, query }: survives re-renders and navigation

export function dataTable({ id, columns, rowTestId, empty = 'Nothing to show.', defaultSort, searchable = true }) {
  const state = saved.get(id) || { sortKey: defaultSort || columns[0].key, sortDir: 1, query: '' };
  saved.set(id, state);
  let rows = [];

  const search = h('input', {
    type: 'search', placeholder: 'Search…', value: state.query, testid: `search-${id}`, 'aria-label': 'search',
    oninput: () => { state.query = search.value; render(); },
  });
  const count = h('span', { class: 'muted', testid: `count-${id}` });
  const head = h('tr');
  const body = h('tbody');
  const table = h('table', { testid: `table-${id}` }, h('thead', null, head), body);
  const el = h('div', { class: 'datatable' }, searchable ? h('div', { class: 'toolbar' }, search, count) : null, table);

  const valueOf = (col, row) => (col.value ? col.value(row) : row[col.key]);

  function renderHead() {
    clear(head, columns.map((col) => {
      const sortable = col.sort !== false;
      const active = state.sortKey === col.key;
      const th = h('th', {
        class: [sortable && 'sortable', col.num && 'num'].filter(Boolean).join(' '),
        'data-col': col.key,
        'aria-sort': active ? (state.sortDir > 0 ? 'ascending' : 'descending') : null,
      }, col.label, active ? (state.sortDir > 0 ? ' ▲' : ' ▼') : '');
      if (sortable) th.addEventListener('click', () => {
        if (state.sortKey === col.key) state.sortDir = -state.sortDir;
        else { state.sortKey = col.key; state.sortDir = col.num ? -1 : 1; }
        render();
      });
      return th;
    }));
  }

  function compare(a, b) {
    if (typeof a === 'number' && typeof b === 'number') return a - b;
    return String(a ?? '').localeCompare(String(b ?? ''), undefined, { numeric: true });
  }

  function render() {
    renderHead();
    const q = state.query.trim().toLowerCase();
    let shown = rows;
    if (q) {
      shown = rows.filter((row) => columns.some((col) => col.search !== false
        && String(valueOf(col, row) ?? '').toLowerCase().includes(q)));
    }
    const col = columns.find((c) => c.key === state.sortKey) || columns[0];
    shown = [...shown].sort((a, b) => state.sortDir * compare(valueOf(col, a), valueOf(col, b)));
    count.textContent = q ? `${shown.length} of ${rows.length}` : `${rows.length}`;
    if (!shown.length) {
      clear(body, h('tr', null, h('td', { class: 'empty', colspan: columns.length }, rows.length ? 'No match.' : empty)));
      return;
    }
    clear(body, shown.map((row) => h('tr', { testid: rowTestId ? rowTestId(row) : null },
      columns.map((c) => h('td', { class: c.num ? 'num' : null, 'data-col': c.key },
        c.cell ? c.cell(row) : String(valueOf(c, row) ?? ''))))));
  }

  render();
  return { el, update(next) { rows = Array.isArray(next) ? next : []; render(); } };
}

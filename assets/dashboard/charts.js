// Hand-written SVG line charts over a sliding time window.
//   const c = lineChart({ testid: 'chart-rates', title: 'Message rates', unit: '/s',
//                         series: [{ key: 'publish', label: 'Publish', color: '#0969da' }] });
//   c.update([{ t: Date.now(), v: { publish: 1.5 } }, ...]);
// The figure carries data-points="<samples drawn>".
import { h, clear } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';
const H = 180, L = 44, R = 8, T = 8, B = 20;

function s(tag, attrs, text) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  if (text != null) el.textContent = text;
  return el;
}

// The smallest of 1, 2, 5 x 10^n that is >= max (at least `floor`).
function niceMax(max, floor) {
  if (!(max > floor)) return floor;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

function label(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(2)}`;
}

export function lineChart({ testid, title, series, unit = '', windowMs = 5 * 60 * 1000, integer = false }) {
  const svg = s('svg', { viewBox: `0 0 600 ${H}`, role: 'img', 'aria-label': title });
  const legend = h('div', { class: 'legend' });
  const el = h('figure', { class: 'chart', testid, 'data-points': 0 }, h('figcaption', null, title), svg, legend);

  function update(samples) {
    const W = Math.max(200, Math.round(svg.getBoundingClientRect().width) || 600); // 1 unit = 1 px
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    const now = samples.length ? samples[samples.length - 1].t : Date.now();
    const from = now - windowMs;
    const shown = samples.filter((p) => p.t >= from);
    let max = 0;
    for (const p of shown) for (const ser of series) max = Math.max(max, p.v[ser.key] || 0);
    const top = niceMax(max, integer ? 4 : 1);
    const x = (t) => L + ((t - from) / windowMs) * (W - L - R);
    const y = (v) => T + (1 - v / top) * (H - T - B);

    const nodes = [];
    for (let i = 0; i <= 4; i++) {
      const v = (top * i) / 4;
      nodes.push(s('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      nodes.push(s('text', { class: 'axis', x: L - 4, y: y(v) + 3, 'text-anchor': 'end' }, label(v)));
    }
    for (const [t, text, anchor] of [[from, '-5 min', 'start'], [from + windowMs / 2, '-2.5 min', 'middle'], [now, 'now', 'end']]) {
      nodes.push(s('text', { class: 'axis', x: x(t), y: H - 5, 'text-anchor': anchor }, text));
    }
    for (const ser of series) {
      const pts = shown.map((p) => `${x(p.t).toFixed(1)},${y(p.v[ser.key] || 0).toFixed(1)}`);
      if (pts.length > 1) {
        nodes.push(s('polyline', { points: pts.join(' '), fill: 'none', stroke: ser.color, 'stroke-width': 2,
          'stroke-linejoin': 'round', 'stroke-dasharray': ser.dash || 'none', 'data-series': ser.key }));
      } else if (pts.length === 1) {
        const [cx, cy] = pts[0].split(',');
        nodes.push(s('circle', { cx, cy, r: 2.5, fill: ser.color, 'data-series': ser.key }));
      }
    }
    svg.replaceChildren(...nodes);

    const last = shown.length ? shown[shown.length - 1].v : {};
    clear(legend, series.map((ser) => h('span', { testid: `${testid}-${ser.key}` },
      h('span', { class: 'swatch', style: `background:${ser.color}` }),
      `${ser.label}: ${integer ? (last[ser.key] || 0) : (last[ser.key] || 0).toFixed(1)}${unit}`)));
    el.setAttribute('data-points', String(shown.length));
  }

  update([]);
  return { el, update };
}

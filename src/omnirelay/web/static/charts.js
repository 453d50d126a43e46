// Small SVG charts: a time series (lines or stacked columns) and horizontal bars. No library, no network.
import { h, s } from './core.js';

export const COLORS = ['#2457c5', '#d9480f', '#2b8a3e', '#862e9c', '#c92a2a', '#0b7285', '#e67700', '#5c7cfa', '#495057'];
const W = 560;
const H = 230;
const PAD = { left: 78, right: 14, top: 12, bottom: 28 };
const FONT = 13;

function colorOf(item, k) {
  return item.color || COLORS[k % COLORS.length];
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function timeLabel(ms, span) {
  const date = new Date(ms);
  if (span > 2 * 86400e3) return date.toLocaleDateString('en-GB', { day: '2-digit', month: 'short' });
  return date.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' });
}

// times: bucket starts (ms), ascending; series: [{name, values, color}] aligned with times (null: no value, a gap
// in a line); kind: 'line' or 'bars' (stacked). The chart's accessible label states the total, so a screen reader (and a test) can read it.
export function timeChart({ title, times, series, format = String, kind = 'line', total, integer = false }) {
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const n = Math.max(times.length, 1);
  const stackTops = times.map((_, i) => series.reduce((sum, item) => sum + (item.values[i] || 0), 0));
  const peak = kind === 'bars' ? Math.max(0, ...stackTops) : Math.max(0, ...series.flatMap((item) => item.values.filter((v) => v !== null)));
  const top = integer ? Math.max(2, niceMax(peak)) : niceMax(peak); // counts: no half-request tick
  const x = (i) => PAD.left + (n === 1 ? plotW / 2 : (i * plotW) / (n - 1));
  const y = (value) => PAD.top + plotH - (value / top) * plotH;
  const grid = [0, 0.5, 1].map((f) => [
    s('line', { x1: PAD.left, x2: W - PAD.right, y1: y(top * f), y2: y(top * f), stroke: '#dde1e7' }),
    s('text', { x: PAD.left - 6, y: y(top * f) + 4, 'text-anchor': 'end', 'font-size': FONT, fill: '#5f6b7a' }, format(top * f)),
  ]);
  const span = times.length > 1 ? times[times.length - 1] - times[0] : 0;
  const ticks = times.length ? [0, Math.floor((times.length - 1) / 2), times.length - 1] : [];
  const xLabels = [...new Set(ticks)].map((i) => s('text', {
    x: x(i), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === times.length - 1 ? 'end' : 'middle', 'font-size': FONT, fill: '#5f6b7a',
  }, timeLabel(times[i], span)));
  const marks = [];
  if (kind === 'bars') {
    const width = Math.max(2, (plotW / n) * 0.7);
    const base = times.map(() => 0);
    series.forEach((item, k) => {
      item.values.forEach((value, i) => {
        if (!value) return;
        const y0 = y(base[i]);
        base[i] += value;
        const y1 = y(base[i]);
        marks.push(s('rect', { x: x(i) - width / 2, y: y1, width, height: Math.max(1, y0 - y1), fill: colorOf(item, k) },
          s('title', {}, `${item.name} · ${timeLabel(times[i], span)}: ${format(value)}`)));
      });
    });
  } else {
    series.forEach((item, k) => {
      const color = colorOf(item, k);
      // One polyline per run of known values: a bucket without calls has no latency, not a latency of 0.
      let run = [];
      const flush = () => {
        if (run.length > 1) marks.push(s('polyline', { points: run.join(' '), fill: 'none', stroke: color, 'stroke-width': 2 }));
        run = [];
      };
      item.values.forEach((value, i) => {
        if (value === null) flush();
        else run.push(`${x(i).toFixed(1)},${y(value).toFixed(1)}`);
      });
      flush();
      item.values.forEach((value, i) => {
        if (value !== null) {
          marks.push(s('circle', { cx: x(i), cy: y(value), r: 3, fill: color },
            s('title', {}, `${item.name} · ${timeLabel(times[i], span)}: ${format(value)}`)));
        }
      });
    });
  }
  const label = `${title}${total !== undefined ? `: ${total} in total` : ''}`;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label }, grid, xLabels, marks);
  const legend = h('div', { class: 'legend' }, series.map((item, k) => h('span', {},
    h('span', { class: 'swatch', style: `background:${colorOf(item, k)}` }), item.name)));
  return h('figure', { class: 'chart card', 'data-total': total }, h('h3', {}, title), svg,
    series.length ? legend : h('p', { class: 'muted' }, 'No requests in this window.'));
}

// items: [{name, value, detail}] largest first.
export function barList({ title, items, format = String, empty = 'No data in this window.' }) {
  const peak = Math.max(0, ...items.map((item) => item.value)) || 1;
  const rows = items.map((item) => h('div', { class: 'bar-row' },
    h('span', { class: 'name', title: item.name }, item.name),
    h('div', { class: 'bar-track', role: 'presentation' },
      h('div', { class: 'bar-fill', style: `width:${((item.value / peak) * 100).toFixed(1)}%` })),
    h('span', { class: 'num' }, item.detail ?? format(item.value))));
  return h('section', { class: 'card', 'aria-label': title }, h('h3', {}, title),
    items.length ? h('div', { class: 'bars' }, rows) : h('p', { class: 'muted' }, empty));
}

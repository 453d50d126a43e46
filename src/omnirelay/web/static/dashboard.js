// Dashboard: a window's totals, requests/spend/latency over time by model, breakdowns by model, channel and key,
// top spenders and channels' health. Every number comes from indexed range queries of the admin API.
import { api, badge, h, int, ms, table, usd, when } from './core.js';
import { COLORS, barList, timeChart } from './charts.js';

const RANGES = {
  hour: { label: 'Last hour', span: 3600e3, bucket: 'minute', step: 60e3 },
  day: { label: 'Last 24 hours', span: 86400e3, bucket: 'hour', step: 3600e3 },
  month: { label: 'Last 30 days', span: 30 * 86400e3, bucket: 'day', step: 86400e3 },
};
let chosen = 'day';

function buckets(range, now) {
  // From the bucket holding the window's start (partly in the window, as the server counts it) to now's.
  const first = Math.floor((now - range.span) / range.step) * range.step;
  const times = [];
  for (let t = first; t <= now; t += range.step) times.push(t);
  return times;
}

// Rows of one aggregate (bucket × group) into series aligned with the buckets, biggest groups first. Buckets
// without rows hold `empty` (0 for counts, null for latencies: no calls, no latency). `colors` keeps one colour
// per group across charts.
function seriesOf(rows, times, measure, { empty = 0, colors, limit = 8 } = {}) {
  const index = new Map(times.map((t, i) => [t, i]));
  const groups = new Map();
  for (const row of rows) {
    const name = row.label ?? row.group ?? '(none)';
    if (!groups.has(name)) groups.set(name, { name, values: times.map(() => empty), weight: 0, color: colors?.get(name) });
    const item = groups.get(name);
    const i = index.get(Date.parse(row.bucket_start));
    const value = measure(row);
    if (i !== undefined && value !== null && value !== undefined) item.values[i] = (item.values[i] ?? 0) + value;
    item.weight += row.requests;
  }
  return [...groups.values()].sort((a, b) => b.weight - a.weight).slice(0, limit);
}

function totals(rows, measure) {
  const sums = new Map();
  for (const row of rows) {
    const name = row.label ?? row.group ?? '(none)';
    sums.set(name, (sums.get(name) || 0) + measure(row));
  }
  return [...sums].map(([name, value]) => ({ name, value })).sort((a, b) => b.value - a.value);
}

function tile(label, value, id) {
  return h('div', { class: 'card tile', 'data-tile': id }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value));
}

function breakerBadge(state) {
  return badge(state, state === 'closed' ? 'ok' : state === 'half_open' ? 'warn' : 'bad');
}

function health(channels, checks) {
  const last = new Map(checks.map((check) => [check.channel_id, check]));
  return table([
    { label: 'Channel', value: (c) => c.name },
    { label: 'Status', value: (c) => (c.enabled ? badge('enabled', 'ok') : badge('disabled', 'bad')) },
    { label: 'Breaker', value: (c) => breakerBadge(c.breaker) },
    { label: 'Keys', value: (c) => `${c.active_key_count ?? '?'} / ${c.key_count ?? '?'}`, num: true },
    {
      label: 'Last check',
      value: (c) => {
        const check = last.get(c.id);
        if (!check) return h('span', { class: 'muted' }, 'never');
        return [check.ok ? badge('ok', 'ok') : badge(check.error_code || 'failed', 'bad'), ' ', ms(check.latency_ms),
          h('span', { class: 'muted' }, ` · ${when(check.checked_at)}`)];
      },
    },
  ], channels, { empty: 'No channels yet: add one on the Channels page.' });
}

async function draw(body) {
  const range = RANGES[chosen];
  const now = Date.now();
  const start = new Date(now - range.span).toISOString();
  // Only the by-model series draws latency: the other breakdowns skip the percentiles (cheaper on long windows).
  const aggregate = (by) => api('/usage/aggregate', { query: { bucket: range.bucket, by, start, latency: by === 'model' } });
  const [summary, byModel, byChannel, byKey, byAccount, channels, checks] = await Promise.all([
    api('/usage/summary', { query: { start } }),
    aggregate('model'), aggregate('channel'), aggregate('key'), aggregate('account'),
    api('/channels'), api('/channel-checks/latest'),
  ]);
  const times = buckets(range, now);
  const errorRate = summary.error_rate === null ? '—' : `${(summary.error_rate * 100).toFixed(1)}%`;
  const tiles = h('div', { class: 'tiles' },
    tile('Requests', int(summary.requests), 'requests'),
    tile('Tokens in / out', `${int(summary.prompt_tokens)} / ${int(summary.completion_tokens)}`, 'tokens'),
    tile('Spend', usd(summary.cost_usd), 'spend'),
    tile('Error rate', errorRate, 'errors'),
    tile('Latency p50', ms(summary.p50_latency_ms), 'p50'),
    tile('Latency p95', ms(summary.p95_latency_ms), 'p95'));
  const colors = new Map(totals(byModel.data, (r) => r.requests).map((item, k) => [item.name, COLORS[k % COLORS.length]]));
  const charts = h('div', { class: 'charts' },
    timeChart({
      title: 'Requests by model', times, kind: 'bars', total: summary.requests,
      series: seriesOf(byModel.data, times, (r) => r.requests, { colors }), format: int, integer: true,
    }),
    timeChart({
      title: 'Tokens by model (in + out)', times, kind: 'bars', total: int(summary.prompt_tokens + summary.completion_tokens),
      series: seriesOf(byModel.data, times, (r) => r.prompt_tokens + r.completion_tokens, { colors }), format: int, integer: true,
    }),
    timeChart({
      title: 'Spend by model', times, kind: 'bars', total: usd(summary.cost_usd),
      series: seriesOf(byModel.data, times, (r) => Number(r.cost_usd), { colors }), format: usd,
    }),
    timeChart({
      title: 'Errors by model', times, kind: 'bars', total: summary.errors,
      series: seriesOf(byModel.data.filter((r) => r.errors), times, (r) => r.errors, { colors }), format: int, integer: true,
    }),
    timeChart({
      title: 'Latency p50 by model', times, format: ms,
      series: seriesOf(byModel.data, times, (r) => r.p50_latency_ms, { empty: null, colors }),
    }),
    timeChart({
      title: 'Latency p95 by model', times, format: ms,
      series: seriesOf(byModel.data, times, (r) => r.p95_latency_ms, { empty: null, colors }),
    }));
  const requestsOf = (rows) => totals(rows, (r) => r.requests).slice(0, 10);
  const breakdowns = h('div', { class: 'grid2' },
    barList({ title: 'Top models', items: requestsOf(byModel.data), format: int }),
    barList({ title: 'Top channels', items: requestsOf(byChannel.data), format: int }),
    barList({ title: 'Top keys', items: requestsOf(byKey.data), format: int }),
    barList({ title: 'Top spenders (accounts)', items: totals(byAccount.data, (r) => Number(r.cost_usd)).slice(0, 10), format: usd }));
  body.replaceChildren(tiles, charts, h('h2', {}, 'Breakdown'), breakdowns, h('h2', {}, 'Channel health'),
    health(channels, checks));
}

export async function render(root) {
  const body = h('div', { 'aria-live': 'polite' });
  const buttons = Object.entries(RANGES).map(([key, range]) => h('button', {
    type: 'button', 'aria-pressed': String(key === chosen),
    onclick: async () => {
      chosen = key;
      for (const button of buttons) button.setAttribute('aria-pressed', String(button === buttons[Object.keys(RANGES).indexOf(key)]));
      await draw(body);
    },
  }, range.label));
  const refresh = h('button', { type: 'button', onclick: () => draw(body) }, 'Refresh');
  root.append(h('div', { class: 'toolbar' }, h('div', { class: 'segmented', role: 'group', 'aria-label': 'Time window' }, buttons),
    refresh), body);
  await draw(body);
}

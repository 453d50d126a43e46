// Logs: usage rows, newest first, filtered by time, key, account, model, channel and status; cursor pages; a
// detail view per row. Rows hold metadata only (the gateway does not store prompts or answers).
import { api, apiUrl, badge, h, int, ms, showDialog, table, usd, when } from './core.js';

const PAGE = 50;

function statusBadge(code) {
  return badge(String(code), code < 400 ? 'ok' : code < 500 ? 'warn' : 'bad');
}

function detail(row) {
  const fields = [
    ['Request id', row.request_id], ['Time', when(row.created_at)], ['Endpoint', row.endpoint], ['Model', row.model],
    ['Upstream model', row.upstream_model || '—'], ['Channel id', row.channel_id ?? '—'], ['Key id', row.key_id ?? '—'],
    ['Account id', row.account_id ?? '—'], ['Stream', row.stream ? 'yes' : 'no'], ['Status', row.status_code],
    ['Error', row.error_code || '—'], ['Prompt tokens', int(row.prompt_tokens)],
    ['Completion tokens', int(row.completion_tokens)], ['Cached tokens', int(row.cached_tokens)],
    ['Reasoning tokens', int(row.reasoning_tokens)], ['Usage estimated', row.usage_estimated ? 'yes' : 'no'],
    ['Cost', `${usd(row.cost_usd)} (${int(row.cost_micros)} µUSD)`], ['Latency', ms(row.latency_ms)],
    ['Time to first token', ms(row.ttft_ms)], ['Gateway overhead', `${row.overhead_ms} ms`],
    ['Client IP', row.client_ip || '—'],
  ];
  showDialog(`Request ${row.request_id}`, [
    h('dl', { class: 'detail' }, fields.map(([name, value]) => [h('dt', {}, name), h('dd', {}, String(value))])),
    h('p', { class: 'help' }, 'Prompts and answers are not stored: the log keeps what the call cost and how it went.'),
  ]);
}

function isoOrNull(local) {
  return local ? new Date(local).toISOString() : null;
}

export async function render(root) {
  const inputs = {
    start: ['From', h('input', { type: 'datetime-local' })],
    end: ['Until', h('input', { type: 'datetime-local' })],
    model: ['Model', h('input', { placeholder: 'gpt-4o-mini' })],
    key_id: ['Key id', h('input', { type: 'number', min: 1 })],
    account_id: ['Account id', h('input', { type: 'number', min: 1 })],
    channel_id: ['Channel id', h('input', { type: 'number', min: 1 })],
    status: ['Status', h('select', {}, [['', 'any'], ['ok', 'ok (< 400)'], ['error', 'error (≥ 400)'],
      ['429', '429'], ['500', '500'], ['502', '502']].map(([v, l]) => h('option', { value: v }, l)))],
  };
  const filters = h('form', { class: 'filters', 'aria-label': 'Filter the logs' },
    Object.entries(inputs).map(([name, [label, input]]) => {
      input.id = `log-${name}`;
      input.name = name;
      return h('div', {}, h('label', { for: input.id }, label), input);
    }),
    h('div', {}, h('button', { type: 'submit', class: 'primary' }, 'Apply')));
  const list = h('div', { 'aria-live': 'polite' });
  const pager = h('div', { class: 'toolbar' });
  const exportLink = h('a', { class: 'button', download: 'usage.csv' }, 'Export CSV');
  let cursors = [null];
  const channels = new Map((await api('/channels')).map((c) => [c.id, c.name]));
  const query = () => {
    const values = Object.fromEntries(Object.entries(inputs).map(([name, [, input]]) => [name, input.value.trim()]));
    values.start = isoOrNull(values.start);
    values.end = isoOrNull(values.end);
    return values;
  };
  const load = async () => {
    const values = query();
    exportLink.href = apiUrl('/usage/export.csv', values);
    const page = await api('/usage', { query: { ...values, limit: PAGE, cursor: cursors[cursors.length - 1] } });
    list.replaceChildren(table([
      { label: 'Time', value: (r) => when(r.created_at) },
      { label: 'Model', value: (r) => r.model },
      { label: 'Endpoint', value: (r) => h('span', { class: 'mono' }, r.endpoint) },
      { label: 'Channel', value: (r) => (r.channel_id === null ? '—' : channels.get(r.channel_id) || `#${r.channel_id}`) },
      { label: 'Key', value: (r) => r.key_id ?? '—', num: true },
      { label: 'Status', value: (r) => [statusBadge(r.status_code), r.error_code ? ` ${r.error_code}` : ''] },
      { label: 'Tokens in / out', value: (r) => `${int(r.prompt_tokens)} / ${int(r.completion_tokens)}`, num: true },
      { label: 'Cost', value: (r) => usd(r.cost_usd), num: true },
      { label: 'Latency', value: (r) => ms(r.latency_ms), num: true },
    ], page.data, {
      empty: 'No requests match.', onRowClick: detail, rowLabel: (r) => `Details of ${r.model} request at ${when(r.created_at)}`,
    }));
    const newer = h('button', { type: 'button', disabled: cursors.length === 1, onclick: () => { cursors.pop(); load(); } }, '← Newer');
    const older = h('button', {
      type: 'button', disabled: !page.next_cursor, onclick: () => { cursors.push(page.next_cursor); load(); },
    }, 'Older →');
    pager.replaceChildren(newer, older, h('span', { class: 'muted grow' }, `Page ${cursors.length}`), exportLink);
  };
  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    cursors = [null];
    load();
  });
  root.append(filters, h('div', { style: 'height:0.8rem' }), pager, list);
  await load();
}

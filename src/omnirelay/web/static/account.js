// The account console: a customer's own balance, keys, logs, tasks, top-ups, models and access tokens, over the
// System API (/api/v1) with the user session cookie and its CSRF token. Same look and helpers as the admin console.
import {
  act, api, badge, confirmAction, copyText, formDialog, h, int, listOf, optionalNumber, optionalText, session,
  showDialog, table, toast, usd, when,
} from './core.js';
import { barList, timeChart } from './charts.js';

const API = '/api/v1';
const $ = (id) => document.getElementById(id);

// --- pages ----------------------------------------------------------------------------------------------------

function tile(label, value, id) {
  return h('div', { class: 'card tile', 'data-tile': id }, h('div', { class: 'label' }, label), h('div', { class: 'value' }, value));
}

async function dashboard(root) {
  const [account, usage] = await Promise.all([api(`${API}/account`), api(`${API}/usage/aggregate`)]);
  const days = usage.by_day;
  root.append(
    h('div', { class: 'tiles' },
      tile('Balance', usd(account.balance_usd), 'balance'),
      tile('Used', usd(account.used_usd), 'used'),
      tile('Requests', int(account.request_count), 'requests'),
      tile('Group', `${account.group} × ${account.ratio}`, 'group')),
    h('div', { class: 'charts' },
      timeChart({
        title: 'Spend per day (last 30 days)', kind: 'bars', format: usd, total: usd(usage.total.cost_usd),
        times: days.map((d) => Date.parse(`${d.day}T00:00:00Z`)),
        series: days.length ? [{ name: 'Spend', values: days.map((d) => Number(d.cost_usd)) }] : [],
      }),
      barList({
        title: 'Spend by model', format: usd,
        items: usage.by_model.map((m) => ({ name: m.model, value: Number(m.cost_usd) })).sort((a, b) => b.value - a.value),
      })),
  );
}

function shownOnce(title, secret) {
  const input = h('input', { value: secret, readonly: true, 'aria-label': title, 'data-secret': 'true' });
  showDialog(title, [
    h('p', {}, 'Copy it now: it is shown only this once.'),
    h('div', { class: 'secret-box' }, input, h('button', { type: 'button', onclick: () => copyText(secret) }, 'Copy')),
  ]);
}

function keyForm(key, reload) {
  const editing = Boolean(key);
  formDialog({
    title: editing ? `Edit key ${key.name}` : 'New API key',
    submit: editing ? 'Save' : 'Create',
    fields: [
      { name: 'name', label: 'Name', value: key?.name, required: true },
      { name: 'spend_cap_usd', label: 'Spend cap, USD (empty: unlimited)', type: 'number', step: '0.000001', min: 0, value: key?.spend_cap_usd },
      { name: 'models', label: 'Allowed models (comma separated; empty: all)', value: key?.models?.join(', ') },
      { name: 'allowed_ips', label: 'Allowed IPs or networks (empty: any)', value: key?.allowed_ips?.join(', ') },
      { name: 'rpm', label: 'Requests per minute (empty: no limit)', type: 'number', min: 0, value: key?.rpm },
    ],
    onSubmit: async (v) => {
      const models = listOf(v.models);
      const ips = listOf(v.allowed_ips);
      const body = {
        name: v.name, spend_cap_usd: optionalText(v.spend_cap_usd), models: models.length ? models : null,
        allowed_ips: ips.length ? ips : null, rpm: optionalNumber(v.rpm),
      };
      if (editing) await api(`${API}/keys/${key.id}`, { method: 'PATCH', body });
      else shownOnce('Your new API key', (await api(`${API}/keys`, { method: 'POST', body })).key);
      await reload();
    },
  });
}

async function keys(root) {
  const list = h('div');
  const reload = async () => {
    const page = await api(`${API}/keys`, { query: { limit: 1000 } });
    list.replaceChildren(table([
      { label: 'Name', value: (k) => k.name },
      { label: 'Key', value: (k) => h('span', { class: 'mono' }, k.masked) },
      { label: 'Status', value: (k) => badge(k.status, k.status === 'active' ? 'ok' : 'warn') },
      { label: 'Spent', num: true, value: (k) => usd(k.spent_usd) },
      { label: 'Cap', num: true, value: (k) => (k.spend_cap_usd === null ? 'unlimited' : usd(k.spend_cap_usd)) },
      { label: 'Models', value: (k) => (k.models ? k.models.join(', ') : 'all') },
      {
        label: '', value: (k) => h('span', { class: 'buttons' },
          h('button', { type: 'button', onclick: () => keyForm(k, reload) }, 'Edit'),
          h('button', {
            type: 'button',
            onclick: (e) => act(e.target, () => api(`${API}/keys/${k.id}/${k.status === 'disabled' ? 'enable' : 'disable'}`, { method: 'POST' }).then(reload)),
          }, k.status === 'disabled' ? 'Enable' : 'Disable'),
          h('button', {
            type: 'button',
            onclick: async (e) => {
              if (await confirmAction(`Delete the key ${k.name}? Apps using it stop working at once.`)) {
                await act(e.target, () => api(`${API}/keys/${k.id}`, { method: 'DELETE' }).then(reload), 'Key deleted');
              }
            },
          }, 'Delete')),
      },
    ], page.data, { caption: 'API keys', empty: 'No keys yet: create one to call models.' }));
  };
  root.append(h('div', { class: 'toolbar' }, h('button', { type: 'button', class: 'primary', onclick: () => keyForm(null, reload) }, 'New key')), list);
  await reload();
}

async function logs(root) {
  const type = h('select', { 'aria-label': 'Type' }, ['consumption', 'topup', 'refund', 'adjustment'].map((t) => h('option', { value: t }, t)));
  const model = h('input', { placeholder: 'model', 'aria-label': 'Model' });
  const keyName = h('input', { placeholder: 'key name', 'aria-label': 'Key name' });
  const list = h('div');
  const more = h('button', { type: 'button', hidden: true }, 'Older');
  let cursor = null;
  let rows = [];
  const load = async (reset) => {
    if (reset) { cursor = null; rows = []; }
    const page = await api(`${API}/logs`, { query: { type: type.value, model: model.value.trim(), key_name: keyName.value.trim(), limit: 50, cursor } });
    rows = rows.concat(page.data);
    cursor = page.next_cursor;
    more.hidden = cursor === null;
    list.replaceChildren(table([
      { label: 'When', value: (r) => when(r.created_at) },
      { label: 'Key', value: (r) => r.key_name || '—' },
      { label: 'Model', value: (r) => r.model || r.reason || r.type },
      { label: 'Tokens in / out', num: true, value: (r) => `${int(r.prompt_tokens)} / ${int(r.completion_tokens)}` },
      { label: 'Amount', num: true, value: (r) => usd(r.amount_usd) },
      { label: 'Status', value: (r) => (r.status_code === null ? '—' : badge(String(r.status_code), r.status_code < 400 ? 'ok' : 'bad')) },
    ], rows, { caption: 'Logs', empty: 'Nothing logged for these filters.' }));
  };
  more.addEventListener('click', () => act(more, () => load(false)));
  const apply = h('button', { type: 'button', onclick: (e) => act(e.target, () => load(true)) }, 'Apply');
  root.append(h('div', { class: 'toolbar' }, type, model, keyName, apply), list, more);
  await load(true);
}

async function tasks(root) {
  const page = await api(`${API}/tasks`, { query: { limit: 100 } });
  root.append(table([
    { label: 'Submitted', value: (t) => when(t.submitted_at) },
    { label: 'Task', value: (t) => h('span', { class: 'mono' }, t.id) },
    { label: 'Model', value: (t) => t.model },
    { label: 'Status', value: (t) => badge(t.status, t.status === 'SUCCESS' ? 'ok' : t.status === 'FAILURE' ? 'bad' : 'warn') },
    { label: 'Cost', num: true, value: (t) => usd(t.cost_usd) },
    { label: 'Billing', value: (t) => t.billing },
  ], page.data, { caption: 'Tasks', empty: 'No tasks yet.' }));
}

async function topup(root) {
  const ledger = h('div');
  const balance = h('p', { 'data-balance': 'true' });
  const reload = async () => {
    const [account, page] = await Promise.all([api(`${API}/account`), api(`${API}/ledger`, { query: { limit: 50 } })]);
    balance.textContent = `Balance: ${usd(account.balance_usd)}`;
    ledger.replaceChildren(table([
      { label: 'When', value: (e) => when(e.created_at) },
      { label: 'Kind', value: (e) => e.kind },
      { label: 'Amount', num: true, value: (e) => usd(e.amount_usd) },
      { label: 'Reason', value: (e) => e.reason || '—' },
    ], page.data, { caption: 'Ledger', empty: 'No entries yet.' }));
  };
  const code = h('input', { id: 'topup-code', placeholder: 'ORC-XXXX-...', required: true });
  const form = h('form', { class: 'card' }, h('label', { for: 'topup-code' }, 'Redemption code'), code,
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary' }, 'Redeem')));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    act(form.querySelector('button'), async () => {
      const done = await api(`${API}/topup`, { method: 'POST', body: { code: code.value.trim() } });
      code.value = '';
      toast(`Added ${usd(done.amount_usd)}`);
      await reload();
    });
  });
  root.append(balance, form, h('h2', {}, 'Ledger'), ledger);
  await reload();
}

async function models(root) {
  const rows = await api(`${API}/models`);
  const perM = (m, rate) => (m.price && m.price[rate] !== undefined ? usd(Number(m.price[rate]) * Number(m.ratio)) : '—');
  root.append(
    h('p', { class: 'muted' }, `Prices per million tokens for your group (list price × ${rows[0]?.ratio ?? '1'}).`),
    table([
      { label: 'Model', value: (m) => m.model },
      { label: 'Input', num: true, value: (m) => perM(m, 'input_per_mtok') },
      { label: 'Output', num: true, value: (m) => perM(m, 'output_per_mtok') },
    ], rows, { caption: 'Models and prices', empty: 'No models are served yet.' }),
  );
}

async function tokens(root) {
  const list = h('div');
  const reload = async () => {
    const rows = await api(`${API}/tokens`);
    list.replaceChildren(table([
      { label: 'Name', value: (t) => t.name },
      { label: 'Token', value: (t) => h('span', { class: 'mono' }, `${t.prefix}…`) },
      { label: 'Status', value: (t) => badge(t.status, t.status === 'active' ? 'ok' : 'warn') },
      { label: 'Expires', value: (t) => when(t.expires_at) },
      {
        label: '', value: (t) => (t.status !== 'active' ? '' : h('button', {
          type: 'button', onclick: (e) => act(e.target, () => api(`${API}/tokens/${t.id}`, { method: 'DELETE' }).then(reload), 'Token revoked'),
        }, 'Revoke')),
      },
    ], rows, { caption: 'Access tokens', empty: 'No access tokens.' }));
  };
  const mint = () => formDialog({
    title: 'New access token', submit: 'Create',
    fields: [{ name: 'name', label: 'Name', required: true }],
    onSubmit: async (v) => {
      shownOnce('Your new access token', (await api(`${API}/tokens`, { method: 'POST', body: { name: v.name } })).token);
      await reload();
    },
  });
  root.append(
    h('p', { class: 'muted' }, 'Access tokens script the System API (/api/v1, see /api/v1/docs); they cannot call models.'),
    h('div', { class: 'toolbar' }, h('button', { type: 'button', class: 'primary', onclick: mint }, 'New token')), list,
  );
  await reload();
}

async function playground(root) {
  const { render } = await import('./playground.js');
  await render(root, {
    models: async () => (await api(`${API}/models`)).map((m) => m.model),
    keyHelp: 'Temporary key created (1 hour, $1 cap): it is in your keys list',
    temporaryKey: async () => {
      const expires = new Date(Date.now() + 3600e3).toISOString();
      const name = `playground-${new Date().toISOString().slice(0, 19)}`;
      return (await api(`${API}/keys`, { method: 'POST', body: { name, expires_at: expires, spend_cap_usd: '1' } })).key;
    },
  });
}

const PAGES = {
  dashboard: ['Dashboard', dashboard],
  keys: ['API keys', keys],
  logs: ['Logs', logs],
  tasks: ['Tasks', tasks],
  topup: ['Top up', topup],
  models: ['Models & prices', models],
  tokens: ['Access tokens', tokens],
  playground: ['Playground', playground],
};

// --- boot: sign-in / sign-up, the hash router -----------------------------------------------------------------

function showSignIn(message) {
  session.csrf = null;
  $('shell').hidden = true;
  $('signin').hidden = false;
  $('signin-error').hidden = !message;
  $('signin-error').textContent = message || '';
}

function showShell(body) {
  session.csrf = body.csrf_token;
  $('whoami').textContent = `signed in as ${body.user.display_name}`;
  $('signin').hidden = true;
  $('shell').hidden = false;
  route();
}

async function post(path, body) {
  const response = await fetch(API + path, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), credentials: 'same-origin',
  });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error?.message || 'failed');
  return answer;
}

async function enter(work) {
  try {
    showShell(await work());
    $('signin-form').reset();
  } catch (error) {
    showSignIn(error.message || String(error));
  }
}

let rendering = 0;

async function route() {
  if ($('shell').hidden) return;
  const name = location.hash.replace(/^#\/?/, '').split('?')[0] || 'dashboard';
  const [title, render] = PAGES[name] || PAGES.dashboard;
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.dataset.page === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${title} · omnirelay account`;
  const ticket = ++rendering;
  const root = h('div', { 'data-page': name });
  $('main').replaceChildren(h('h1', {}, title), root);
  try {
    await render(root);
    if (ticket === rendering) root.dataset.ready = 'true';
  } catch (error) {
    if (ticket === rendering) root.replaceChildren(h('p', { class: 'error', role: 'alert' }, error.message || String(error)));
  }
}

async function boot() {
  session.onSignedOut = () => showSignIn('Your session ended: sign in again.');
  const credentials = () => ({ username: $('signin-username').value.trim(), password: $('signin-password').value });
  $('signin-form').addEventListener('submit', (event) => {
    event.preventDefault();
    enter(() => post('/auth/session', credentials()));
  });
  $('signup').addEventListener('click', () => enter(() => post('/auth/signup', {
    ...credentials(), display_name: optionalText($('signup-display').value.trim()) ?? undefined,
    invitation_code: optionalText($('signup-invite').value.trim()) ?? undefined,
  })));
  $('signout').addEventListener('click', async () => {
    await fetch(`${API}/auth/session`, { method: 'DELETE', headers: { 'x-csrf-token': session.csrf || '' } });
    location.hash = '';
    showSignIn('Signed out.');
  });
  $('nav-toggle').addEventListener('click', () => {
    const open = $('nav').classList.toggle('open');
    $('nav-toggle').setAttribute('aria-expanded', String(open));
  });
  window.addEventListener('hashchange', route);
  const response = await fetch(`${API}/auth/session`, { credentials: 'same-origin' });
  if (response.ok) showShell(await response.json());
  else showSignIn();
}

boot();

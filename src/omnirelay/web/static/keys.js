// Keys and accounts: accounts with balances, top-ups and adjustments; keys (shown once at creation, revocable,
// with limits); redemption code batches (shown once, exportable as CSV).
import {
  act, allPages, api, badge, confirmAction, copyText, csvLine, download, formDialog, h, int, listOf, optionalNumber,
  optionalText, showDialog, table, usd, when,
} from './core.js';

function moneyLimit(value) {
  return value === null || value === undefined ? 'none' : usd(value);
}

function accountForm(account, groups, reload) {
  const editing = Boolean(account);
  formDialog({
    title: editing ? `Edit account ${account.name}` : 'New account',
    submit: editing ? 'Save' : 'Create',
    fields: [
      { name: 'name', label: 'Name', value: account?.name, required: true },
      { name: 'group', label: 'Group', type: 'select', options: [...new Set(['default', ...groups.map((g) => g.name)])], value: account?.group || 'default' },
      { name: 'unlimited', label: 'Postpaid (no balance check)', type: 'checkbox', value: account?.unlimited },
      { name: 'monthly_budget_usd', label: 'Monthly budget, USD (empty: none)', type: 'number', step: '0.000001', min: 0, value: account?.monthly_budget_usd },
      { name: 'rpm', label: 'Requests per minute (empty: no limit)', type: 'number', min: 0, value: account?.rpm },
      { name: 'tpm', label: 'Tokens per minute (empty: no limit)', type: 'number', min: 0, value: account?.tpm },
    ],
    onSubmit: async (v) => {
      const body = {
        name: v.name, group: v.group, unlimited: v.unlimited, monthly_budget_usd: optionalText(v.monthly_budget_usd),
        rpm: optionalNumber(v.rpm), tpm: optionalNumber(v.tpm),
      };
      if (editing) await api(`/accounts/${account.id}`, { method: 'PATCH', body });
      else await api('/accounts', { method: 'POST', body });
      await reload();
    },
  });
}

function moneyForm(account, kind, reload) {
  const topup = kind === 'topup';
  formDialog({
    title: `${topup ? 'Top up' : 'Adjust'} ${account.name}`,
    submit: topup ? 'Top up' : 'Adjust',
    fields: [
      {
        name: 'amount_usd', label: topup ? 'Amount, USD' : 'Amount, USD (negative debits)', type: 'number', step: '0.000001',
        required: true,
      },
      { name: 'reason', label: topup ? 'Reason (optional)' : 'Reason', required: !topup },
    ],
    onSubmit: async (v) => {
      const path = topup ? 'topup' : 'adjustments';
      await api(`/accounts/${account.id}/${path}`, { method: 'POST', body: { amount_usd: v.amount_usd, reason: optionalText(v.reason) } });
      await reload();
    },
  });
}

async function ledger(account) {
  const page = await api(`/accounts/${account.id}/ledger`, { query: { limit: 100 } });
  showDialog(`Ledger of ${account.name}`, table([
    { label: 'When', value: (e) => when(e.created_at) },
    { label: 'Kind', value: (e) => e.kind },
    { label: 'Amount', value: (e) => usd(e.amount_usd), num: true },
    { label: 'Reason', value: (e) => e.reason || e.ref || '' },
  ], page.data, { empty: 'No entries yet.' }));
}

// <input type="datetime-local"> speaks local time without a zone.
function localInput(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  date.setMinutes(date.getMinutes() - date.getTimezoneOffset());
  return date.toISOString().slice(0, 16);
}

function shownOnce(title, secret, note) {
  const input = h('input', { readonly: true, value: secret, 'aria-label': title, id: 'new-secret' });
  const dialog = showDialog(title, [
    h('p', {}, note),
    h('div', { class: 'secret-box' }, input, h('button', { type: 'button', onclick: () => copyText(secret) }, 'Copy')),
  ]);
  input.select();
  return dialog;
}

function keyForm(key, accounts, reload) {
  const editing = Boolean(key);
  const fields = [
    { name: 'name', label: 'Name', value: key?.name, required: true },
    { name: 'models', label: 'Allowed models (empty: all)', value: (key?.models || []).join(', ') },
    { name: 'spend_cap_usd', label: 'Spend cap, USD (empty: none)', type: 'number', step: '0.000001', min: 0, value: key?.spend_cap_usd },
    { name: 'rpm', label: 'Requests per minute (empty: no limit)', type: 'number', min: 0, value: key?.rpm },
    { name: 'tpm', label: 'Tokens per minute (empty: no limit)', type: 'number', min: 0, value: key?.tpm },
    { name: 'max_concurrency', label: 'Concurrent calls (empty: no limit)', type: 'number', min: 1, value: key?.max_concurrency },
    { name: 'allowed_ips', label: 'Allowed IPs / CIDRs (empty: any)', value: (key?.allowed_ips || []).join(', ') },
    { name: 'expires_at', label: 'Expires (empty: never)', type: 'datetime-local', value: localInput(key?.expires_at) },
  ];
  if (!editing) {
    fields.unshift({ name: 'account', label: 'Account', type: 'select', required: true, options: accounts.map((a) => [a.id, a.name]) });
  }
  formDialog({
    title: editing ? `Limits of key ${key.name}` : 'New key',
    submit: editing ? 'Save' : 'Create key',
    fields,
    onSubmit: async (v) => {
      const models = listOf(v.models);
      const ips = listOf(v.allowed_ips);
      const body = {
        name: v.name, models: models.length ? models : null, spend_cap_usd: optionalText(v.spend_cap_usd),
        rpm: optionalNumber(v.rpm), tpm: optionalNumber(v.tpm), max_concurrency: optionalNumber(v.max_concurrency),
        allowed_ips: ips.length ? ips : null, expires_at: v.expires_at ? new Date(v.expires_at).toISOString() : null,
      };
      if (editing) {
        await api(`/keys/${key.id}`, { method: 'PATCH', body });
      } else {
        const created = await api('/keys', { method: 'POST', body: { ...body, account: Number(v.account) } });
        shownOnce('Your new key', created.key, 'Copy the key now: it is stored only as a hash and cannot be shown again.');
      }
      await reload();
    },
  });
}

function codesForm(reload) {
  formDialog({
    title: 'New redemption codes',
    submit: 'Create',
    fields: [
      { name: 'count', label: 'How many', type: 'number', min: 1, value: 10, required: true },
      { name: 'amount_usd', label: 'Value of each, USD', type: 'number', step: '0.000001', min: 0, required: true },
      { name: 'batch', label: 'Batch name (letters, digits, . _ -)', required: true, value: `batch-${new Date().toISOString().slice(0, 10)}` },
    ],
    onSubmit: async (v) => {
      const batch = await api('/redemption-codes', {
        method: 'POST', body: { count: Number(v.count), amount_usd: v.amount_usd, batch: v.batch },
      });
      const csv = [csvLine(['code', 'amount_usd', 'batch']), ...batch.codes.map((c) => csvLine([c, batch.amount_usd, batch.batch]))].join('\n');
      const area = h('textarea', { readonly: true, rows: 8, 'aria-label': 'The new codes' });
      area.value = batch.codes.join('\n');
      showDialog(`${batch.count} codes of ${usd(batch.amount_usd)} (${batch.batch})`, [
        h('p', {}, 'Save them now: only their hashes are kept.'), area,
      ], {
        buttons: [
          h('button', { type: 'button', onclick: () => copyText(batch.codes.join('\n')) }, 'Copy all'),
          h('button', { type: 'button', class: 'primary', onclick: () => download(`${batch.batch}.csv`, `${csv}\n`) }, 'Export CSV'),
        ],
      });
      await reload();
    },
  });
}

export async function render(root) {
  const accountsBox = h('div');
  const keysBox = h('div');
  const codesBox = h('div');
  let accounts = [];
  let groups = [];
  const reload = async () => {
    let keys;
    let codes;
    [accounts, groups, keys, codes] = await Promise.all([
      allPages('/accounts'), api('/groups'), allPages('/keys'), api('/redemption-codes', { query: { limit: 200 } }),
    ]);
    const names = new Map(accounts.map((a) => [a.id, a.name]));
    accountsBox.replaceChildren(table([
      { label: 'Account', value: (a) => [h('strong', {}, a.name), h('div', { class: 'muted' }, `#${a.id} · ${a.group}`)] },
      { label: 'Balance', value: (a) => (a.unlimited ? 'postpaid' : usd(a.balance_usd)), num: true },
      { label: 'Available', value: (a) => (a.available_usd === null ? '—' : usd(a.available_usd)), num: true },
      { label: 'Month spend / budget', value: (a) => `${usd(a.month_spend_usd)} / ${moneyLimit(a.monthly_budget_usd)}`, num: true },
      { label: 'RPM / TPM', value: (a) => `${a.rpm ?? '∞'} / ${a.tpm ?? '∞'}`, num: true },
      { label: 'Keys', value: (a) => int(a.active_keys), num: true },
      { label: 'Status', value: (a) => (a.disabled ? badge('disabled', 'bad') : badge('active', 'ok')) },
      {
        label: 'Actions',
        value: (a) => h('div', { class: 'actions' },
          h('button', { class: 'small', type: 'button', 'aria-label': `Top up ${a.name}`, onclick: () => moneyForm(a, 'topup', reload) }, 'Top up'),
          h('button', { class: 'small', type: 'button', 'aria-label': `Adjust ${a.name}`, onclick: () => moneyForm(a, 'adjust', reload) }, 'Adjust'),
          h('button', { class: 'small', type: 'button', 'aria-label': `Edit ${a.name}`, onclick: () => accountForm(a, groups, reload) }, 'Edit'),
          h('button', { class: 'small', type: 'button', 'aria-label': `Ledger of ${a.name}`, onclick: (e) => act(e.currentTarget, () => ledger(a)) }, 'Ledger'),
          h('button', {
            class: 'small', type: 'button', 'aria-label': `${a.disabled ? 'Enable' : 'Disable'} ${a.name}`,
            onclick: (e) => act(e.currentTarget, async () => {
              await api(`/accounts/${a.id}/${a.disabled ? 'enable' : 'disable'}`, { method: 'POST' });
              await reload();
            }),
          }, a.disabled ? 'Enable' : 'Disable')),
      },
    ], accounts, { empty: 'No accounts yet.' }));
    keysBox.replaceChildren(table([
      { label: 'Key', value: (k) => [h('strong', {}, k.name), h('div', { class: 'mono muted' }, `${k.prefix}…`)] },
      { label: 'Account', value: (k) => names.get(k.account_id) || `#${k.account_id}` },
      { label: 'Status', value: (k) => badge(k.status, k.status === 'active' ? 'ok' : 'bad') },
      { label: 'Spent / cap', value: (k) => `${usd(k.spent_usd)} / ${moneyLimit(k.spend_cap_usd)}`, num: true },
      { label: 'Models', value: (k) => (k.models ? k.models.join(', ') : 'all') },
      { label: 'RPM / TPM', value: (k) => `${k.rpm ?? '∞'} / ${k.tpm ?? '∞'}`, num: true },
      { label: 'Expires', value: (k) => (k.expires_at ? when(k.expires_at) : 'never') },
      {
        label: 'Actions',
        value: (k) => (k.status === 'revoked' ? h('span', { class: 'muted' }, when(k.revoked_at)) : h('div', { class: 'actions' },
          h('button', { class: 'small', type: 'button', 'aria-label': `Limits of ${k.name}`, onclick: () => keyForm(k, accounts, reload) }, 'Limits'),
          h('button', {
            class: 'small danger', type: 'button', 'aria-label': `Revoke ${k.name}`,
            onclick: async (e) => {
              const button = e.currentTarget;
              if (!(await confirmAction(`Revoke key ${k.name}? Every call with it is refused from now on.`))) return;
              await act(button, async () => {
                await api(`/keys/${k.id}/revoke`, { method: 'POST' });
                await reload();
              }, `${k.name} revoked`);
            },
          }, 'Revoke'))),
      },
    ], keys, { empty: 'No keys yet.' }));
    codesBox.replaceChildren(table([
      { label: 'Code', value: (c) => h('span', { class: 'mono' }, `${c.prefix}…`) },
      { label: 'Batch', value: (c) => c.batch },
      { label: 'Value', value: (c) => usd(c.amount_usd), num: true },
      { label: 'Created', value: (c) => when(c.created_at) },
      { label: 'Redeemed', value: (c) => (c.redeemed_at ? `${when(c.redeemed_at)} by #${c.redeemed_by}` : badge('open', 'ok')) },
    ], codes.data, { empty: 'No redemption codes yet.' }));
  };
  const exportCodes = async () => {
    const rows = await allPages('/redemption-codes');
    const lines = [csvLine(['prefix', 'batch', 'amount_usd', 'created_at', 'redeemed_at', 'redeemed_by']),
      ...rows.map((c) => csvLine([c.prefix, c.batch, c.amount_usd, c.created_at, c.redeemed_at, c.redeemed_by]))];
    download('redemption-codes.csv', `${lines.join('\n')}\n`);
  };
  root.append(
    h('h2', {}, 'Accounts'),
    h('div', { class: 'toolbar' }, h('button', { type: 'button', class: 'primary', onclick: () => accountForm(null, groups, reload) }, 'New account')),
    accountsBox,
    h('h2', {}, 'Keys'),
    h('div', { class: 'toolbar' }, h('button', {
      type: 'button', class: 'primary',
      onclick: () => (accounts.length ? keyForm(null, accounts, reload) : accountForm(null, groups, reload)),
    }, 'New key')),
    keysBox,
    h('h2', {}, 'Redemption codes'),
    h('div', { class: 'toolbar' },
      h('button', { type: 'button', class: 'primary', onclick: () => codesForm(reload) }, 'New batch'),
      h('button', { type: 'button', onclick: (e) => act(e.currentTarget, exportCodes) }, 'Export list (CSV)')),
    codesBox,
  );
  await reload();
}

// Prices and groups: the effective price table (shipped, config or override), overrides edited as JSON; group
// multipliers.
import { act, api, badge, confirmAction, formDialog, h, table } from './core.js';

const PAGE = 40;
const RATE_LABELS = {
  input_per_mtok: 'in', output_per_mtok: 'out', cached_input_per_mtok: 'cached in', cache_write_per_mtok: 'cache write',
  per_image: 'image', per_task: 'task', per_request: 'request', per_second: 'second', per_1k_chars: '1k chars',
};

// The rates of an entry in a line: token rates per million tokens; tiered rates (per size, mode...) by default.
function summary(price) {
  if (price.free) return 'free';
  const parts = [];
  for (const [name, label] of Object.entries(RATE_LABELS)) {
    const value = price[name];
    if (value === undefined) continue;
    const amount = typeof value === 'object' ? value.default ?? Object.values(value)[0] : value;
    if (Number(amount) === 0 && typeof value !== 'object') continue; // a rate that does not apply
    parts.push(`${label} $${amount}${typeof value === 'object' ? '+' : ''}`);
  }
  return parts.join(' · ') || '$0';
}

function priceForm(entry, reload) {
  formDialog({
    title: entry ? `Price of ${entry.model}` : 'New price',
    submit: 'Save override',
    fields: [
      { name: 'model', label: 'Model', value: entry?.model, required: true },
      {
        name: 'spec', label: 'Price (JSON, USD; token rates per million tokens)', type: 'textarea', required: true,
        value: JSON.stringify(entry?.price || { input_per_mtok: '0.15', output_per_mtok: '0.60' }, null, 2),
        help: 'Replaces the whole entry, e.g. {"input_per_mtok": "0.15", "output_per_mtok": "0.60"} or {"per_image": "0.04"}.',
      },
    ],
    onSubmit: async (v) => {
      let spec;
      try {
        spec = JSON.parse(v.spec);
      } catch (error) {
        throw new Error(`The price is not valid JSON: ${error.message}`);
      }
      await api(`/prices/${encodeURIComponent(v.model)}`, { method: 'PUT', body: spec });
      await reload();
    },
  });
}

function groupForm(group, reload) {
  formDialog({
    title: group ? `Group ${group.name}` : 'New group',
    fields: [
      { name: 'name', label: 'Name', value: group?.name, required: true },
      { name: 'multiplier', label: 'Price multiplier', type: 'number', step: '0.000001', min: 0, value: group?.multiplier ?? '1', required: true },
    ],
    onSubmit: async (v) => {
      await api(`/groups/${encodeURIComponent(v.name)}`, { method: 'PUT', body: { multiplier: v.multiplier } });
      await reload();
    },
  });
}

export async function render(root) {
  const groupsBox = h('div');
  const pricesBox = h('div');
  const filter = h('input', { id: 'price-filter', type: 'search', placeholder: 'gpt-4o, claude…' });
  let prices = { data: [], aliases: {} };
  let showAll = false;
  const drawPrices = () => {
    const term = filter.value.trim().toLowerCase();
    const matching = prices.data.filter((p) => !term || p.model.toLowerCase().includes(term));
    // Overrides first: they are what an operator changed.
    matching.sort((a, b) => (a.source === 'override' ? 0 : 1) - (b.source === 'override' ? 0 : 1) || a.model.localeCompare(b.model));
    const rows = showAll ? matching : matching.slice(0, PAGE);
    const more = matching.length > rows.length
      ? h('button', { type: 'button', onclick: () => { showAll = true; drawPrices(); } }, `Show all ${matching.length} models`)
      : null;
    pricesBox.replaceChildren(more ? h('p', { class: 'muted' }, `${rows.length} of ${matching.length} models `, more) : '', table([
      { label: 'Model', value: (p) => h('span', { class: 'mono' }, p.model) },
      { label: 'Source', value: (p) => badge(p.source, p.source === 'override' ? 'warn' : 'ok') },
      { label: 'Price (USD)', value: (p) => summary(p.price) },
      {
        label: 'Actions',
        value: (p) => h('div', { class: 'actions' },
          h('button', { class: 'small', type: 'button', 'aria-label': `Edit price of ${p.model}`, onclick: () => priceForm(p, reload) }, 'Edit'),
          p.source === 'override' ? h('button', {
            class: 'small', type: 'button', 'aria-label': `Reset price of ${p.model}`,
            onclick: (e) => act(e.currentTarget, async () => {
              await api(`/prices/${encodeURIComponent(p.model)}`, { method: 'DELETE' });
              await reload();
            }, `${p.model}: override dropped`),
          }, 'Reset') : null),
      },
    ], rows, { empty: 'No model matches.' }));
  };
  const reload = async () => {
    const [groups, table_] = await Promise.all([api('/groups'), api('/prices')]);
    prices = table_;
    groupsBox.replaceChildren(table([
      { label: 'Group', value: (g) => g.name },
      { label: 'Multiplier', value: (g) => `× ${g.multiplier}`, num: true },
      { label: 'Accounts', value: (g) => g.accounts, num: true },
      {
        label: 'Actions',
        value: (g) => h('div', { class: 'actions' },
          h('button', { class: 'small', type: 'button', 'aria-label': `Edit group ${g.name}`, onclick: () => groupForm(g, reload) }, 'Edit'),
          g.name !== 'default' && !g.accounts ? h('button', {
            class: 'small danger', type: 'button', 'aria-label': `Delete group ${g.name}`,
            onclick: async (e) => {
              const button = e.currentTarget;
              if (!(await confirmAction(`Delete group ${g.name}?`))) return;
              await act(button, async () => {
                await api(`/groups/${encodeURIComponent(g.name)}`, { method: 'DELETE' });
                await reload();
              });
            },
          }, 'Delete') : null),
      },
    ], groups, { empty: 'Only the default group (× 1).' }));
    drawPrices();
  };
  filter.addEventListener('input', drawPrices);
  root.append(
    h('h2', {}, 'Groups'),
    h('div', { class: 'toolbar' }, h('button', { type: 'button', class: 'primary', onclick: () => groupForm(null, reload) }, 'New group')),
    groupsBox,
    h('h2', {}, 'Prices'),
    h('div', { class: 'toolbar' },
      h('div', { class: 'grow' }, h('label', { for: 'price-filter' }, 'Filter models'), filter),
      h('button', { type: 'button', class: 'primary', onclick: () => priceForm(null, reload) }, 'New price')),
    pricesBox,
  );
  await reload();
}

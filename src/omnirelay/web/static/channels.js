// Channels: list with status, breaker, keys, last check; create, edit, disable/enable, test now, delete.
import { act, api, badge, confirmAction, formDialog, h, listOf, ms, showDialog, table, when } from './core.js';

const TYPES = ['openai', 'openai-compatible', 'anthropic', 'gemini', 'deepseek', 'midjourney', 'suno', 'kling', 'video',
  'replicate', 'fal'];

function mapText(map) {
  return Object.entries(map || {}).map(([from, to]) => `${from}=${to}`).join('\n');
}

function mapOf(text) {
  const map = {};
  for (const line of text.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const [from, ...rest] = line.split('=');
    if (!rest.length) throw new Error(`model map line "${line}" needs the form public=upstream`);
    map[from.trim()] = rest.join('=').trim();
  }
  return map;
}

function channelForm(channel, onSaved) {
  const editing = Boolean(channel);
  formDialog({
    title: editing ? `Edit channel ${channel.name}` : 'New channel',
    submit: editing ? 'Save' : 'Create',
    fields: [
      { name: 'name', label: 'Name', value: channel?.name, required: true },
      { name: 'type', label: 'Type', type: 'select', options: TYPES, value: channel?.type || 'openai' },
      {
        name: 'base_url', label: 'Base URL', value: channel?.base_url, required: true, type: 'url',
        placeholder: 'https://api.openai.com/v1', help: 'As the vendor\'s official SDK takes it.',
      },
      {
        name: 'api_keys', label: 'Upstream API keys (one per line)', type: 'textarea', required: !editing,
        help: editing ? `Leave empty to keep the ${channel.key_count ?? 0} stored key(s); keys are never shown again.`
          : 'Stored encrypted; never shown again.',
      },
      { name: 'models', label: 'Models (comma or line separated)', type: 'textarea', value: (channel?.models || []).join('\n') },
      {
        name: 'model_map', label: 'Model map (public=upstream, one per line)', type: 'textarea', value: mapText(channel?.model_map),
      },
      { name: 'priority', label: 'Priority (lower tier tried first)', type: 'number', value: channel?.priority ?? 0 },
      { name: 'weight', label: 'Weight', type: 'number', min: 0, value: channel?.weight ?? 1 },
    ],
    onSubmit: async (values) => {
      const body = {
        name: values.name, type: values.type, base_url: values.base_url, models: listOf(values.models),
        model_map: mapOf(values.model_map), priority: Number(values.priority || 0), weight: Number(values.weight || 0),
      };
      const keys = values.api_keys.split('\n').map((k) => k.trim()).filter(Boolean);
      if (keys.length || !editing) body.api_keys = keys;
      if (editing) await api(`/channels/${channel.id}`, { method: 'PATCH', body });
      else await api('/channels', { method: 'POST', body });
      await onSaved();
    },
  });
}

function checkResults(channel, results) {
  showDialog(`Test of ${channel.name}`, table([
    { label: 'Model', value: (r) => r.model },
    { label: 'Key', value: (r) => h('span', { class: 'mono' }, r.key_id || '—') },
    { label: 'Result', value: (r) => (r.ok ? badge('ok', 'ok') : badge(r.error_code || `HTTP ${r.status_code}`, 'bad')) },
    { label: 'Latency', value: (r) => ms(r.latency_ms), num: true },
    { label: 'Message', value: (r) => r.message || '' },
  ], results, { empty: 'The channel has no models to test.' }));
}

export async function render(root) {
  const list = h('div');
  const reload = async () => {
    const [channels, checks] = await Promise.all([api('/channels'), api('/channel-checks/latest')]);
    const last = new Map(checks.map((c) => [c.channel_id, c]));
    list.replaceChildren(table([
      { label: 'Name', value: (c) => [h('strong', {}, c.name), c.from_config ? h('div', { class: 'muted' }, 'from config file') : null] },
      { label: 'Type', value: (c) => c.type },
      { label: 'Models', value: (c) => c.models.join(', ') || '—' },
      {
        label: 'Status',
        value: (c) => (c.enabled ? badge('enabled', 'ok')
          : [badge('disabled', 'bad'), c.disabled_reason ? h('div', { class: 'muted' }, c.disabled_reason) : null]),
      },
      { label: 'Breaker', value: (c) => badge(c.breaker, c.breaker === 'closed' ? 'ok' : 'warn') },
      {
        label: 'Keys',
        value: (c) => [
          `${c.active_key_count ?? '?'} / ${c.key_count ?? '?'}`,
          // Keys the gateway (or an admin) took out of routing: why, and a way back.
          (c.keys || []).filter((k) => !k.enabled).map((k) => h('div', { class: 'muted' },
            h('span', { class: 'mono' }, k.masked), `: ${k.disabled_reason || 'disabled'} `,
            h('button', {
              class: 'small', type: 'button', 'aria-label': `Enable key ${k.masked} of ${c.name}`,
              onclick: (e) => act(e.currentTarget, async () => {
                await api(`/channels/${c.id}/keys/${k.id}/enable`, { method: 'POST' });
                await reload();
              }, 'Key enabled'),
            }, 'Enable'))),
        ],
      },
      { label: 'Prio / weight', value: (c) => `${c.priority} / ${c.weight}`, num: true },
      {
        label: 'Last test',
        value: (c) => {
          const check = last.get(c.id);
          return check ? [check.ok ? badge('ok', 'ok') : badge('failed', 'bad'), ` ${ms(check.latency_ms)}`,
            h('div', { class: 'muted' }, when(check.checked_at))] : h('span', { class: 'muted' }, 'never');
        },
      },
      {
        label: 'Actions',
        value: (c) => h('div', { class: 'actions' },
          h('button', {
            class: 'small', type: 'button', 'aria-label': `Test ${c.name} now`,
            onclick: (e) => act(e.currentTarget, async () => {
              checkResults(c, await api(`/channels/${c.id}/test`, { method: 'POST' }));
              await reload();
            }),
          }, 'Test now'),
          c.from_config ? null : h('button', {
            class: 'small', type: 'button', 'aria-label': `Edit ${c.name}`, onclick: () => channelForm(c, reload),
          }, 'Edit'),
          c.enabled
            ? h('button', {
              class: 'small', type: 'button', 'aria-label': `Disable ${c.name}`,
              onclick: () => formDialog({
                title: `Disable ${c.name}`, submit: 'Disable',
                fields: [{ name: 'reason', label: 'Reason (optional)' }],
                onSubmit: async (v) => {
                  await api(`/channels/${c.id}/disable`, { method: 'POST', body: { reason: v.reason || null } });
                  await reload();
                },
              }),
            }, 'Disable')
            : h('button', {
              class: 'small', type: 'button', 'aria-label': `Enable ${c.name}`,
              onclick: (e) => act(e.currentTarget, async () => {
                await api(`/channels/${c.id}/enable`, { method: 'POST' });
                await reload();
              }, `${c.name} enabled`),
            }, 'Enable'),
          c.from_config ? null : h('button', {
            class: 'small danger', type: 'button', 'aria-label': `Delete ${c.name}`,
            onclick: async (e) => {
              const button = e.currentTarget;
              if (!(await confirmAction(`Delete channel ${c.name}? Requests stop going to it at once.`))) return;
              await act(button, async () => {
                await api(`/channels/${c.id}`, { method: 'DELETE' });
                await reload();
              }, `${c.name} deleted`);
            },
          }, 'Delete')),
      },
    ], channels, { empty: 'No channels yet.' }));
  };
  root.append(h('div', { class: 'toolbar' },
    h('button', { type: 'button', class: 'primary', onclick: () => channelForm(null, reload) }, 'New channel'),
    h('button', { type: 'button', onclick: (e) => act(e.currentTarget, reload) }, 'Refresh')), list);
  await reload();
}

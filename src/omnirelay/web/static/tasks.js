// Tasks: async generations (images, video, music) with status, progress, a preview of the result and the cost.
import { ApiError, allPages, api, badge, h, int, table, usd, when } from './core.js';

const STATUSES = ['', 'SUBMITTED', 'QUEUED', 'IN_PROGRESS', 'SUCCESS', 'FAILURE'];

function statusBadge(status) {
  return badge(status, status === 'SUCCESS' ? 'ok' : status === 'FAILURE' ? 'bad' : 'warn');
}

// Result URLs come from upstream vendors: only web URLs (and the gateway's own paths) become links or sources.
function safeUrl(url) {
  try {
    const parsed = new URL(url, location.origin);
    return ['http:', 'https:'].includes(parsed.protocol) ? parsed.href : null;
  } catch {
    return null;
  }
}

function preview(results) {
  const image = safeUrl(results.images?.[0]?.url);
  const video = safeUrl(results.videos?.[0]?.url);
  const audio = safeUrl(results.audio?.[0]?.url);
  // Video and audio first: their tasks often carry a cover image too.
  if (video) return h('video', { src: video, controls: true, preload: 'metadata', 'aria-label': 'result video' });
  if (audio) return h('audio', { src: audio, controls: true, preload: 'none', 'aria-label': 'result audio' });
  if (image) return h('a', { href: image, target: '_blank', rel: 'noopener noreferrer' }, h('img', { src: image, alt: 'result image', loading: 'lazy' }));
  if (results.text) return h('span', {}, results.text.slice(0, 120));
  return h('span', { class: 'muted' }, '—');
}

export async function render(root) {
  const status = h('select', { id: 'task-status' }, STATUSES.map((s) => h('option', { value: s }, s || 'any')));
  const list = h('div', { 'aria-live': 'polite' });
  const pager = h('div', { class: 'toolbar' });
  let cursors = [null];
  const accounts = new Map((await allPages('/accounts')).map((a) => [a.id, a.name]));
  const load = async () => {
    let page;
    try {
      page = await api('/tasks', { query: { status: status.value, limit: 50, cursor: cursors[cursors.length - 1] } });
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        list.replaceChildren(h('p', { class: 'card' }, 'The task engine is not available on this gateway.'));
        return;
      }
      throw error;
    }
    list.replaceChildren(table([
      { label: 'Task', value: (t) => [h('span', { class: 'mono' }, t.id), h('div', { class: 'muted' }, `${t.vendor} · ${t.action}`)] },
      { label: 'Model', value: (t) => t.model },
      { label: 'Account', value: (t) => accounts.get(t.account_id) || `#${t.account_id}` },
      { label: 'Status', value: (t) => [statusBadge(t.status), t.error ? h('div', { class: 'muted' }, t.error.slice(0, 120)) : null] },
      {
        label: 'Progress',
        value: (t) => h('div', {
          class: 'progress', role: 'progressbar', 'aria-valuenow': t.progress, 'aria-valuemin': 0, 'aria-valuemax': 100,
          'aria-label': `${t.progress}%`,
        }, h('div', { style: `width:${t.progress}%` })),
      },
      { label: 'Result', value: (t) => h('div', { class: 'preview' }, preview(t.results)) },
      { label: 'Cost', value: (t) => [usd(t.cost_usd), h('div', { class: 'muted' }, t.billing)], num: true },
      { label: 'Submitted', value: (t) => when(t.submitted_at) },
    ], page.data, { empty: 'No tasks yet.' }));
    pager.replaceChildren(
      h('button', { type: 'button', disabled: cursors.length === 1, onclick: () => { cursors.pop(); load(); } }, '← Newer'),
      h('button', { type: 'button', disabled: !page.next_cursor, onclick: () => { cursors.push(page.next_cursor); load(); } }, 'Older →'),
      h('span', { class: 'muted' }, `Page ${int(cursors.length)}`));
  };
  status.addEventListener('change', () => { cursors = [null]; load(); });
  root.append(h('div', { class: 'toolbar' }, h('div', {}, h('label', { for: 'task-status' }, 'Status'), status),
    h('button', { type: 'button', onclick: () => load() }, 'Refresh')), pager, list);
  await load();
}

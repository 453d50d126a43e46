// Playground: chat with any model through the gateway itself (/v1/chat/completions, streamed), as a client would.
// It needs a client key: paste one, or create a temporary one (1 hour, $5 cap, on the postpaid account
// "console-playground"). The key lives in this tab's sessionStorage only.
import { act, allPages, api, h, int, ms, toast } from './core.js';

const STORE = 'omnirelay.playground.key';
const ACCOUNT = 'console-playground';

async function temporaryKey() {
  const accounts = await allPages('/accounts');
  let account = accounts.find((a) => a.name === ACCOUNT);
  if (!account) account = await api('/accounts', { method: 'POST', body: { name: ACCOUNT, unlimited: true } });
  const expires = new Date(Date.now() + 3600e3).toISOString();
  const created = await api('/keys', {
    method: 'POST',
    body: {
      account: account.id, name: `playground-${new Date().toISOString().slice(0, 19)}`, expires_at: expires,
      spend_cap_usd: '5', label: 'temporary key of the console playground',
    },
  });
  return created.key;
}

async function adminModels() {
  const channels = await api('/channels');
  return [...new Set(channels.filter((c) => c.enabled).flatMap((c) => [...c.models, ...Object.keys(c.model_map)]))].sort();
}

// Server-sent events from a fetch body: yields each `data:` payload.
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
      const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trimStart()).join('\n');
      if (data) yield data;
    }
  }
}

// options (the account console): models() lists what may be called, temporaryKey() mints a key, keyHelp is the
// notice shown when it did. Without them: the admin's view (channels' models, a key of the playground account).
export async function render(root, options = {}) {
  const keyInput = h('input', { id: 'pg-key', type: 'password', autocomplete: 'off', placeholder: 'sk-…', value: sessionStorage.getItem(STORE) || '' });
  const model = h('select', { id: 'pg-model' });
  const system = h('input', { id: 'pg-system', placeholder: 'You are a helpful assistant.' });
  const prompt = h('textarea', { id: 'pg-prompt', rows: 3, placeholder: 'Say hello' });
  const log = h('div', { class: 'chat-log card', 'aria-live': 'polite', 'aria-label': 'Conversation' });
  const stats = h('p', { class: 'muted', id: 'pg-stats' });
  const send = h('button', { type: 'submit', class: 'primary' }, 'Send');
  const stop = h('button', { type: 'button', disabled: true }, 'Stop');
  const history = [];
  let controller = null;

  const models = options.models ? await options.models() : await adminModels();
  model.replaceChildren(...(models.length ? models : ['']).map((m) => h('option', { value: m }, m || 'no models: add a channel')));

  keyInput.addEventListener('change', () => sessionStorage.setItem(STORE, keyInput.value.trim()));
  const makeKey = h('button', {
    type: 'button',
    onclick: (e) => act(e.currentTarget, async () => {
      keyInput.value = await (options.temporaryKey || temporaryKey)();
      sessionStorage.setItem(STORE, keyInput.value);
    }, options.keyHelp || 'Temporary key created (1 hour, $5 cap)'),
  }, 'Create temporary key');
  const clear = h('button', { type: 'button', onclick: () => { history.length = 0; log.replaceChildren(); stats.textContent = ''; } }, 'Clear');
  stop.addEventListener('click', () => controller?.abort());

  const form = h('form', { class: 'chat' },
    h('div', { class: 'grid2' },
      h('div', {}, h('label', { for: 'pg-key' }, 'Client key'), h('div', { class: 'secret-box' }, keyInput, makeKey)),
      h('div', {}, h('label', { for: 'pg-model' }, 'Model'), model)),
    h('div', {}, h('label', { for: 'pg-system' }, 'System prompt (optional)'), system),
    log,
    h('div', {}, h('label', { for: 'pg-prompt' }, 'Message'), prompt),
    h('div', { class: 'toolbar' }, send, stop, clear, stats));

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const key = keyInput.value.trim();
    const text = prompt.value.trim();
    if (!key) { toast('Paste a client key or create a temporary one first', 'bad'); keyInput.focus(); return; }
    if (!text) return;
    history.push({ role: 'user', content: text });
    log.append(h('div', { class: 'msg user' }, text));
    prompt.value = '';
    const answer = h('div', { class: 'msg assistant', 'data-role': 'assistant' });
    log.append(answer);
    controller = new AbortController();
    send.disabled = true;
    stop.disabled = false;
    const started = performance.now();
    let firstToken = null;
    let usage = null;
    try {
      const messages = system.value.trim() ? [{ role: 'system', content: system.value.trim() }, ...history] : history;
      const response = await fetch('/v1/chat/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify({ model: model.value, messages, stream: true, stream_options: { include_usage: true } }),
        signal: controller.signal,
      });
      if (!response.ok) {
        let message = `${response.status} ${response.statusText}`;
        try { message = (await response.json()).error?.message || message; } catch { /* keep the status */ }
        throw new Error(message);
      }
      for await (const data of events(response)) {
        if (data === '[DONE]') break;
        const chunk = JSON.parse(data);
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) {
          firstToken ??= performance.now();
          answer.textContent += delta;
          log.scrollTop = log.scrollHeight;
        }
        if (chunk.usage) usage = chunk.usage;
      }
      history.push({ role: 'assistant', content: answer.textContent });
      const parts = [`${ms(performance.now() - started)} total`];
      if (firstToken) parts.push(`${ms(firstToken - started)} to first token`);
      if (usage) parts.push(`${int(usage.prompt_tokens)} in / ${int(usage.completion_tokens)} out tokens`);
      stats.textContent = parts.join(' · ');
    } catch (error) {
      history.pop();
      answer.classList.add('error');
      answer.textContent = error.name === 'AbortError' ? `${answer.textContent} [stopped]` : `Error: ${error.message}`;
    } finally {
      send.disabled = false;
      stop.disabled = true;
      controller = null;
    }
  });
  root.append(h('p', { class: 'muted' },
    'Chat through this gateway with a client key, exactly as an application would; the call is billed and logged like any other.'),
  form);
}

// Shared pieces of the console: the admin API client (cookie session + CSRF header), DOM helpers, formatting,
// dialogs and tables. No framework: pages build their DOM with h() and re-render on change.

export const session = { csrf: null, subject: null, onSignedOut: null };

export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

function urlFor(path, query) {
  // '/api/...' paths are the System API (the account console); other bare paths are the admin API.
  const own = path.startsWith('/admin') || path.startsWith('/api/');
  const url = new URL(path.startsWith('/') && !own ? '/admin/api' + path : path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(name, value);
  }
  return url;
}

// Every change carries the session's CSRF token; reads go with the cookie alone.
export async function api(path, { method = 'GET', body, query } = {}) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && session.csrf) headers['x-csrf-token'] = session.csrf;
  const response = await fetch(urlFor(path, query), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
  });
  if (response.status === 401 && session.onSignedOut) session.onSignedOut();
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    let field = null;
    try {
      const error = (await response.json()).error;
      message = error.message || message;
      field = error.field;
    } catch { /* not JSON: keep the status line */ }
    throw new ApiError(response.status, message, field);
  }
  if (response.status === 204) return null;
  return response.json();
}

export function apiUrl(path, query) {
  return urlFor(path, query).toString();
}

// h('button', {class: 'primary', onclick: fn}, 'Save'): attributes, properties and event handlers in one object.
export function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value);
    else if (name === 'class') element.className = value;
    else if (name === 'style') element.style.cssText = value; // CSSOM, which the page's CSP allows (attributes not)
    else if (name === 'value' || name === 'checked' || name === 'selected') element[name] = value;
    else element.setAttribute(name, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

// SVG elements need their namespace.
export function s(tag, attrs, ...children) {
  const element = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) element.setAttribute(name, String(value));
  }
  append(element, children);
  return element;
}

// --- formatting ----------------------------------------------------------------------------------------------

// Money as the API gives it (decimal strings, 6 places): cents always, more digits only when they carry value.
export function usd(value) {
  if (value === null || value === undefined) return '—';
  const number = Number(value);
  const sign = number < 0 ? '-' : '';
  const digits = Math.abs(number).toFixed(6).replace(/0{1,4}$/, '');
  return `${sign}$${Number(digits) >= 1000 ? Number(digits).toLocaleString('en-US', { minimumFractionDigits: 2 }) : digits}`;
}

export function int(value) {
  if (value === null || value === undefined) return '—';
  return Number(value).toLocaleString('en-US');
}

export function ms(value) {
  if (value === null || value === undefined) return '—';
  return value >= 1000 ? (value / 1000).toFixed(2) + ' s' : Math.round(value) + ' ms';
}

export function when(iso) {
  if (!iso) return '—';
  const date = new Date(iso);
  return date.toLocaleString('en-GB', { dateStyle: 'short', timeStyle: 'medium' });
}

export function badge(text, kind) {
  return h('span', { class: `badge ${kind}` }, text);
}

// --- feedback ------------------------------------------------------------------------------------------------

export function toast(message, kind = '') {
  const element = h('div', { class: `toast ${kind}` }, message);
  document.getElementById('toasts').append(element);
  setTimeout(() => element.remove(), kind === 'bad' ? 7000 : 3500);
}

// Run an action from a button: disabled while it runs, errors shown, never an unhandled rejection.
export async function act(button, work, done) {
  if (button) button.disabled = true;
  try {
    const result = await work();
    if (done) toast(done);
    return result;
  } catch (error) {
    toast(error.message || String(error), 'bad');
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

// --- dialogs -------------------------------------------------------------------------------------------------

let dialogIds = 0;

export function showDialog(title, content, { buttons } = {}) {
  const id = `dialog-title-${++dialogIds}`;
  const close = h('button', { type: 'button', onclick: () => dialog.close() }, 'Close');
  const dialog = h('dialog', { 'aria-labelledby': id }, h('h2', { id }, title), content,
    h('div', { class: 'buttons' }, buttons || [], close));
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

// fields: [{name, label, type: text|number|textarea|select|checkbox|datetime-local|password, value, options,
// required, help, placeholder}]. onSubmit(values) may throw an ApiError: it is shown in the form, which stays open.
export function formDialog({ title, fields, submit = 'Save', onSubmit }) {
  const id = `dialog-title-${++dialogIds}`;
  const error = h('p', { class: 'error', role: 'alert', hidden: true });
  const inputs = {};
  const rows = fields.map((field) => {
    const inputId = `f-${dialogIds}-${field.name}`;
    let input;
    if (field.type === 'textarea') {
      input = h('textarea', { id: inputId, name: field.name, placeholder: field.placeholder, required: field.required });
      input.value = field.value ?? '';
    } else if (field.type === 'select') {
      input = h('select', { id: inputId, name: field.name, required: field.required },
        field.options.map((option) => {
          const [value, label] = Array.isArray(option) ? option : [option, option];
          return h('option', { value, selected: String(value) === String(field.value ?? '') }, label);
        }));
    } else if (field.type === 'checkbox') {
      input = h('input', { id: inputId, name: field.name, type: 'checkbox', checked: Boolean(field.value) });
    } else {
      input = h('input', {
        id: inputId, name: field.name, type: field.type || 'text', value: field.value ?? '', placeholder: field.placeholder,
        required: field.required, step: field.step, min: field.min, list: field.list,
      });
    }
    inputs[field.name] = input;
    return [h('label', { for: inputId }, field.label), input, field.help ? h('p', { class: 'help' }, field.help) : null];
  });
  const save = h('button', { type: 'submit', class: 'primary' }, submit);
  const cancel = h('button', { type: 'button', onclick: () => dialog.close() }, 'Cancel');
  const form = h('form', { method: 'dialog' }, rows, error, h('div', { class: 'buttons' }, cancel, save));
  const dialog = h('dialog', { 'aria-labelledby': id }, h('h2', { id }, title), form);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const values = {};
    for (const [name, input] of Object.entries(inputs)) {
      values[name] = input.type === 'checkbox' ? input.checked : input.value.trim();
    }
    save.disabled = true;
    error.hidden = true;
    try {
      await onSubmit(values);
      dialog.close();
    } catch (failure) {
      error.textContent = failure.message || String(failure);
      error.hidden = false;
      const bad = failure.field && inputs[failure.field.split('.')[0]];
      if (bad) bad.focus();
    } finally {
      save.disabled = false;
    }
  });
  dialog.addEventListener('close', () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

export async function confirmAction(message) {
  return new Promise((resolve) => {
    const yes = h('button', { type: 'button', class: 'primary', onclick: () => { resolve(true); dialog.close(); } }, 'Yes');
    const dialog = showDialog('Please confirm', h('p', {}, message), { buttons: [yes] });
    dialog.addEventListener('close', () => resolve(false));
  });
}

// --- tables --------------------------------------------------------------------------------------------------

// columns: [{label, value: row => node|string, num: bool}]
export function table(columns, rows, { caption, empty = 'Nothing here yet.', onRowClick, rowLabel } = {}) {
  if (!rows.length) return h('div', { class: 'table-wrap' }, h('p', { class: 'empty' }, empty));
  const head = h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null }, c.label)));
  const body = rows.map((row) => {
    const tr = h('tr', {}, columns.map((c) => h('td', { class: c.num ? 'num' : null }, c.value(row))));
    if (onRowClick) {
      tr.classList.add('clickable');
      tr.tabIndex = 0;
      if (rowLabel) tr.setAttribute('aria-label', rowLabel(row));
      tr.addEventListener('click', (event) => { if (!event.target.closest('button, a')) onRowClick(row); });
      tr.addEventListener('keydown', (event) => { if (event.key === 'Enter') onRowClick(row); });
    }
    return tr;
  });
  return h('div', { class: 'table-wrap' },
    h('table', {}, caption ? h('caption', { class: 'sr-only' }, caption) : null, h('thead', {}, head), h('tbody', {}, body)));
}

// Text lists in forms: "a, b" or one per line.
export function listOf(text) {
  return text.split(/[\n,]/).map((item) => item.trim()).filter(Boolean);
}

// Empty form fields mean "no limit" (null); numbers as numbers.
export function optionalNumber(text) {
  return text === '' ? null : Number(text);
}

export function optionalText(text) {
  return text === '' ? null : text;
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Clipboard API needs a secure context (https or localhost): fall back to a selection copy.
    const area = h('textarea', { 'aria-hidden': 'true' });
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand('copy');
    area.remove();
  }
  toast('Copied');
}

export function download(filename, text, type = 'text/csv') {
  const link = h('a', { href: URL.createObjectURL(new Blob([text], { type })), download: filename });
  document.body.append(link);
  link.click();
  link.remove();
}

export function csvLine(values) {
  return values.map((value) => {
    const text = value === null || value === undefined ? '' : String(value);
    return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  }).join(',');
}

// Every page of a cursor-paged list (small lists: accounts for a select, channels' models).
export async function allPages(path, query = {}) {
  const rows = [];
  let cursor = null;
  do {
    const page = await api(path, { query: { ...query, limit: 1000, cursor } });
    rows.push(...page.data);
    cursor = page.next_cursor;
  } while (cursor);
  return rows;
}

// Boot: sign-in, the hash router (#/dashboard, #/channels, ...), the nav, sign-out.
import { h, session, toast } from './core.js';

const PAGES = {
  dashboard: ['Dashboard', () => import('./dashboard.js')],
  channels: ['Channels', () => import('./channels.js')],
  keys: ['Keys & accounts', () => import('./keys.js')],
  prices: ['Prices & groups', () => import('./prices.js')],
  logs: ['Logs', () => import('./logs.js')],
  tasks: ['Tasks', () => import('./tasks.js')],
  playground: ['Playground', () => import('./playground.js')],
};

const $ = (id) => document.getElementById(id);

function showSignIn(message) {
  session.csrf = null;
  $('shell').hidden = true;
  $('signin').hidden = false;
  const error = $('signin-error');
  error.hidden = !message;
  error.textContent = message || '';
  $('signin-token').focus();
}

function showShell(body) {
  session.csrf = body.csrf_token;
  session.subject = body.subject;
  $('whoami').textContent = body.subject === 'token' ? 'signed in with the admin token' : `signed in as ${body.subject}`;
  $('signin').hidden = true;
  $('shell').hidden = false;
  route();
}

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  const button = form.querySelector('button[type="submit"]');
  const username = $('signin-username').value.trim();
  const body = username ? { username, password: $('signin-password').value } : { token: $('signin-token').value };
  button.disabled = true;
  try {
    const response = await fetch('/admin/session', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
      credentials: 'same-origin',
    });
    const answer = await response.json();
    if (!response.ok) {
      showSignIn(answer.error?.message || 'Sign-in failed');
      return;
    }
    form.reset();
    showShell(answer);
  } catch (error) {
    showSignIn(String(error));
  } finally {
    button.disabled = false;
  }
}

async function signOut() {
  await fetch('/admin/session', { method: 'DELETE', headers: { 'x-csrf-token': session.csrf || '' } });
  location.hash = '';
  showSignIn('Signed out.');
}

let rendering = 0;

async function route() {
  if ($('shell').hidden) return;
  const name = location.hash.replace(/^#\/?/, '').split('?')[0] || 'dashboard';
  const [title, load] = PAGES[name] || PAGES.dashboard;
  for (const link of document.querySelectorAll('#nav a')) {
    if (link.dataset.page === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  $('nav').classList.remove('open');
  $('nav-toggle').setAttribute('aria-expanded', 'false');
  document.title = `${title} · omnirelay admin`;
  const main = $('main');
  const ticket = ++rendering;
  main.replaceChildren(h('h1', {}, title), h('p', { class: 'muted' }, 'Loading…'));
  try {
    const page = await load();
    if (ticket !== rendering) return;
    const root = h('div', { 'data-page': name });
    main.replaceChildren(h('h1', {}, title), root);
    await page.render(root);
    root.dataset.ready = 'true'; // the page's data is in (tests and screenshots wait for this)
  } catch (error) {
    if (ticket === rendering) {
      main.replaceChildren(h('h1', {}, title), h('p', { class: 'error', role: 'alert' }, error.message || String(error)));
    }
  }
}

async function boot() {
  session.onSignedOut = () => showSignIn('Your session ended: sign in again.');
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', () => signOut().catch((error) => toast(String(error), 'bad')));
  $('nav-toggle').addEventListener('click', () => {
    const open = $('nav').classList.toggle('open');
    $('nav-toggle').setAttribute('aria-expanded', String(open));
  });
  window.addEventListener('hashchange', route);
  const response = await fetch('/admin/session', { credentials: 'same-origin' });
  if (response.ok) showShell(await response.json());
  else showSignIn();
}

boot();

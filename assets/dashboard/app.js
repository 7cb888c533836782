// Entry point: login, hash routing (#/overview, #/connections, #/queues, #/queues/<vhost>/<name>,
// #/exchanges, #/mqtt) and the refresh loop of the page on screen.
import { get, setCredentials, credentials, clearCredentials } from './api.js';
import { clear, flash } from './dom.js';
import * as sampler from './sampler.js';
import * as overview from './views/overview.js';
import * as connections from './views/connections.js';
import * as queues from './views/queues.js';
import * as queue from './views/queue.js';
import * as exchanges from './views/exchanges.js';
import * as mqtt from './views/mqtt.js';

const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);
const routes = { overview, connections, queues, exchanges, mqtt };

let loggedIn = false;
let current = null; // { view, timer }

function showLogin(error) {
  loggedIn = false;
  unmount();
  sampler.stop();
  $('top').hidden = true;
  $('view').hidden = true;
  $('flash').hidden = true;
  $('login').hidden = false;
  const err = $('login-error');
  err.textContent = error || '';
  err.hidden = !error;
  const saved = credentials();
  if (saved) $('login-username').value = saved.user;
  clearCredentials();
  $('login-password').value = '';
  ($('login-username').value ? $('login-password') : $('login-username')).focus();
}

function showApp(me) {
  loggedIn = true;
  const tags = Array.isArray(me.tags) ? me.tags.join(', ') : me.tags || '';
  $('whoami').textContent = tags ? `${me.name} (${tags})` : me.name;
  $('login').hidden = true;
  $('top').hidden = false;
  $('view').hidden = false;
  sampler.start();
  route();
}

async function login(user, password) {
  setCredentials(user, password);
  try {
    showApp(await get('whoami'));
  } catch (e) {
    showLogin(e.status === 401 ? 'Login failed: wrong username or password.' : `Login failed: ${e.message}`);
  }
}

function logout() {
  clearCredentials();
  showLogin();
}

function unmount() {
  if (!current) return;
  clearInterval(current.timer);
  current.view.destroy?.();
  current = null;
}

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const parts = raw ? raw.split('/').map((p) => { try { return decodeURIComponent(p); } catch { return p; } }) : [];
  if (parts[0] === 'queues' && parts.length >= 3) {
    return { name: 'queues', module: queue, params: { vhost: parts[1], name: parts.slice(2).join('/') } };
  }
  const name = routes[parts[0]] ? parts[0] : 'overview';
  return { name, module: routes[name], params: {} };
}

function route() {
  if (!loggedIn) return;
  unmount();
  const { name, module, params } = parseHash();
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.route === name);
  const root = clear($('view'));
  const view = module.mount(root, params);
  const refresh = async () => {
    try {
      await view.refresh?.();
    } catch (e) {
      if (e.status !== 401 && loggedIn) flash(e, true);
    }
  };
  current = { view, timer: view.refresh ? setInterval(refresh, REFRESH_MS) : null };
  refresh();
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  login($('login-username').value.trim(), $('login-password').value);
});
$('logout').addEventListener('click', logout);
window.addEventListener('hashchange', route);
window.addEventListener('junction:unauthorized', () => {
  if (loggedIn) showLogin('Not authorised (HTTP 401): log in again.');
});

const saved = credentials();
if (saved) {
  get('whoami').then(showApp, (e) => showLogin(e.status === 401 ? 'Your saved login was refused: log in again.' : e.message));
} else {
  showLogin();
}

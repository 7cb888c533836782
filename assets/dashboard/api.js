// The management API client: HTTP Basic on every request, credentials kept in sessionStorage.
// The API is at <root>/api/ when this file is served at <root>/dashboard/api.js.
const BASE = new URL('../api/', import.meta.url);
const KEY = 'junction.dashboard.auth';

export const enc = encodeURIComponent;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function base64(text) {
  let bin = '';
  for (const b of new TextEncoder().encode(text)) bin += String.fromCharCode(b);
  return btoa(bin);
}

export function setCredentials(user, password) {
  sessionStorage.setItem(KEY, JSON.stringify({ user, token: base64(`${user}:${password}`) }));
}

export function credentials() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || 'null');
  } catch {
    return null;
  }
}

export function clearCredentials() {
  sessionStorage.removeItem(KEY);
}

// path is relative to /api/, e.g. `queues/${enc(vhost)}/${enc(name)}`.
export async function request(method, path, body) {
  const headers = { Accept: 'application/json, */*;q=0.1', 'X-Requested-With': 'XMLHttpRequest' };
  const auth = credentials();
  if (auth) headers.Authorization = `Basic ${auth.token}`;
  const init = { method, headers, cache: 'no-store', credentials: 'omit' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(new URL(path, BASE), init);
  } catch (e) {
    throw new ApiError(0, `cannot reach the broker (${e.message})`);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (res.status === 401) {
    window.dispatchEvent(new CustomEvent('junction:unauthorized'));
    throw new ApiError(401, 'not authorised: wrong username or password');
  }
  if (!res.ok) {
    const why = data && typeof data === 'object' ? [data.error, data.reason].filter(Boolean).join(': ') : '';
    throw new ApiError(res.status, why || `${res.status} ${res.statusText}`);
  }
  return data;
}

export const get = (path) => request('GET', path);
export const put = (path, body) => request('PUT', path, body);
export const post = (path, body) => request('POST', path, body);
export const del = (path) => request('DELETE', path);

// Every call to the API goes through here, with the key of the tab's sign-in.
import { t } from './i18n.js';

const KEY = 'wam.key';

// Kept for the tab only: sessionStorage dies with the tab, localStorage would not.
export function storedKey() {
  return sessionStorage.getItem(KEY);
}
export function storeKey(key) {
  sessionStorage.setItem(KEY, key);
}
export function forgetKey() {
  sessionStorage.removeItem(KEY);
}

/** What the API said when it refused, with its own message. */
export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

/** Who the key is: `{role: 'admin'}` or `{role: 'tenant', user_id}`; set at sign-in. */
export const caller = { role: null, user_id: null };

export function isAdmin() {
  return caller.role !== 'tenant';
}

export function headers(extra = {}) {
  const h = { ...extra };
  const key = storedKey();
  if (key) h['X-Api-Key'] = key;
  return h;
}

export function url(path, query = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

async function send(method, path, { query, body, signal } = {}) {
  const init = { method, headers: headers(), signal, cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  try {
    return await fetch(url(path, query), init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(t('error.network'), 0);
  }
}

async function refusal(res) {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && typeof body.message === 'string') message = body.message;
  } catch {
    // Not our envelope (a proxy's page): the status line is all there is.
  }
  return new ApiError(message, res.status);
}

/** The `data` of a success envelope; an ApiError carrying the envelope's message otherwise. */
export async function api(method, path, opts = {}) {
  const res = await send(method, path, opts);
  if (!res.ok) throw await refusal(res);
  const body = await res.json();
  if (body.success === false) throw new ApiError(body.message, res.status);
  return body.data;
}

export const get = (path, query, opts) => api('GET', path, { ...opts, query });
export const post = (path, body) => api('POST', path, { body });

/** A file answer (CSV): a Blob, or the envelope's message as an ApiError. */
export async function blob(path, query) {
  const res = await send('GET', path, { query });
  if (!res.ok) throw await refusal(res);
  return res.blob();
}

export const W = '/api/whatsapp';

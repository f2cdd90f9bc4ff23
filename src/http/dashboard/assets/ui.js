// Small DOM helpers shared by the views: building rows, showing errors in place, the dialog.
import { t, lang } from './i18n.js';

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** `el('td', {dir: 'auto', dataset: {field: 'name'}}, 'text', child)`; text is never HTML. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

/** The `[data-role="error"]` of `scope`: the first one inside it, or the one after it. */
function errorOf(scope) {
  if (scope.matches?.('[data-role="error"]')) return scope;
  return scope.querySelector('[data-role="error"]');
}

export function showError(scope, err) {
  const box = errorOf(scope);
  const message = err?.message || String(err);
  if (!box) {
    // Every panel has its place; this is a last resort so nothing fails silently.
    console.error(message);
    return;
  }
  box.textContent = message;
  box.hidden = false;
}

export function clearError(scope) {
  const box = errorOf(scope);
  if (box) {
    box.textContent = '';
    box.hidden = true;
  }
}

/** Runs `fn`, showing its failure in `scope`; resolves to its value or undefined. */
export async function attempt(scope, fn) {
  clearError(scope);
  try {
    return await fn();
  } catch (e) {
    if (e?.name === 'AbortError') return undefined;
    showError(scope, e);
    return undefined;
  }
}

/** A button that cannot be pressed twice while its action runs. */
export function busy(button, fn) {
  return async (...args) => {
    if (button.disabled) return;
    button.disabled = true;
    try {
      await fn(...args);
    } finally {
      button.disabled = false;
    }
  };
}

export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(lang() === 'ar' ? 'ar-u-nu-latn' : 'en', {
    dateStyle: 'medium',
    timeStyle: 'short',
  });
}

export function statusBadge(status) {
  return el('span', { class: 'badge', dataset: { s: status } }, t(`status.${status}`));
}

/** Fills `tbody` with `rows`, or shows `empty` (an element) when there are none. */
export function fill(tbody, rows, empty) {
  tbody.replaceChildren(...rows);
  if (empty) empty.hidden = rows.length > 0;
}

/** Previous/next buttons and the "page/pages" text of a listing. */
export function pager(prefix, pagination, go) {
  const { page = 1, pages = 0 } = pagination || {};
  const prev = $(`#${prefix}-prev`);
  const next = $(`#${prefix}-next`);
  $(`#${prefix}-page`).textContent = `${page}/${Math.max(pages, 1)}`;
  prev.disabled = page <= 1;
  next.disabled = page >= pages;
  prev.onclick = () => go(page - 1);
  next.onclick = () => go(page + 1);
}

/** Asks in `dialog#confirm`; resolves true for yes. */
export function confirmDialog(text) {
  const dialog = $('#confirm');
  $('#confirm-text').textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'yes'), { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

/** Calls `fn` at most once per `ms`, the last call winning. */
export function throttle(fn, ms) {
  let last = 0;
  let timer = null;
  return () => {
    const wait = last + ms - Date.now();
    if (timer) return;
    if (wait <= 0) {
      last = Date.now();
      fn();
      return;
    }
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      fn();
    }, wait);
  };
}

export function debounce(fn, ms) {
  let timer = null;
  const call = () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
  call.cancel = () => clearTimeout(timer);
  return call;
}

export function positiveInt(value) {
  const n = Number(value);
  return Number.isInteger(n) && n > 0 ? n : null;
}

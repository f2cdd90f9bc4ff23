// Every pair with its status, kept current from the event stream: a status event updates its
// row and the counts in place; events for pairs not on the page re-read the page, at most
// every few seconds, never in a loop of their own.
import { get, caller, W } from './api.js';
import { t } from './i18n.js';
import { $, el, attempt, fill, pager, fmtTime, statusBadge, throttle, positiveInt } from './ui.js';
import { onEvent } from './sse.js';

export const STATUSES = [
  'initializing', 'qr_ready', 'authenticated', 'ready',
  'fetching_contacts', 'disconnected', 'logged_out', 'error',
];
const LIMIT = 50;
const state = { page: 1, status: '', user: '' };
let counts = {};
let unsubscribe = null;
let wired = false;
let request = null;
let active = false;

const root = () => $('#view-sessions');

function row(s) {
  const href = `#/session/${s.user_id}/${s.place_id}`;
  const tr = el('tr', {
    class: 'link-row',
    dataset: { sessionId: s.session_id, userId: s.user_id, placeId: s.place_id, status: s.status },
    onclick: (ev) => { if (ev.target.tagName !== 'A') location.hash = href; },
  },
  el('td', { class: 'num' }, el('a', { href }, s.user_id)),
  el('td', { class: 'num' }, s.place_id),
  el('td', { dataset: { field: 'status' } }, statusBadge(s.status)),
  el('td', { dir: 'ltr', dataset: { field: 'phone_number' } }, s.phone_number || '—'),
  el('td', { dir: 'auto' }, s.name || '—'),
  el('td', { class: 'num' }, s.total_contacts ?? 0),
  el('td', { class: 'num' }, s.total_groups ?? 0),
  el('td', {}, fmtTime(s.last_activity)));
  return tr;
}

function renderCounts() {
  const box = $('#status-counts');
  const all = STATUSES.reduce((n, s) => n + (counts[s] || 0), 0);
  const chip = (status, label, n) => el('button', {
    type: 'button', class: 'chip', dataset: { status },
    'aria-pressed': String(state.status === status),
    onclick: () => { state.status = status; state.page = 1; $('#filter-status').value = status; load(); },
  }, `${label} ${n}`);
  box.replaceChildren(
    chip('', t('status.all'), all),
    ...STATUSES.map((s) => chip(s, t(`status.${s}`), counts[s] || 0)),
  );
  // The contract's hook is one element per status; the "all" chip has an empty one.
  box.firstChild.removeAttribute('data-status');
}

async function load() {
  if (!active) return;
  request?.abort();
  const ctl = new AbortController();
  request = ctl;
  const query = { status: state.status, page: state.page, limit: LIMIT };
  if (caller.role !== 'tenant') query.user_id = positiveInt(state.user);
  await attempt(root(), async () => {
    const data = await get(`${W}/sessions`, query, { signal: ctl.signal });
    counts = data.counts || {};
    renderCounts();
    fill($('#sessions-table tbody'), data.sessions.map(row), $('#view-sessions .empty'));
    pager('sessions', data.pagination, (p) => { state.page = p; load(); });
  });
}

const reload = throttle(load, 3000);

function onStatus(ev) {
  if (ev.event !== 'session.status') return;
  if (state.user && caller.role !== 'tenant' && Number(state.user) !== ev.user_id) return;
  const tr = $(`#sessions-table tbody tr[data-user-id="${ev.user_id}"][data-place-id="${ev.place_id}"]`);
  const status = ev.data?.status;
  const previous = ev.data?.previous_status;
  if (!tr || !status) {
    reload();
    return;
  }
  const was = tr.dataset.status;
  tr.dataset.status = status;
  tr.dataset.sessionId = ev.session_id || tr.dataset.sessionId;
  tr.querySelector('[data-field="status"]').replaceChildren(statusBadge(status));
  if (ev.data.phone_number) tr.querySelector('[data-field="phone_number"]').textContent = ev.data.phone_number;
  const from = was || previous;
  if (from && from !== status) {
    counts[from] = Math.max(0, (counts[from] || 0) - 1);
    counts[status] = (counts[status] || 0) + 1;
    renderCounts();
  }
  // A row that no longer matches the status filter leaves at the next read of the page.
  if (state.status && state.status !== status) reload();
}

function wire() {
  if (wired) return;
  wired = true;
  const select = $('#filter-status');
  select.addEventListener('change', () => { state.status = select.value; state.page = 1; load(); });
  const user = $('#filter-user');
  user.addEventListener('change', () => { state.user = user.value; state.page = 1; load(); });
}

function fillStatusSelect() {
  const select = $('#filter-status');
  select.replaceChildren(
    el('option', { value: '' }, t('status.all')),
    ...STATUSES.map((s) => el('option', { value: s }, t(`status.${s}`))),
  );
  select.value = state.status;
}

export const view = {
  id: 'view-sessions',
  show() {
    wire();
    active = true;
    fillStatusSelect();
    $('#filter-user-label').hidden = caller.role === 'tenant';
    $('#filter-user').value = state.user;
    unsubscribe = onEvent(onStatus);
    load();
  },
  hide() {
    active = false;
    request?.abort();
    unsubscribe?.();
    unsubscribe = null;
  },
};

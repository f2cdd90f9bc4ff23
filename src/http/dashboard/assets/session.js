// One session: its details, health and recommendations, restart/logout behind a
// confirmation, and the contact fetch with a progress bar read once a second only while a
// fetch runs.
import { get, post, W } from './api.js';
import { t } from './i18n.js';
import { $, el, attempt, busy, confirmDialog, fmtTime, throttle } from './ui.js';
import { onEvent } from './sse.js';

const SUMMARY = [
  'received', 'imported', 'skipped_groups', 'skipped_broadcasts', 'skipped_newsletters',
  'skipped_self', 'skipped_unresolved_lids', 'skipped_invalid', 'merged_duplicates',
];

const s = { user: 0, place: 0, poll: null, unsubscribe: null, active: false, wired: false, info: null };

const root = () => $('#view-session');
const fetchCard = () => $('#fetch-btn').closest('.card');
const actionsError = () => root().querySelector('[data-for="actions"]');
const q = () => ({ user_id: s.user, place_id: s.place });

function renderInfo(info) {
  s.info = info;
  const status = $('#session-status');
  status.dataset.status = info.status;
  status.dataset.s = info.status;
  status.textContent = t(`status.${info.status}`);
  const rows = [
    ['info.session_id', info.session_id, 'ltr'],
    ['info.phone', info.phone_number, 'ltr'],
    ['info.name', info.name, 'auto'],
    ['info.contacts', info.total_contacts],
    ['info.groups', info.total_groups],
    ['info.connected', fmtTime(info.connected_at)],
    ['info.activity', fmtTime(info.last_activity)],
    ['info.sync', fmtTime(info.last_contacts_sync)],
    ['info.created', fmtTime(info.created_at)],
  ];
  if (info.error_message) rows.push(['info.error', info.error_message, 'auto']);
  if (info.contacts_fetch_error) rows.push(['info.fetchError', info.contacts_fetch_error, 'auto']);
  $('#session-info').replaceChildren(...rows.flatMap(([k, v, dir]) => [
    el('dt', {}, t(k)), el('dd', { dir }, v ?? '—'),
  ]));
  const health = info.health || {};
  $('#health-score').textContent = health.score ?? '—';
  $('#health-issues').replaceChildren(...(health.issues || []).map((i) => el('li', {}, i)));
  const recs = info.recommendations || [];
  $('#recommendations').replaceChildren(...(recs.length ? recs : [t('session.none')]).map((r) => el('li', {}, r)));
  if (info.fetch_summary) renderSummary(info.fetch_summary);
}

function renderSummary(sum) {
  $('#fetch-summary').replaceChildren(
    el('h2', {}, t('summary.title')),
    el('dl', {}, ...SUMMARY.filter((k) => k in sum).flatMap((k) => [
      el('dt', {}, t(`summary.${k}`)), el('dd', { class: 'num', dataset: { field: k } }, sum[k]),
    ])),
  );
}

function renderProgress(p) {
  const pct = Math.max(0, Math.min(100, Math.round(p.contacts_fetch_progress ?? 0)));
  $('#fetch-progress').value = pct;
  $('#fetch-percent').textContent = p.is_fetching && p.total
    ? `${pct}% · ${t('fetch.running', { processed: p.processed ?? 0, total: p.total })}`
    : `${pct}%`;
  $('#fetch-btn').disabled = !!p.is_fetching;
  if (!p.is_fetching && p.fetch_summary) renderSummary(p.fetch_summary);
}

async function loadInfo() {
  if (!s.active) return;
  await attempt(root(), async () => renderInfo(await get(`${W}/info`, q())));
}

const refreshInfo = throttle(loadInfo, 2000);

async function readProgress() {
  if (!s.active) return;
  await attempt(fetchCard(), async () => {
    const p = await get(`${W}/contacts/progress`, q());
    renderProgress(p);
    if (p.is_fetching) startPolling();
    else if (s.poll) {
      stopPolling();
      loadInfo();
    }
  });
}

function startPolling() {
  if (!s.poll) s.poll = setInterval(readProgress, 1000);
}

function stopPolling() {
  clearInterval(s.poll);
  s.poll = null;
}

async function startFetch() {
  await attempt(fetchCard(), async () => {
    await post(`${W}/start-contact-fetch`, { user_id: s.user, place_id: s.place });
    $('#fetch-summary').replaceChildren();
    renderProgress({ contacts_fetch_progress: 0, is_fetching: true });
    startPolling();
    await readProgress();
  });
}

async function act(what) {
  if (!(await confirmDialog(t(`confirm.${what}`)))) return;
  await attempt(actionsError(), async () => {
    await post(`${W}/${what}`, { user_id: s.user, place_id: s.place });
    await loadInfo();
  });
}

function onSessionEvent(ev) {
  if (ev.user_id !== s.user || ev.place_id !== s.place) return;
  if (ev.event === 'session.status') {
    refreshInfo();
    if (ev.data?.status === 'fetching_contacts') startPolling();
  } else if (ev.event === 'contacts.fetch.completed') {
    readProgress();
  }
}

function wire() {
  if (s.wired) return;
  s.wired = true;
  const fetchBtn = $('#fetch-btn');
  fetchBtn.addEventListener('click', busy(fetchBtn, startFetch));
  $('#restart-btn').addEventListener('click', () => act('restart'));
  $('#logout-btn').addEventListener('click', () => act('logout'));
}

export const view = {
  id: 'view-session',
  show(user, place) {
    wire();
    Object.assign(s, { user, place, active: true, info: null });
    $('#session-pair').textContent = `${user} / ${place}`;
    $('#open-groups').href = `#/groups/${user}/${place}`;
    $('#open-send').href = `#/send/${user}/${place}`;
    $('#open-webhooks').href = `#/webhooks/${user}`;
    for (const id of ['#session-info', '#health-issues', '#recommendations', '#fetch-summary']) $(id).replaceChildren();
    $('#health-score').textContent = '';
    $('#session-status').textContent = '';
    $('#fetch-progress').value = 0;
    $('#fetch-percent').textContent = '0%';
    s.unsubscribe = onEvent(onSessionEvent);
    loadInfo();
    readProgress();
  },
  hide() {
    s.active = false;
    stopPolling();
    s.unsubscribe?.();
  },
  relabel() {
    if (s.info) renderInfo(s.info);
  },
};

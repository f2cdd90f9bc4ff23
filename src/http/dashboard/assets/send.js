// Sending: to a contact, a group or a pasted list, with the templates; a live preview filled
// for a sample contact as one types, the server's dry-run warnings (validate-message, asked
// once typing pauses), the job's progress, and the message log with retry.
import { get, post, W } from './api.js';
import { t } from './i18n.js';
import { $, $$, el, attempt, busy, fill, pager, fmtTime, debounce, throttle } from './ui.js';
import { onEvent } from './sse.js';

const BUILT_IN = new Set(['name', 'first_name', 'push_name', 'phone']);
const LOG_LIMIT = 20;

const s = {
  user: 0, place: 0, active: false, wired: false, templates: [], sample: null,
  job: null, jobTimer: null, logPage: 1, unsubscribe: null,
};
const q = () => ({ user_id: s.user, place_id: s.place });
const formCard = () => $('#send-submit').closest('.card');
const logCard = () => $('#messages-table').closest('.card');

function variablesIn(text) {
  return [...new Set([...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]))];
}

function customValues() {
  const out = {};
  for (const input of $$('#send-vars input[data-var]')) {
    if (input.value.trim()) out[input.dataset.var] = input.value;
  }
  return out;
}

/** One input per variable the text uses that no contact fills: `{offer}`, `{valid_until}`. */
function renderVarInputs() {
  const box = $('#send-vars');
  const keep = customValues();
  const wanted = variablesIn($('#send-text').value).filter((v) => !BUILT_IN.has(v));
  box.replaceChildren(...wanted.map((v) => el('label', {},
    el('span', {}, t('send.var', { name: v })),
    el('input', { type: 'text', dir: 'auto', 'data-var': v, value: keep[v] || '', oninput: preview }))));
}

/** The text with the variables filled as the server would for the sample contact. */
function localPreview(text) {
  const c = s.sample || {};
  const name = c.name || c.push_name || '';
  const known = {
    name, first_name: name.split(/\s+/)[0] || '', push_name: c.push_name || '', phone: c.phone_number || '',
    ...customValues(),
  };
  return text.replace(/\{(\w+)\}/g, (m, v) => (v in known ? known[v] : m));
}

function preview() {
  const text = $('#send-text').value;
  $('#send-preview').textContent = localPreview(text);
  $('#send-sample').textContent = s.sample
    ? t('send.sample', { name: s.sample.name || s.sample.push_name || s.sample.phone_number })
    : t('send.noSample');
  validateSoon();
}

/** What validate-message needs to name the recipient, per kind. */
function recipient() {
  const kind = $('#send-kind').value;
  if (kind === 'contact') {
    const v = $('#send-contact').value.trim();
    if (!v) return s.sample ? { contact_id: s.sample.id } : {};
    return /^\d{1,9}$/.test(v) ? { contact_id: Number(v) } : { phone_number: v };
  }
  if (kind === 'list') {
    const first = listLines()[0];
    return first ? { phone_number: first } : {};
  }
  return s.sample ? { contact_id: s.sample.id } : {};
}

function listLines() {
  return $('#send-list').value.split('\n').map((x) => x.trim()).filter(Boolean);
}

function message() {
  const body = { ...q(), text: $('#send-text').value };
  const vars = customValues();
  if (Object.keys(vars).length) body.variables = vars;
  return body;
}

async function validate() {
  if (!s.active) return;
  const list = $('#send-warnings');
  if (!$('#send-text').value.trim()) {
    list.replaceChildren();
    return;
  }
  await attempt(formCard(), async () => {
    const r = await post(`${W}/validate-message`, { ...message(), ...recipient() });
    list.replaceChildren(
      ...(r.errors || []).map((e) => el('li', { dataset: { kind: 'error' } }, `${t('send.error')}: ${e}`)),
      ...(r.warnings || []).map((w) => el('li', { dataset: { kind: 'warning' } }, `${t('send.warning')}: ${w}`)),
    );
    // For a recipient the person named, the server's fill is the true one.
    if (typeof r.preview === 'string' && $('#send-kind').value === 'contact' && $('#send-contact').value.trim()) {
      $('#send-preview').textContent = r.preview;
      $('#send-sample').textContent = t('send.sample', { name: r.recipient || $('#send-contact').value.trim() });
    }
  });
}

const validateSoon = debounce(validate, 600);

function showKind() {
  const kind = $('#send-kind').value;
  for (const label of $$('#view-send [data-kind]')) label.hidden = label.dataset.kind !== kind;
  preview();
}

async function submit() {
  const done = $('#send-done');
  done.textContent = '';
  const kind = $('#send-kind').value;
  await attempt(formCard(), async () => {
    if (kind === 'contact') {
      const m = await post(`${W}/send-message`, { ...message(), ...recipient() });
      done.textContent = t('send.queued', { id: m.id });
    } else {
      const job = kind === 'group'
        ? await post(`${W}/groups/${$('#send-group').value}/send-message`, message())
        : await post(`${W}/send-bulk-messages`, { ...message(), recipients: listLines() });
      done.textContent = t('send.jobQueued', { n: job.total });
      followJob(job);
    }
    loadLog();
  });
}

function renderJob(job) {
  $('#job').hidden = false;
  $('#job-progress').value = Math.round(job.progress ?? 0);
  const key = job.completed ? 'job.done' : 'job.status';
  $('#job-status').textContent = t(key, {
    sent: job.sent, failed: job.failed, queued: (job.queued ?? 0) + (job.sending ?? 0), total: job.total,
  });
  $('#job-status').dataset.completed = String(!!job.completed);
}

/** The job, read every two seconds until it completes (sends are paced seconds apart). */
function followJob(job) {
  clearInterval(s.jobTimer);
  s.job = job;
  renderJob(job);
  if (job.completed) return;
  s.jobTimer = setInterval(async () => {
    if (!s.active) return;
    await attempt(formCard(), async () => {
      const j = await get(`${W}/messages/jobs/${s.job.job_id}`, q());
      const moved = j.sent !== s.job.sent || j.failed !== s.job.failed;
      s.job = j;
      renderJob(j);
      if (moved) logSoon();
      if (j.completed) clearInterval(s.jobTimer);
    });
  }, 2000);
}

function logRow(m) {
  const retry = m.status === 'failed'
    ? el('button', { type: 'button', class: 'ghost', 'data-retry': m.id, onclick: () => retryMessage(m.id) }, t('msg.retry'))
    : null;
  return el('tr', { dataset: { messageId: m.id, status: m.status } },
    el('td', { class: 'num' }, m.id),
    el('td', {}, el('span', { dir: 'ltr' }, m.recipient), m.recipient_name ? el('div', { dir: 'auto', class: 'muted' }, m.recipient_name) : null),
    el('td', { class: 'text', dir: 'auto', title: m.text || '' }, m.text || m.image_url || ''),
    el('td', {}, el('span', { class: 'badge', dataset: { s: m.status } }, t(`msg.${m.status}`)), m.error ? el('div', { class: 'muted', dir: 'auto' }, m.error) : null),
    el('td', {}, fmtTime(m.sent_at || m.failed_at || m.created_at)),
    el('td', {}, retry));
}

async function loadLog() {
  if (!s.active) return;
  await attempt(logCard(), async () => {
    const data = await get(`${W}/messages`, { ...q(), status: $('#messages-status').value, page: s.logPage, limit: LOG_LIMIT });
    fill($('#messages-table tbody'), data.messages.map(logRow));
    pager('messages', data.pagination, (p) => { s.logPage = p; loadLog(); });
  });
}

const logSoon = throttle(loadLog, 2000);

async function retryMessage(id) {
  await attempt(logCard(), async () => {
    await post(`${W}/messages/${id}/retry`, q());
    await loadLog();
  });
}

function onMessageEvent(ev) {
  if (ev.user_id !== s.user || ev.place_id !== s.place) return;
  if (ev.event === 'message.sent' || ev.event === 'message.failed') logSoon();
}

async function loadChoices() {
  await attempt(formCard(), async () => {
    const [templates, groups, sample] = await Promise.all([
      get(`${W}/templates`),
      get(`${W}/groups`, { ...q(), limit: 1000 }),
      get(`${W}/contacts/search`, { ...q(), limit: 1 }),
    ]);
    s.templates = templates.templates || [];
    s.sample = sample.contacts?.[0] || null;
    $('#send-template').replaceChildren(
      el('option', { value: '' }, t('send.noTemplate')),
      ...s.templates.map((tpl) => el('option', { value: tpl.id }, `${tpl.name} (${tpl.language})`)),
    );
    $('#send-group').replaceChildren(...groups.groups.map((gr) =>
      el('option', { value: gr.id, dir: 'auto' }, `${gr.name} (${gr.contact_count})`)));
    preview();
  });
}

function wire() {
  if (s.wired) return;
  s.wired = true;
  $('#send-kind').addEventListener('change', showKind);
  $('#send-text').addEventListener('input', () => { renderVarInputs(); preview(); });
  for (const id of ['#send-contact', '#send-list', '#send-group']) $(id).addEventListener('input', validateSoon);
  $('#send-template').addEventListener('change', () => {
    const tpl = s.templates.find((x) => x.id === $('#send-template').value);
    if (tpl) $('#send-text').value = tpl.text;
    renderVarInputs();
    preview();
  });
  const button = $('#send-submit');
  button.addEventListener('click', busy(button, submit));
  $('#messages-status').addEventListener('change', () => { s.logPage = 1; loadLog(); });
  $('#messages-refresh').addEventListener('click', loadLog);
}

export const view = {
  id: 'view-send',
  show(user, place) {
    wire();
    const same = s.user === user && s.place === place;
    Object.assign(s, { user, place, active: true });
    $('#view-send .pair').textContent = `${user} / ${place}`;
    $('#view-send .back').href = `#/session/${user}/${place}`;
    if (!same) {
      s.logPage = 1;
      s.job = null;
      $('#job').hidden = true;
      $('#send-done').textContent = '';
      $('#send-warnings').replaceChildren();
    }
    showKind();
    s.unsubscribe = onEvent(onMessageEvent);
    loadChoices();
    loadLog();
    if (s.job && !s.job.completed) followJob(s.job);
  },
  hide() {
    s.active = false;
    clearInterval(s.jobTimer);
    validateSoon.cancel();
    s.unsubscribe?.();
  },
  relabel() {
    renderVarInputs();
    preview();
    loadLog();
  },
};

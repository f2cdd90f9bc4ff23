// Webhooks (a user's URL and events, the secret shown once, the deliveries), API keys
// (admin: create, list, revoke) and the nodes (admin).
import { get, api, post, W } from './api.js';
import { t } from './i18n.js';
import { $, $$, el, attempt, busy, fill, pager, fmtTime, confirmDialog, positiveInt, showError } from './ui.js';

const EVENTS = ['session.status', 'contacts.fetch.completed', 'message.received', 'message.sent', 'message.failed', 'message.delivered', 'message.read'];
const LIMIT = 20;

const badge = (status, label) => el('span', { class: 'badge', dataset: { s: status } }, label);

// ------------------------------------------------------------------ webhooks

const w = { user: 0, page: 1, active: false, wired: false };
const hookCard = () => $('#webhook-save').closest('.card');
const deliveriesCard = () => $('#deliveries-table').closest('.card');

function renderEvents(selected) {
  const box = $('#webhook-events');
  const legend = box.querySelector('legend');
  box.replaceChildren(legend, ...EVENTS.map((e) => {
    const input = el('input', { type: 'checkbox', value: e });
    input.checked = selected.includes(e);
    return el('label', {}, input, el('span', { dir: 'ltr' }, e));
  }));
}

async function loadHook() {
  $('#webhook-secret-box').hidden = true;
  $('#webhook-state').textContent = '';
  await attempt(hookCard(), async () => {
    try {
      const hook = await get(`${W}/webhook`, { user_id: w.user });
      $('#webhook-url').value = hook.url;
      renderEvents(hook.events || EVENTS);
    } catch (e) {
      // No webhook yet is a state, not a failure.
      if (e.status !== 404) throw e;
      $('#webhook-url').value = '';
      renderEvents(EVENTS);
      $('#webhook-state').textContent = t('webhooks.none');
    }
  });
}

async function saveHook() {
  const events = $$('#webhook-events input:checked').map((i) => i.value);
  await attempt(hookCard(), async () => {
    const hook = await api('PUT', `${W}/webhook`, { body: { user_id: w.user, url: $('#webhook-url').value.trim(), events } });
    $('#webhook-state').textContent = t('webhooks.saved');
    if (hook.secret) {
      $('#webhook-secret').textContent = hook.secret;
      $('#webhook-secret-box').hidden = false;
    }
  });
}

async function deleteHook() {
  if (!(await confirmDialog(t('confirm.deleteWebhook')))) return;
  await attempt(hookCard(), async () => {
    await api('DELETE', `${W}/webhook`, { query: { user_id: w.user } });
    $('#webhook-secret-box').hidden = true;
    $('#webhook-url').value = '';
    $('#webhook-state').textContent = t('webhooks.deleted');
  });
}

function deliveryRow(d) {
  const result = d.last_status_code ? `HTTP ${d.last_status_code}` : '';
  return el('tr', { dataset: { deliveryId: d.id, status: d.status } },
    el('td', { class: 'num' }, d.id),
    el('td', { dir: 'ltr' }, d.event),
    el('td', {}, badge(d.status, t(`deliv.${d.status}`))),
    el('td', { class: 'num' }, d.attempts),
    el('td', { dir: 'auto' }, [result, d.last_error].filter(Boolean).join(' · ')),
    el('td', {}, d.status === 'pending' ? fmtTime(d.next_attempt_at) : ''),
    el('td', {}, fmtTime(d.delivered_at || d.created_at)));
}

async function loadDeliveries() {
  if (!w.active) return;
  await attempt(deliveriesCard(), async () => {
    const data = await get(`${W}/webhook/deliveries`, { user_id: w.user, page: w.page, limit: LIMIT });
    fill($('#deliveries-table tbody'), data.deliveries.map(deliveryRow));
    pager('deliveries', data.pagination, (p) => { w.page = p; loadDeliveries(); });
  });
}

export const webhooksView = {
  id: 'view-webhooks',
  show(user) {
    if (!w.wired) {
      w.wired = true;
      const save = $('#webhook-save');
      save.addEventListener('click', busy(save, saveHook));
      $('#webhook-delete').addEventListener('click', deleteHook);
      $('#deliveries-refresh').addEventListener('click', loadDeliveries);
    }
    Object.assign(w, { user, page: 1, active: true });
    $('#view-webhooks .pair').textContent = String(user);
    loadHook();
    loadDeliveries();
  },
  hide() {
    w.active = false;
  },
  relabel: loadDeliveries,
};

// ------------------------------------------------------------------ keys

const k = { page: 1, active: false, wired: false };
const keysRoot = () => $('#view-keys');

function keyRow(key) {
  return el('tr', { dataset: { keyId: key.id } },
    el('td', { class: 'num' }, key.id),
    el('td', { class: 'num' }, key.user_id),
    el('td', { dir: 'auto' }, key.name || ''),
    el('td', { dir: 'ltr' }, el('code', {}, key.prefix)),
    el('td', {}, fmtTime(key.created_at)),
    el('td', {}, fmtTime(key.last_used_at)),
    el('td', {}, el('button', { type: 'button', class: 'danger', 'data-revoke': key.id, onclick: () => revoke(key.id) }, t('keys.revoke'))));
}

async function loadKeys() {
  if (!k.active) return;
  await attempt(keysRoot().querySelector('.card'), async () => {
    const data = await get('/api/admin/keys', { page: k.page, limit: LIMIT });
    fill($('#keys-table tbody'), data.keys.map(keyRow));
    pager('keys', data.pagination, (p) => { k.page = p; loadKeys(); });
  });
}

async function createKey() {
  const card = keysRoot().querySelector('.card');
  const user = positiveInt($('#key-user').value);
  if (!user) {
    showError(card, new Error(t('keys.needUser')));
    return;
  }
  const name = $('#key-name').value.trim();
  await attempt(card, async () => {
    const body = { user_id: user };
    if (name) body.name = name;
    const created = await post('/api/admin/keys', body);
    $('#key-secret').textContent = created.key;
    $('#key-secret-box').hidden = false;
    $('#key-name').value = '';
    await loadKeys();
  });
}

async function revoke(id) {
  if (!(await confirmDialog(t('confirm.revoke')))) return;
  await attempt(keysRoot().querySelector('.card'), async () => {
    await api('DELETE', `/api/admin/keys/${id}`);
    await loadKeys();
  });
}

export const keysView = {
  id: 'view-keys',
  show() {
    if (!k.wired) {
      k.wired = true;
      const create = $('#key-create');
      create.addEventListener('click', busy(create, createKey));
    }
    k.active = true;
    $('#key-secret-box').hidden = true;
    loadKeys();
  },
  hide() {
    k.active = false;
  },
  relabel: loadKeys,
};

// ------------------------------------------------------------------ nodes

let nodesActive = false;
let nodesWired = false;

async function loadNodes() {
  if (!nodesActive) return;
  await attempt($('#view-nodes'), async () => {
    const data = await get('/api/admin/nodes');
    fill($('#nodes-table tbody'), data.nodes.map((n) => el('tr', { dataset: { nodeId: n.node_id, state: n.state } },
      el('td', { dir: 'ltr' }, n.node_id),
      el('td', { dir: 'ltr' }, n.advertise_url),
      el('td', {}, badge(n.state, n.state)),
      el('td', { class: 'num' }, n.sessions),
      el('td', {}, fmtTime(n.started_at)),
      el('td', {}, fmtTime(n.last_heartbeat)))));
  });
}

export const nodesView = {
  id: 'view-nodes',
  show() {
    if (!nodesWired) {
      nodesWired = true;
      $('#nodes-refresh').addEventListener('click', loadNodes);
    }
    nodesActive = true;
    loadNodes();
  },
  hide() {
    nodesActive = false;
  },
  relabel: loadNodes,
};

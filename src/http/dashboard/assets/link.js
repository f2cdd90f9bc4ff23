// Linking a number: init, then the QR code large, replaced as it rotates, with a countdown;
// or a pairing code. `status` is read once a second only while linking is under way (and at
// once when the event stream says the pair moved), and the page follows to `ready` by itself.
import { get, post, caller, W } from './api.js';
import { t } from './i18n.js';
import { $, attempt, busy, positiveInt, showError, clearError } from './ui.js';
import { onEvent } from './sse.js';

const LINKING = new Set(['initializing', 'qr_ready', 'authenticated']);
// WhatsApp shows each code for about 20 s; measured from the rotations once one is seen.
const DEFAULT_QR_SECONDS = 20;

const s = {
  pair: null, status: null, message: null, qr: null, qrSince: 0, qrSeconds: DEFAULT_QR_SECONDS,
  poll: null, tick: null, unsubscribe: null, active: false, wired: false,
};

const root = () => $('#view-link');
const firstCard = () => root().querySelector('.card');

function renderStatus() {
  const st = $('#link-status');
  st.dataset.status = s.status || '';
  st.textContent = s.status ? t(`status.${s.status}`) : '';
  const help = $('#link-help');
  help.textContent = t(`link.help.${s.status || 'none'}`) + (s.message ? ` (${s.message})` : '');
  const open = $('#link-open-session');
  const ready = s.status === 'ready' || s.status === 'fetching_contacts';
  open.hidden = !ready || !s.pair;
  if (s.pair) open.href = `#/session/${s.pair.user}/${s.pair.place}`;
  const img = $('#qr-img');
  img.hidden = !(s.status === 'qr_ready' && s.qr);
  renderCountdown();
}

function renderCountdown() {
  const box = $('#qr-countdown');
  if (s.status !== 'qr_ready' || !s.qr) {
    box.textContent = '';
    return;
  }
  const left = Math.max(0, Math.ceil(s.qrSeconds - (Date.now() - s.qrSince) / 1000));
  box.textContent = t('link.seconds', { n: left });
  box.dataset.seconds = String(left);
}

function apply(st) {
  s.status = st.status;
  s.message = st.error_message || null;
  if (st.qr_code && st.qr_code !== s.qr) {
    const now = Date.now();
    if (s.qr) s.qrSeconds = Math.max(5, Math.round((now - s.qrSince) / 1000));
    s.qr = st.qr_code;
    s.qrSince = now;
    $('#qr-img').src = st.qr_code;
  }
  renderStatus();
  if (!LINKING.has(st.status)) stopPolling();
}

async function readStatus() {
  if (!s.pair || !s.active) return;
  await attempt(firstCard(), async () => {
    apply(await get(`${W}/status`, { user_id: s.pair.user, place_id: s.pair.place }));
  });
}

function startPolling() {
  stopPolling();
  s.poll = setInterval(readStatus, 1000);
  s.tick = setInterval(renderCountdown, 1000);
}

function stopPolling() {
  clearInterval(s.poll);
  clearInterval(s.tick);
  s.poll = null;
  s.tick = null;
}

function pairFromInputs() {
  const user = positiveInt($('#link-user').value);
  const place = positiveInt($('#link-place').value);
  if (!user || !place) throw new Error(t('link.need'));
  return { user, place };
}

async function init() {
  const pair = pairFromInputs();
  if (!s.pair || s.pair.user !== pair.user || s.pair.place !== pair.place) {
    s.qr = null;
    s.qrSeconds = DEFAULT_QR_SECONDS;
    $('#pair-code').textContent = '';
  }
  s.pair = pair;
  const data = await post(`${W}/init`, { user_id: pair.user, place_id: pair.place });
  s.status = data.status;
  s.message = null;
  renderStatus();
  startPolling();
  await readStatus();
}

/** Waits (reading status once a second) until the pair shows a code, for a pairing code. */
async function untilQr() {
  for (let i = 0; i < 60 && s.active; i++) {
    if (s.status === 'qr_ready') return;
    if (!LINKING.has(s.status)) return;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function pairCode() {
  const box = $('#pair-phone').closest('.card');
  clearError(box);
  const phone = $('#pair-phone').value.trim();
  try {
    if (!s.pair || !LINKING.has(s.status)) {
      $('#pair-code').textContent = t('pair.wait');
      await init();
    }
    await untilQr();
    const data = await post(`${W}/pair-code`, { user_id: s.pair.user, place_id: s.pair.place, phone_number: phone });
    $('#pair-code').textContent = data.code || data.pairing_code;
  } catch (e) {
    $('#pair-code').textContent = '';
    showError(box, e);
  }
}

function onStatusEvent(ev) {
  if (ev.event !== 'session.status' || !s.pair) return;
  if (ev.user_id !== s.pair.user || ev.place_id !== s.pair.place) return;
  // The stream says the pair moved: read it now rather than at the next tick, and follow
  // it even after polling stopped (a logged-out pair being linked again elsewhere).
  if (!s.poll && LINKING.has(ev.data?.status)) startPolling();
  readStatus();
}

function wire() {
  if (s.wired) return;
  s.wired = true;
  const start = $('#link-start');
  start.addEventListener('click', busy(start, () => attempt(firstCard(), init)));
  const pair = $('#pair-start');
  pair.addEventListener('click', busy(pair, pairCode));
}

export const view = {
  id: 'view-link',
  show() {
    wire();
    s.active = true;
    const user = $('#link-user');
    if (caller.role === 'tenant') {
      user.value = caller.user_id;
      user.readOnly = true;
    } else {
      user.readOnly = false;
    }
    s.unsubscribe = onEvent(onStatusEvent);
    renderStatus();
    if (s.pair && LINKING.has(s.status)) startPolling();
  },
  hide() {
    s.active = false;
    stopPolling();
    s.unsubscribe?.();
  },
  relabel: renderStatus,
};

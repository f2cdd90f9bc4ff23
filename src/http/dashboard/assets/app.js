// The page: sign-in, navigation by URL hash (so any view opens directly), language.
import { get, storedKey, storeKey, forgetKey, caller, isAdmin, W } from './api.js';
import { t, setLang, initialLang, lang } from './i18n.js';
import { $, $$, attempt, showError } from './ui.js';
import { startEvents, stopEvents, onLive } from './sse.js';
import * as sessions from './sessions.js';
import * as link from './link.js';
import * as session from './session.js';
import * as groups from './groups.js';
import * as send from './send.js';
import * as admin from './admin.js';

const N = '(\\d+)';
const routes = [
  [/^#\/sessions$/, 'sessions', sessions.view],
  [/^#\/link$/, 'link', link.view],
  [new RegExp(`^#/session/${N}/${N}$`), 'sessions', session.view],
  [new RegExp(`^#/groups/${N}/${N}$`), 'sessions', groups.listView],
  [new RegExp(`^#/group/${N}/${N}/${N}$`), 'sessions', groups.groupView],
  [new RegExp(`^#/send/${N}/${N}$`), 'sessions', send.view],
  [new RegExp(`^#/webhooks/${N}$`), 'sessions', admin.webhooksView],
  [/^#\/keys$/, 'keys', admin.keysView],
  [/^#\/nodes$/, 'nodes', admin.nodesView],
];

let open = null;

function route() {
  if (storedKey() === null) return;
  const hash = location.hash || '#/sessions';
  if (!location.hash) history.replaceState(null, '', '#/sessions');
  if (open?.hide) open.hide();
  open = null;
  for (const s of $$('main > .view')) s.hidden = true;
  for (const [re, nav, view] of routes) {
    const m = hash.match(re);
    if (!m) continue;
    for (const a of $$('nav a')) {
      if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    open = view;
    $(`#${view.id}`).hidden = false;
    view.show(...m.slice(1).map(Number));
    return;
  }
  $('#view-missing').hidden = false;
}

function showSignedIn(signedIn) {
  $('#signin').hidden = signedIn;
  $('#nav').hidden = !signedIn;
  $('#signout').hidden = !signedIn;
  $('#whoami').hidden = !signedIn;
  $('#live').hidden = !signedIn;
  if (!signedIn) for (const s of $$('main > .view')) s.hidden = true;
}

function showWho() {
  const who = $('#whoami');
  who.textContent = caller.role === 'tenant' ? t('whoami.user', { id: caller.user_id }) : t('whoami.admin');
  who.dataset.role = caller.role || '';
  for (const a of $$('nav a[data-admin]')) a.hidden = !isAdmin();
}

/** Checks the key on a real listing (a bad key answers 401 there), then learns who it is. */
async function signIn(key) {
  storeKey(key);
  try {
    await get(`${W}/sessions`, { limit: 1 });
    const health = await get('/api/health');
    const c = health?.caller || { role: 'admin' };
    caller.role = c.role;
    caller.user_id = c.user_id ?? null;
  } catch (e) {
    forgetKey();
    throw e;
  }
}

async function resume() {
  // A reload keeps the tab's key; ask again who it is, since the key may have been revoked.
  const form = $('#signin');
  const ok = await attempt(form, async () => {
    await signIn(storedKey());
    return true;
  });
  if (!ok) {
    showSignedIn(false);
    return;
  }
  enter();
}

function enter() {
  showSignedIn(true);
  showWho();
  startEvents();
  route();
}

function wire() {
  const select = $('#lang');
  select.value = lang();
  select.addEventListener('change', () => {
    setLang(select.value, true);
    if (storedKey() !== null) {
      showWho();
      if (open?.relabel) open.relabel();
      else route();
    }
  });
  $('#signin').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const form = ev.currentTarget;
    const button = $('#signin-submit');
    button.disabled = true;
    try {
      await signIn($('#api-key').value.trim());
      $('#api-key').value = '';
      $('#signin').querySelector('[data-role="error"]').hidden = true;
      enter();
    } catch (e) {
      showError(form, e);
    } finally {
      button.disabled = false;
    }
  });
  $('#signout').addEventListener('click', () => {
    if (open?.hide) open.hide();
    open = null;
    stopEvents();
    forgetKey();
    caller.role = null;
    caller.user_id = null;
    showSignedIn(false);
    $('#api-key').focus();
  });
  onLive((on) => {
    const dot = $('#live');
    dot.dataset.state = on ? 'on' : 'off';
    dot.title = on ? t('live.on') : t('live.off');
  });
  window.addEventListener('hashchange', route);
}

setLang(initialLang());
wire();
if (storedKey() === null) showSignedIn(false);
else resume();

// A pair's groups with their counts, and one group's contacts: search as one types (debounced),
// the filters of contacts/search, pages, CSV download, a manual group from the selected
// contacts, and tags.
import { get, api, post, blob, W } from './api.js';
import { t } from './i18n.js';
import {
  $, $$, el, attempt, busy, fill, pager, fmtTime, confirmDialog, debounce, positiveInt, showError,
} from './ui.js';

const LIMIT = 50;

// ------------------------------------------------------------------ the groups

const g = { user: 0, place: 0, page: 1, active: false };

function groupRow(group) {
  const href = `#/group/${g.user}/${g.place}/${group.id}`;
  const remove = group.type === 'manual'
    ? el('button', { type: 'button', class: 'ghost', onclick: (ev) => { ev.stopPropagation(); removeGroup(group); } }, t('delete'))
    : null;
  return el('tr', {
    class: 'link-row',
    dataset: { groupId: group.id, groupName: group.name, type: group.type },
    onclick: (ev) => { if (ev.target.tagName !== 'A' && ev.target.tagName !== 'BUTTON') location.hash = href; },
  },
  el('td', { dir: 'auto', dataset: { field: 'name' } }, el('a', { href }, group.name)),
  el('td', {}, t(`type.${group.type}`)),
  el('td', { class: 'num', dataset: { field: 'contact_count' } }, group.contact_count),
  el('td', { dir: 'auto' }, group.description || ''),
  el('td', {}, remove));
}

async function loadGroups() {
  if (!g.active) return;
  await attempt($('#view-groups'), async () => {
    const data = await get(`${W}/groups`, { user_id: g.user, place_id: g.place, page: g.page, limit: LIMIT });
    fill($('#groups-table tbody'), data.groups.map(groupRow));
    pager('groups', data.pagination, (p) => { g.page = p; loadGroups(); });
  });
}

async function removeGroup(group) {
  if (!(await confirmDialog(t('confirm.deleteGroup', { name: group.name })))) return;
  await attempt($('#view-groups'), async () => {
    await api('DELETE', `${W}/groups/${group.id}`, { query: { user_id: g.user, place_id: g.place } });
    await loadGroups();
  });
}

export const listView = {
  id: 'view-groups',
  show(user, place) {
    Object.assign(g, { user, place, page: 1, active: true });
    $('#view-groups .pair').textContent = `${user} / ${place}`;
    $('#view-groups .back').href = `#/session/${user}/${place}`;
    $('#groups-table tbody').replaceChildren();
    loadGroups();
  },
  hide() {
    g.active = false;
  },
  relabel: loadGroups,
};

// ------------------------------------------------------------------ one group's contacts

const c = {
  user: 0, place: 0, group: 0, page: 1, active: false, wired: false,
  selected: new Set(), editing: null, request: null,
};
const groupRoot = () => $('#view-group');

/** The search and filters as contacts/search names them; empty ones left out. */
function filters() {
  const days = positiveInt($('#filter-days').value);
  return {
    user_id: c.user,
    place_id: c.place,
    search: $('#contacts-search').value.trim(),
    search_type: $('#contacts-search-type').value,
    is_business: $('#filter-business').value,
    last_interaction_days: days,
    tags: $('#filter-tags').value.split(',').map((x) => x.trim()).filter(Boolean).join(','),
  };
}

function contactRow(contact) {
  const check = el('input', { type: 'checkbox', 'data-select': '', 'aria-label': contact.phone_number });
  check.checked = c.selected.has(contact.id);
  check.addEventListener('change', () => {
    if (check.checked) c.selected.add(contact.id);
    else c.selected.delete(contact.id);
    $('#selected-count').textContent = c.selected.size;
  });
  return el('tr', { dataset: { contactId: contact.id } },
    el('td', {}, check),
    el('td', { dir: 'auto', dataset: { field: 'name' } }, contact.name || ''),
    el('td', { dir: 'ltr', dataset: { field: 'phone_number' } }, contact.phone_number),
    el('td', { dir: 'auto' }, contact.push_name || ''),
    el('td', {}, contact.is_business ? t('yes') : ''),
    el('td', {}, fmtTime(contact.last_interaction)),
    el('td', { dir: 'auto', dataset: { field: 'tags' } }, (contact.tags || []).join(', ')),
    el('td', {}, el('button', {
      type: 'button', class: 'ghost', 'data-edit-tags': contact.id, onclick: () => editTags(contact),
    }, t('tags.edit'))));
}

async function loadContacts() {
  if (!c.active) return;
  c.request?.abort();
  const ctl = new AbortController();
  c.request = ctl;
  await attempt(groupRoot(), async () => {
    const data = await get(`${W}/groups/${c.group}/contacts`, { ...filters(), page: c.page, limit: LIMIT }, { signal: ctl.signal });
    $('#group-title').textContent = data.group?.name || '';
    fill($('#contacts-table tbody'), data.contacts.map(contactRow));
    $('#contacts-total').textContent = data.pagination.total;
    $('#contacts-select-all').checked = false;
    pager('contacts', data.pagination, (p) => { c.page = p; loadContacts(); });
  });
}

const searchSoon = debounce(() => { c.page = 1; loadContacts(); }, 300);

function editTags(contact) {
  c.editing = contact;
  const box = $('#tags-editor');
  box.hidden = false;
  $('#tags-who').textContent = contact.name || contact.phone_number;
  const input = $('#tags-input');
  input.value = (contact.tags || []).join(', ');
  input.focus();
}

async function saveTags() {
  const contact = c.editing;
  if (!contact) return;
  const box = $('#tags-editor');
  const tags = $('#tags-input').value.split(',').map((x) => x.trim()).filter(Boolean);
  await attempt(box, async () => {
    await api('PATCH', `${W}/contacts/${contact.id}`, { body: { user_id: c.user, place_id: c.place, tags } });
    box.hidden = true;
    c.editing = null;
    await loadContacts();
  });
}

async function createGroup() {
  const card = $('#new-group-name').closest('.card');
  const done = $('#new-group-done');
  done.textContent = '';
  if (!c.selected.size) {
    showError(card, new Error(t('newGroup.none')));
    return;
  }
  const name = $('#new-group-name').value.trim();
  await attempt(card, async () => {
    const created = await post(`${W}/groups`, {
      user_id: c.user, place_id: c.place, name, contact_ids: [...c.selected],
    });
    done.replaceChildren(el('a', { href: `#/group/${c.user}/${c.place}/${created.id}`, dir: 'auto' },
      t('newGroup.done', { name: created.name || name, n: created.contact_count ?? c.selected.size })));
    c.selected.clear();
    $('#selected-count').textContent = '0';
    $('#new-group-name').value = '';
    for (const box of $$('#contacts-table input[data-select]')) box.checked = false;
  });
}

/** A plain link cannot send the key: fetch the file, then hand the browser a Blob. */
async function downloadCsv(ev) {
  ev.preventDefault();
  const { user_id, place_id, search, search_type, is_business, last_interaction_days, tags } = filters();
  await attempt(groupRoot(), async () => {
    const file = await blob(`${W}/groups/${c.group}/export.csv`, {
      user_id, place_id, search, search_type, is_business, last_interaction_days, tags,
    });
    const href = URL.createObjectURL(file);
    const a = el('a', { href, download: `group-${c.group}.csv` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60000);
  });
}

function wire() {
  if (c.wired) return;
  c.wired = true;
  $('#contacts-search').addEventListener('input', searchSoon);
  for (const id of ['#contacts-search-type', '#filter-business', '#filter-days', '#filter-tags']) {
    $(id).addEventListener('change', () => { c.page = 1; loadContacts(); });
  }
  $('#csv-download').addEventListener('click', downloadCsv);
  $('#tags-save').addEventListener('click', saveTags);
  $('#tags-cancel').addEventListener('click', () => { $('#tags-editor').hidden = true; c.editing = null; });
  const create = $('#new-group-create');
  create.addEventListener('click', busy(create, createGroup));
  $('#contacts-select-all').addEventListener('change', (ev) => {
    for (const box of $$('#contacts-table input[data-select]')) {
      if (box.checked !== ev.target.checked) {
        box.checked = ev.target.checked;
        box.dispatchEvent(new Event('change'));
      }
    }
  });
}

export const groupView = {
  id: 'view-group',
  show(user, place, group) {
    wire();
    const same = c.user === user && c.place === place && c.group === group;
    Object.assign(c, { user, place, group, active: true });
    if (!same) {
      c.page = 1;
      c.selected.clear();
      for (const id of ['#contacts-search', '#filter-days', '#filter-tags', '#filter-business']) $(id).value = '';
      $('#contacts-search-type').value = 'all';
      $('#contacts-table tbody').replaceChildren();
      $('#group-title').textContent = '';
    }
    $('#selected-count').textContent = c.selected.size;
    $('#tags-editor').hidden = true;
    $('#new-group-done').textContent = '';
    $('#view-group .back').href = `#/groups/${user}/${place}`;
    loadContacts();
  },
  hide() {
    c.active = false;
    searchSoon.cancel();
    c.request?.abort();
  },
  relabel: loadContacts,
};

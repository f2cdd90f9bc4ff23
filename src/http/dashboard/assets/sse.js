// The event stream, read with fetch() because EventSource cannot send the key header. One
// stream for the whole page; views subscribe while they are open. It reconnects with
// Last-Event-ID, so a view misses nothing across a dropped connection.
import { headers, url, caller, W } from './api.js';

const listeners = new Set();
const stateListeners = new Set();
let controller = null;
let lastId = null;
let live = false;

/** `fn(event)` for each event (`{id, event, user_id, place_id, session_id, data}`); returns the unsubscriber. */
export function onEvent(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** `fn(true|false)` as the stream connects and drops. */
export function onLive(fn) {
  stateListeners.add(fn);
  fn(live);
}

function setLive(v) {
  if (v === live) return;
  live = v;
  for (const fn of stateListeners) fn(v);
}

function dispatch(block) {
  let id = null;
  let data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'id') id = value;
    else if (field === 'data') data += (data ? '\n' : '') + value;
  }
  if (id !== null) lastId = id;
  if (!data) return;
  let event;
  try {
    event = JSON.parse(data);
  } catch {
    return;
  }
  for (const fn of listeners) {
    try {
      fn(event);
    } catch (e) {
      console.error(e);
    }
  }
}

async function readOnce(signal) {
  const h = headers({ Accept: 'text/event-stream' });
  if (lastId) h['Last-Event-ID'] = lastId;
  // An admin key reads every tenant's events; a tenant key reads its own.
  const query = caller.role === 'tenant' ? { user_id: caller.user_id } : {};
  const res = await fetch(url(`${W}/events`, query), { headers: h, signal, cache: 'no-store' });
  if (!res.ok || !res.body) return res.status;
  setLive(true);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return 0;
    buffer += value.replace(/\r\n?/g, '\n');
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      dispatch(buffer.slice(0, cut));
      buffer = buffer.slice(cut + 2);
    }
  }
}

/** Opens the stream and keeps it open until `stopEvents()`. */
export function startEvents() {
  stopEvents();
  const ctl = new AbortController();
  controller = ctl;
  lastId = null;
  (async () => {
    let wait = 1000;
    while (!ctl.signal.aborted) {
      let status = 0;
      try {
        status = await readOnce(ctl.signal);
        if (status === 0) wait = 1000;
      } catch {
        // Dropped: reconnect below.
      }
      setLive(false);
      if (ctl.signal.aborted) return;
      // A refused key will not get better by asking fast.
      const delay = status === 401 || status === 403 ? 30000 : wait;
      await new Promise((r) => setTimeout(r, delay));
      wait = Math.min(wait * 2, 15000);
    }
  })();
}

export function stopEvents() {
  if (controller) controller.abort();
  controller = null;
  setLive(false);
}

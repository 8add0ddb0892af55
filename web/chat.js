// The chat playground (/): a model picker from GET /v1/models and a
// conversation kept in memory, each reply streamed from
// POST /v1/chat/completions (SSE) and drawn as its chunks arrive.

import { $, el, api, state, avatar, errorOf, sessionEnded, showError, clearError, ApiError } from './core.js';

const MODEL_KEY = 'gatehouse.chat-model';
const conversation = []; // [{role, content}] as sent to the API
let modelsLoaded = false;
let wired = false;
let controller = null;

function scrollDown() {
  const log = $('chat-log');
  log.scrollTop = log.scrollHeight;
}

function autosize() {
  const input = $('chat-input');
  input.style.height = 'auto';
  input.style.height = `${Math.min(input.scrollHeight, 200)}px`;
}

function setBusy(busy) {
  $('chat-send').disabled = busy || !$('chat-model').value;
  $('chat-stop').hidden = !busy;
  $('chat-model').disabled = busy;
  $('chat-new').disabled = busy;
}

// One message in the log; answers its body element.
function addMessage(role, text, model) {
  $('chat-empty').hidden = true;
  const who = role === 'user'
    ? el('div', { class: 'msg-who' }, avatar(state.me, 'avatar-sm'), el('strong', {}, 'You'))
    : el('div', { class: 'msg-who' }, el('span', { class: 'avatar avatar-sm avatar-bot', 'aria-hidden': 'true' }, 'AI'),
      el('strong', {}, 'Assistant'), el('span', { class: 'muted small' }, model));
  const body = el('div', { class: 'msg-body', 'data-testid': role === 'user' ? 'chat-prompt' : 'chat-reply' }, text);
  const msg = el('div', { class: `msg msg-${role}`, 'data-testid': `chat-message-${role}` }, who, body);
  $('chat-log').append(msg);
  scrollDown();
  return body;
}

// Reads an SSE body, calling onEvent(event, data) per event; stops when it
// answers false. Answers true when the stream ended with [DONE].
async function readSse(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
    let cut;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let event = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) event = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (!data.length) continue;
      let more;
      try {
        more = onEvent(event, data.join('\n'));
      } catch (e) {
        reader.cancel().catch(() => {});
        throw e;
      }
      if (more === false) {
        reader.cancel().catch(() => {});
        return true;
      }
    }
  }
}

async function send(text) {
  const model = $('chat-model').value;
  clearError($('chat-error'));
  conversation.push({ role: 'user', content: text });
  addMessage('user', text);
  const body = addMessage('assistant', '', model);
  const msg = body.parentElement;
  msg.dataset.state = 'streaming';
  body.append(el('span', { class: 'typing', 'aria-label': 'Writing' }, el('i'), el('i'), el('i')));
  setBusy(true);
  controller = new AbortController();
  let reply = '';
  const show = () => {
    body.textContent = reply;
    scrollDown();
  };
  try {
    const res = await fetch('/v1/chat/completions', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ model, stream: true, messages: conversation }),
      signal: controller.signal,
    });
    if (res.status === 401) {
      sessionEnded();
      return;
    }
    if (!res.ok) throw await errorOf(res);
    const finished = await readSse(res.body, (event, data) => {
      if (data === '[DONE]') return false;
      let chunk;
      try {
        chunk = JSON.parse(data);
      } catch {
        return true;
      }
      if (event === 'error' || chunk.error) {
        throw new ApiError(0, 'stream_error', chunk.error?.message || 'The reply failed.');
      }
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) {
        reply += delta;
        show();
      }
      return true;
    });
    show();
    conversation.push({ role: 'assistant', content: reply });
    msg.dataset.state = finished ? 'done' : 'cut';
    if (!finished) body.append(el('p', { class: 'msg-note' }, 'The reply ended early.'));
  } catch (e) {
    show();
    if (reply) conversation.push({ role: 'assistant', content: reply });
    if (e.name === 'AbortError') {
      msg.dataset.state = 'stopped';
      body.append(el('p', { class: 'msg-note' }, 'Stopped.'));
    } else {
      msg.dataset.state = 'error';
      body.append(el('p', { class: 'msg-note msg-error', role: 'alert' }, e.message || 'The request failed.'));
    }
  } finally {
    controller = null;
    setBusy(false);
    scrollDown();
  }
}

async function loadModels() {
  const select = $('chat-model');
  try {
    const list = await api('/v1/models');
    const ids = list.data.map((m) => m.id).sort();
    select.replaceChildren(...ids.map((id) => el('option', { value: id }, id)));
    if (!ids.length) {
      select.append(el('option', { value: '', disabled: true, selected: true }, 'No models available'));
      $('chat-empty-text').textContent = 'No models are available to you yet. An admin adds providers, or grants you models.';
    }
    const saved = localStorage.getItem(MODEL_KEY);
    if (saved && ids.includes(saved)) select.value = saved;
    modelsLoaded = true;
  } catch (e) {
    select.replaceChildren(el('option', { value: '' }, 'Models unavailable'));
    showError($('chat-error'), e);
  }
  setBusy(false);
}

function newChat() {
  controller?.abort();
  conversation.length = 0;
  for (const m of $('chat-log').querySelectorAll('.msg')) m.remove();
  $('chat-empty').hidden = false;
  clearError($('chat-error'));
  $('chat-input').focus();
}

function wire() {
  if (wired) return;
  wired = true;
  const input = $('chat-input');
  $('chat-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (!text || controller || !$('chat-model').value) return;
    input.value = '';
    autosize();
    send(text);
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      $('chat-form').requestSubmit();
    }
  });
  input.addEventListener('input', autosize);
  $('chat-stop').addEventListener('click', () => controller?.abort());
  $('chat-new').addEventListener('click', newChat);
  $('chat-model').addEventListener('change', () => {
    try { localStorage.setItem(MODEL_KEY, $('chat-model').value); } catch { /* private mode */ }
  });
}

export default {
  async mount() {
    wire();
    if (!modelsLoaded) await loadModels();
    $('chat-input').focus();
  },
};

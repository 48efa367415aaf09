/*
 * Guichet web chat widget — plain JavaScript, no dependency, no build step.
 *
 * Embed on any site with one tag:
 *   <script src="https://helpdesk.example.com/widget.js" async></script>
 * Optional attributes on that tag:
 *   data-lang="fr|en"   forces the interface language (default: French if navigator.language starts with "fr")
 *   data-open="true"    opens the panel at load
 *   data-title="..."    replaces the panel title
 *
 * The interface lives in an open Shadow DOM, so the host page's CSS cannot break it and its CSS
 * cannot leak out. Every message text is put into the page with textContent only: the bot relays
 * text written by strangers, so nothing received is ever parsed as HTML and no link is made clickable.
 *
 * Protocol (JSON text frames over wss://<origin of this script>/webchat/ws):
 *   → {"type":"hello","token":<localStorage "guichet.token" or null>,"locale":"fr-FR"}
 *   ← {"type":"welcome","token":"…","history":[{seq,from,text,choices,time,id?,agent_name?}],"notice":null|"session_expired"}
 *   → {"type":"message","id":"<uuid>","text":"…","payload"?:"…"}
 *   ← {"type":"ack","id":"<uuid>","seq":n|null,"duplicate"?:true}
 *   ← {"type":"message","seq":n,"from":"bot"|"agent","text":"…","choices":[{title,payload}],"time":"…","agent_name"?:"…"}
 *   ← {"type":"error","code":"rate_limited"|"too_long"|"invalid_json"|"bad_request"|"invalid_token"|"server_error","message":"…","id"?:"<uuid>"}
 *
 * Host page API: window.Guichet.open(), .close(), .send(text) → true if the message was queued.
 */
(function () {
  'use strict';

  if (window.Guichet && window.Guichet.__guichet) return; // the tag is on the page twice

  var MAX_CHARS = 2000;
  var COUNTER_FROM = 1800;
  var TOKEN_KEY = 'guichet.token';
  var BASE_DELAY = 1000;
  var MAX_DELAY = 30000;
  var WELCOME_TIMEOUT = 15000; // no welcome after the hello: drop the socket and try again
  var ACK_TIMEOUT = 20000; // a sent message without ack: the socket is probably dead
  var TRANSIENT_MS = 6000;

  var STRINGS = {
    fr: {
      title: 'Assistance informatique',
      openChat: 'Ouvrir la discussion avec l\u2019assistance informatique',
      closeChat: 'Fermer la discussion',
      close: 'Fermer',
      placeholder: 'D\u00e9crivez votre probl\u00e8me\u2026',
      inputLabel: 'Votre message',
      send: 'Envoyer',
      messages: 'Conversation',
      choices: 'R\u00e9ponses propos\u00e9es',
      connecting: 'Connexion\u2026',
      reconnecting: 'Reconnexion\u2026',
      offline: 'Hors ligne \u2014 nouvelle tentative dans un instant. Vos messages partiront d\u00e8s le retour de la connexion.',
      tooLong: 'Message trop long : ' + MAX_CHARS + ' caract\u00e8res au maximum.',
      rateLimited: 'Doucement : trop de messages. Nouvel essai dans quelques secondes.',
      sessionExpired: 'Session expir\u00e9e : une nouvelle conversation a commenc\u00e9.',
      badRequest: 'Message refus\u00e9 par le serveur.',
      invalidJson: 'Message illisible pour le serveur.',
      serverError: 'Erreur du serveur : le message sera renvoy\u00e9.',
      error: 'Une erreur est survenue.',
      welcome: 'Bonjour ! D\u00e9crivez votre probl\u00e8me informatique en quelques mots : je vous aide tout de suite ou je transmets votre demande \u00e0 un technicien.',
      sending: 'Envoi\u2026',
      notSent: 'Non envoy\u00e9',
      you: 'Vous',
      bot: 'Assistant',
      agent: 'Technicien',
      unread: function (n) { return n + (n > 1 ? ' nouveaux messages' : ' nouveau message'); },
      counter: function (n) { return n + ' / ' + MAX_CHARS; }
    },
    en: {
      title: 'IT help desk',
      openChat: 'Open the IT help desk chat',
      closeChat: 'Close the chat',
      close: 'Close',
      placeholder: 'Describe your problem\u2026',
      inputLabel: 'Your message',
      send: 'Send',
      messages: 'Conversation',
      choices: 'Suggested answers',
      connecting: 'Connecting\u2026',
      reconnecting: 'Reconnecting\u2026',
      offline: 'Offline \u2014 retrying shortly. Your messages will be sent when the connection is back.',
      tooLong: 'Message too long: at most ' + MAX_CHARS + ' characters.',
      rateLimited: 'Slow down: too many messages. Retrying in a few seconds.',
      sessionExpired: 'Session expired: a new conversation has started.',
      badRequest: 'The server refused this message.',
      invalidJson: 'The server could not read this message.',
      serverError: 'Server error: the message will be sent again.',
      error: 'Something went wrong.',
      welcome: 'Hello! Describe your IT problem in a few words: I will help you right away or pass your request on to a technician.',
      sending: 'Sending\u2026',
      notSent: 'Not sent',
      you: 'You',
      bot: 'Assistant',
      agent: 'Technician',
      unread: function (n) { return n + (n > 1 ? ' new messages' : ' new message'); },
      counter: function (n) { return n + ' / ' + MAX_CHARS; }
    }
  };

  // ---------------------------------------------------------------- configuration from the tag

  function findScript() {
    var current = document.currentScript;
    if (current && current.src) return current;
    var scripts = document.getElementsByTagName('script');
    for (var i = scripts.length - 1; i >= 0; i--) {
      var src = scripts[i].src;
      if (!src) continue;
      try {
        if (/(^|\/)widget\.js$/.test(new URL(src, document.baseURI).pathname)) return scripts[i];
      } catch (e) { /* not a URL */ }
    }
    return null;
  }

  var script = findScript();
  function attr(name) {
    var value = script ? script.getAttribute(name) : null;
    return value == null ? '' : String(value).trim();
  }

  var serverOrigin = window.location.origin;
  try {
    if (script && script.src) serverOrigin = new URL(script.src, document.baseURI).origin;
  } catch (e) { /* keep the page's origin */ }
  var WS_URL = /^https:/.test(serverOrigin) ? 'wss:' + serverOrigin.slice(6) + '/webchat/ws'
    : /^http:/.test(serverOrigin) ? 'ws:' + serverOrigin.slice(5) + '/webchat/ws'
    : null; // file:// or an opaque origin: no server to talk to

  var forcedLang = attr('data-lang').toLowerCase();
  var browserLang = String(navigator.language || '').toLowerCase();
  var LANG = forcedLang === 'fr' || forcedLang === 'en' ? forcedLang : (browserLang.indexOf('fr') === 0 ? 'fr' : 'en');
  // The bot answers in the language of the hello's locale: follow data-lang when the page forces one.
  var LOCALE = forcedLang === 'fr' || forcedLang === 'en' ? forcedLang : (navigator.language || LANG);
  var T = STRINGS[LANG];
  var TITLE = attr('data-title').slice(0, 80) || T.title;
  var OPEN_AT_LOAD = attr('data-open').toLowerCase() === 'true';

  // ---------------------------------------------------------------- small helpers

  var memoryToken = null; // when localStorage is blocked (private mode, sandboxed frame…)
  function loadToken() {
    try { return window.localStorage.getItem(TOKEN_KEY) || null; } catch (e) { return memoryToken; }
  }
  function saveToken(token) {
    memoryToken = token;
    try { window.localStorage.setItem(TOKEN_KEY, token); } catch (e) { /* memory only */ }
  }
  function forgetToken() {
    memoryToken = null;
    try { window.localStorage.removeItem(TOKEN_KEY); } catch (e) { /* memory only */ }
  }

  function newId() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === 'function') {
      try { return c.randomUUID(); } catch (e) { /* insecure context */ }
    }
    var b = new Uint8Array(16);
    if (c && typeof c.getRandomValues === 'function') c.getRandomValues(b);
    else for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = '';
    for (var j = 0; j < 16; j++) h += (b[j] + 0x100).toString(16).slice(1);
    return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
  }

  /* Builds an element. Attributes are set with setAttribute and text with textContent: never HTML. */
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value == null || value === false) return;
        if (key === 'text') node.textContent = String(value);
        else if (key === 'class') node.className = value;
        else node.setAttribute(key, value === true ? '' : String(value));
      });
    }
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  var SVG_NS = 'http://www.w3.org/2000/svg';
  function icon(paths, size) {
    var svg = document.createElementNS(SVG_NS, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('width', String(size || 24));
    svg.setAttribute('height', String(size || 24));
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    paths.forEach(function (d) {
      var path = document.createElementNS(SVG_NS, 'path');
      path.setAttribute('d', d);
      svg.appendChild(path);
    });
    return svg;
  }
  var ICON_CHAT = ['M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-4.2 3.4A.5.5 0 0 1 4 21v-3a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z'];
  var ICON_DOWN = ['M6 9l6 6 6-6'];
  var ICON_CLOSE = ['M6 6l12 12', 'M18 6L6 18'];
  var ICON_SEND = ['M4 12l16-8-6 16-2.5-6.5z', 'M11.5 13.5L20 4'];

  function addSeq(seq) {
    state.seqs.add(seq);
    if (seq > state.maxSeq) state.maxSeq = seq;
  }

  function toSeq(value) {
    return typeof value === 'number' && isFinite(value) ? value : null;
  }
  function sender(value) {
    return value === 'user' || value === 'agent' ? value : 'bot';
  }
  function asText(value) {
    return typeof value === 'string' ? value : value == null ? '' : String(value);
  }

  function formatTime(iso) {
    var date = iso ? new Date(iso) : new Date();
    if (isNaN(date.getTime())) return null;
    var sameDay = date.toDateString() === new Date().toDateString();
    var options = sameDay ? { hour: '2-digit', minute: '2-digit' }
      : { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' };
    try {
      return { iso: date.toISOString(), short: date.toLocaleString(LANG, options), long: date.toLocaleString(LANG) };
    } catch (e) {
      return { iso: date.toISOString(), short: date.toISOString().slice(11, 16), long: date.toISOString() };
    }
  }

  // ---------------------------------------------------------------- styles

  var CSS = [
    ':host{all:initial}',
    '.gw{all:initial;--accent:#2563eb;--accent-dark:#1d4ed8;--accent-soft:#eaf1fe;--ink:#1f2933;--muted:#64748b;',
    '  --line:#e2e8f0;--bot:#f1f5f9;--agent:#e7f6f1;--agent-line:#b7e4d4;--danger:#b42318;--warn-bg:#fff7e6;--warn:#8a5300;',
    '  font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans",sans-serif;',
    '  font-size:15px;line-height:1.45;color:var(--ink);-webkit-font-smoothing:antialiased;text-align:left;direction:ltr}',
    '.gw *,.gw *::before,.gw *::after{box-sizing:border-box}',
    '.gw [hidden]{display:none!important}',
    '.sr-only{position:absolute!important;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap;border:0}',
    'button{font:inherit;color:inherit;margin:0}',
    ':focus-visible{outline:3px solid #93b4f5;outline-offset:2px}',

    '.launcher{position:fixed;right:20px;bottom:20px;width:58px;height:58px;border-radius:50%;border:0;padding:0;cursor:pointer;',
    '  background:var(--accent);color:#fff;display:flex;align-items:center;justify-content:center;',
    '  box-shadow:0 6px 18px rgba(15,23,42,.24),0 2px 4px rgba(15,23,42,.12);transition:transform .15s ease,background .15s ease}',
    '.launcher:hover{background:var(--accent-dark);transform:translateY(-1px)}',
    '.launcher svg{fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round}',
    '.launcher .i-chat{fill:currentColor;stroke:none}',
    '.badge{position:absolute;top:-3px;right:-3px;min-width:22px;height:22px;padding:0 6px;border-radius:11px;background:#dc2626;',
    '  color:#fff;font-size:12px;font-weight:700;line-height:22px;text-align:center;box-shadow:0 0 0 2px #fff}',

    '.panel{position:fixed;right:20px;bottom:92px;width:360px;height:520px;max-width:calc(100vw - 40px);max-height:calc(100vh - 112px);',
    '  display:flex;flex-direction:column;background:#fff;border:1px solid rgba(15,23,42,.08);border-radius:16px;overflow:hidden;',
    '  box-shadow:0 16px 48px rgba(15,23,42,.18),0 3px 10px rgba(15,23,42,.08);animation:gw-in .18s ease-out}',
    '@keyframes gw-in{from{opacity:0;transform:translateY(8px)}to{opacity:1;transform:none}}',

    '.header{flex:none;display:flex;align-items:center;gap:10px;padding:14px 12px 14px 18px;background:var(--accent);color:#fff}',
    '.title{flex:1;margin:0;font-size:16px;font-weight:600;line-height:1.3;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}',
    '.close{flex:none;width:34px;height:34px;border:0;border-radius:8px;background:transparent;color:#fff;cursor:pointer;',
    '  display:flex;align-items:center;justify-content:center;padding:0}',
    '.close:hover{background:rgba(255,255,255,.16)}',
    '.close svg{fill:none;stroke:currentColor;stroke-width:2.2;stroke-linecap:round}',

    '.list{flex:1;min-height:0;overflow-y:auto;overscroll-behavior:contain;padding:16px 14px 8px;background:#fff;',
    '  display:flex;flex-direction:column;gap:10px}',
    '.hint,.notice{align-self:center;max-width:92%;text-align:center;font-size:13px;color:var(--muted);padding:6px 10px;',
    '  white-space:pre-wrap;overflow-wrap:anywhere}',
    '.notice{background:var(--warn-bg);color:var(--warn);border-radius:8px}',

    '.row{display:flex;flex-direction:column;max-width:84%;align-items:flex-start}',
    '.row-user{align-self:flex-end;align-items:flex-end}',
    '.row-bot,.row-agent{align-self:flex-start}',
    '.meta{font-size:12px;font-weight:600;color:#0f6b50;margin:0 0 3px 4px}',
    '.bubble{padding:9px 13px;border-radius:16px;white-space:pre-wrap;overflow-wrap:anywhere;word-break:normal;max-width:100%}',
    '.row-user .bubble{background:var(--accent);color:#fff;border-bottom-right-radius:5px}',
    '.row-bot .bubble{background:var(--bot);color:var(--ink);border-bottom-left-radius:5px}',
    '.row-agent .bubble{background:var(--agent);color:var(--ink);border:1px solid var(--agent-line);border-bottom-left-radius:5px}',
    '.bubble[data-state="pending"]{opacity:.6}',
    '.bubble[data-state="failed"]{background:#fff;color:var(--ink);border:1px solid #f4b4ae;opacity:1}',
    '.foot{font-size:11.5px;color:var(--muted);margin:3px 6px 0;display:flex;gap:6px}',
    '.foot:empty{display:none}',
    '.foot .err{color:var(--danger);font-weight:600}',

    '.choices{display:flex;flex-wrap:wrap;gap:6px;margin-top:7px}',
    '.choice{border:1px solid var(--accent);background:#fff;color:var(--accent);border-radius:999px;padding:6px 13px;',
    '  font-size:14px;line-height:1.3;cursor:pointer;text-align:left;white-space:pre-wrap;overflow-wrap:anywhere;max-width:100%}',
    '.choice:hover:not(:disabled){background:var(--accent-soft)}',
    '.choice:disabled{cursor:default;border-color:var(--line);color:#94a3b8;background:#fff}',
    '.choice.chosen{border-color:var(--accent);background:var(--accent-soft);color:var(--accent-dark)}',

    '.status{flex:none;font-size:12.5px;line-height:1.35;padding:0 14px;color:var(--muted);background:#fff}',
    '.status:not(:empty){padding:7px 14px;border-top:1px solid var(--line)}',
    '.status[data-status="offline"],.status[data-status="rate_limited"]{background:var(--warn-bg);color:var(--warn)}',
    '.status[data-status="error"],.status[data-status="too_long"]{background:#fef3f2;color:var(--danger)}',

    '.composer{flex:none;display:flex;align-items:flex-end;gap:8px;padding:10px 10px 10px 14px;border-top:1px solid var(--line);background:#fff;margin:0}',
    '.field{flex:1;min-width:0;display:flex;flex-direction:column}',
    '.input{display:block;width:100%;resize:none;border:1px solid #cbd5e1;border-radius:12px;padding:9px 12px;margin:0;',
    '  font:inherit;font-size:15px;line-height:1.4;color:var(--ink);background:#fff;min-height:40px;max-height:132px;overflow-y:auto}',
    '.input::placeholder{color:#94a3b8}',
    '.input:focus{outline:none;border-color:var(--accent);box-shadow:0 0 0 3px rgba(37,99,235,.18)}',
    '.counter{font-size:11.5px;color:var(--muted);text-align:right;margin:3px 4px 0}',
    '.counter.full{color:var(--danger);font-weight:600}',
    '.send{flex:none;width:40px;height:40px;border:0;border-radius:12px;background:var(--accent);color:#fff;cursor:pointer;',
    '  display:flex;align-items:center;justify-content:center;padding:0}',
    '.send:hover:not(:disabled){background:var(--accent-dark)}',
    '.send:disabled{background:#cbd5e1;cursor:default}',
    '.send svg{fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round}',

    '@media (max-width:480px){',
    '  .panel{inset:0;width:100%;height:100%;max-width:none;max-height:none;border-radius:0;border:0;animation:none}',
    '  .gw.is-open .launcher{display:none}',
    '  .input{font-size:16px}', // below 16px iOS zooms the page on focus
    '}',
    '@media (prefers-reduced-motion:reduce){.panel{animation:none}.launcher{transition:none}}',
    '@media print{.gw{display:none}}'
  ].join('\n');

  // ---------------------------------------------------------------- the interface

  var host = document.createElement('div');
  host.setAttribute('data-guichet-widget', '');
  // Through the CSSOM (not a style attribute), so a page's CSP without 'unsafe-inline' allows it.
  [['all', 'initial'], ['position', 'fixed'], ['right', '0'], ['bottom', '0'], ['width', '0'], ['height', '0'],
    ['display', 'block'], ['z-index', '2147483000']].forEach(function (p) {
    host.style.setProperty(p[0], p[1], 'important');
  });
  var shadow = host.attachShadow({ mode: 'open' });
  try {
    var sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
    shadow.adoptedStyleSheets = [sheet]; // not subject to the host page's style-src CSP
  } catch (e) {
    shadow.appendChild(el('style', { text: CSS }));
  }

  var chatIcon = icon(ICON_CHAT, 26);
  chatIcon.setAttribute('class', 'i-chat');
  var downIcon = icon(ICON_DOWN, 26);
  downIcon.setAttribute('class', 'i-down');
  var badge = el('span', { class: 'badge', 'aria-hidden': 'true', 'data-testid': 'guichet-unread', hidden: true });
  var launcher = el('button', {
    type: 'button', class: 'launcher', 'data-testid': 'guichet-launcher',
    'aria-label': T.openChat, 'aria-expanded': 'false', 'aria-controls': 'guichet-panel'
  }, [chatIcon, downIcon, badge]);
  downIcon.style.display = 'none';

  var closeButton = el('button', {
    type: 'button', class: 'close', 'data-testid': 'guichet-close', 'aria-label': T.closeChat, title: T.close
  }, [icon(ICON_CLOSE, 20)]);
  var header = el('div', { class: 'header' }, [
    el('h2', { class: 'title', id: 'guichet-title', text: TITLE }),
    closeButton
  ]);
  var list = el('div', {
    class: 'list', role: 'log', 'aria-live': 'polite', 'aria-relevant': 'additions',
    'aria-label': T.messages, tabindex: '0', 'data-testid': 'guichet-messages'
  });
  var status = el('div', {
    class: 'status', role: 'status', 'aria-live': 'polite', 'data-testid': 'guichet-status', 'data-status': 'idle'
  });
  var input = el('textarea', {
    class: 'input', 'data-testid': 'guichet-input', rows: '1', maxlength: String(MAX_CHARS),
    placeholder: T.placeholder, 'aria-label': T.inputLabel, 'aria-describedby': 'guichet-counter',
    autocomplete: 'off', enterkeyhint: 'send'
  });
  var counter = el('div', { class: 'counter', id: 'guichet-counter', hidden: true });
  var sendButton = el('button', {
    type: 'submit', class: 'send', 'data-testid': 'guichet-send', 'aria-label': T.send, title: T.send, disabled: true
  }, [icon(ICON_SEND, 20)]);
  var composer = el('form', { class: 'composer', novalidate: true }, [
    el('div', { class: 'field' }, [input, counter]),
    sendButton
  ]);
  var panel = el('section', {
    class: 'panel', id: 'guichet-panel', 'data-testid': 'guichet-panel', role: 'dialog',
    'aria-modal': 'false', 'aria-labelledby': 'guichet-title', hidden: true
  }, [header, list, status, composer]);
  var root = el('div', { class: 'gw', lang: LANG }, [panel, launcher]);
  shadow.appendChild(root);

  // ---------------------------------------------------------------- state

  var state = {
    ws: null,
    ready: false, // the current socket got its welcome
    wanted: false, // a connection is desired (lazy until the panel opens or a conversation exists)
    everReady: false,
    attempt: 0,
    reconnectTimer: 0,
    welcomeTimer: 0,
    token: loadToken(),
    seqs: new Set(), // seqs shown in the list
    maxSeq: 0, // highest of them: a refused message keeps its place after it across re-renders
    local: new Map(), // client id → own message not acknowledged yet (pending or failed), in send order
    activeChoices: null,
    pausedUntil: 0, // rate limited: nothing is sent before this time
    pauseTimer: 0,
    pauseStreak: 0,
    connStatus: 'idle',
    transient: null,
    transientTimer: 0,
    open: false,
    unread: 0
  };

  // ---------------------------------------------------------------- status line

  function renderStatus() {
    var kind = state.transient ? state.transient.kind : state.connStatus;
    var text = state.transient ? state.transient.text
      : state.connStatus === 'connecting' ? T.connecting
      : state.connStatus === 'reconnecting' ? T.reconnecting
      : state.connStatus === 'offline' ? T.offline
      : '';
    status.setAttribute('data-status', kind);
    if (status.textContent !== text) status.textContent = text;
  }
  function setConnStatus(kind) {
    state.connStatus = kind;
    renderStatus();
  }
  function showTransient(kind, text, ms) {
    clearTimeout(state.transientTimer);
    state.transient = { kind: kind, text: text };
    renderStatus();
    state.transientTimer = setTimeout(function () {
      state.transient = null;
      renderStatus();
    }, ms || TRANSIENT_MS);
  }

  // ---------------------------------------------------------------- rendering messages

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }
  function scrollToBottom() {
    list.scrollTop = list.scrollHeight;
  }

  function senderLabel(from, agentName) {
    if (from === 'user') return T.you;
    if (from === 'agent') return agentName || T.agent;
    return T.bot;
  }

  /* One message: a row with an optional name, the bubble (text only), choices and a foot line. */
  function buildRow(message, choicesActive) {
    var from = sender(message.from);
    var agentName = from === 'agent' && message.agent_name ? asText(message.agent_name).slice(0, 80) : '';
    var row = el('div', { class: 'row row-' + from });
    if (from === 'agent') row.appendChild(el('div', { class: 'meta', text: agentName || T.agent }));
    else row.appendChild(el('span', { class: 'sr-only', text: senderLabel(from) + ' : ' }));

    var bubble = el('div', { class: 'bubble', 'data-testid': 'guichet-message', 'data-from': from });
    bubble.textContent = asText(message.text);
    var seq = toSeq(message.seq);
    if (seq !== null) bubble.setAttribute('data-seq', String(seq));
    if (from === 'user') {
      bubble.setAttribute('data-state', message.state || 'sent');
      if (message.id) bubble.setAttribute('data-id', asText(message.id));
    }
    row.appendChild(bubble);

    if (from !== 'user' && Array.isArray(message.choices)) {
      var group = buildChoices(message.choices, choicesActive);
      if (group) row.appendChild(group);
    }

    var foot = el('div', { class: 'foot' });
    var when = formatTime(message.time);
    if (when) foot.appendChild(el('time', { datetime: when.iso, title: when.long, text: when.short }));
    var note = el('span', { class: 'note' });
    if (message.state === 'pending') note.textContent = T.sending;
    foot.appendChild(note);
    row.appendChild(foot);
    return { row: row, bubble: bubble, note: note };
  }

  function buildChoices(choices, active) {
    var valid = choices.filter(function (c) { return c && typeof c.title === 'string' && c.title.trim(); });
    if (!valid.length) return null;
    var group = el('div', { class: 'choices', role: 'group', 'aria-label': T.choices });
    valid.forEach(function (choice) {
      var button = el('button', {
        type: 'button', class: 'choice', 'data-testid': 'guichet-choice', 'aria-pressed': 'false', text: choice.title
      });
      button.disabled = !active;
      button.addEventListener('click', function () {
        if (button.disabled) return;
        var payload = typeof choice.payload === 'string' ? choice.payload : null;
        if (!submit(choice.title, payload)) return;
        disableChoices(group);
        button.classList.add('chosen');
        button.setAttribute('aria-pressed', 'true');
        input.focus(); // the clicked button is now disabled: keep the focus somewhere useful
      });
      group.appendChild(button);
    });
    if (active) {
      if (state.activeChoices && state.activeChoices !== group) disableChoices(state.activeChoices);
      state.activeChoices = group;
    }
    return group;
  }

  function disableChoices(group) {
    if (!group) return;
    var buttons = group.querySelectorAll('button');
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = true;
    if (state.activeChoices === group) state.activeChoices = null;
  }

  function showHint() {
    list.appendChild(el('div', { class: 'hint', 'data-testid': 'guichet-hint', text: T.welcome }));
  }

  function markSent(entry, seq) {
    entry.bubble.setAttribute('data-state', 'sent');
    if (seq !== null) entry.bubble.setAttribute('data-seq', String(seq));
    entry.note.textContent = '';
  }

  function markFailed(entry, reason) {
    clearTimeout(entry.ackTimer);
    entry.status = 'failed';
    entry.inFlight = false;
    entry.bubble.setAttribute('data-state', 'failed');
    entry.note.textContent = '';
    entry.note.appendChild(el('span', { class: 'err', text: T.notSent }));
    entry.note.appendChild(document.createTextNode(' \u2014 ' + reason));
  }

  // ---------------------------------------------------------------- incoming frames

  function onWelcome(frame) {
    clearTimeout(state.welcomeTimer);
    state.ready = true;
    state.everReady = true;
    state.attempt = 0;
    if (typeof frame.token === 'string' && frame.token) {
      state.token = frame.token;
      saveToken(frame.token);
    }
    var history = Array.isArray(frame.history) ? frame.history : [];
    list.setAttribute('aria-busy', 'true'); // do not read the whole history aloud again
    list.textContent = '';
    state.seqs.clear();
    state.maxSeq = 0;
    state.activeChoices = null;
    if (frame.notice === 'session_expired') {
      list.appendChild(el('div', { class: 'notice', 'data-testid': 'guichet-notice', text: T.sessionExpired }));
    } else if (frame.notice) {
      list.appendChild(el('div', { class: 'notice', 'data-testid': 'guichet-notice', text: asText(frame.notice) }));
    }
    if (!history.length) showHint();

    var lastUser = -1;
    history.forEach(function (entry, i) { if (entry && entry.from === 'user') lastUser = i; });
    var lastOther = -1;
    history.forEach(function (entry, i) { if (entry && entry.from !== 'user') lastOther = i; });

    // Messages the server refused are not in the history: they go back where they were.
    var refused = Array.from(state.local.values()).filter(function (e) { return e.status === 'failed'; });
    function placeRefused(beforeSeq) {
      while (refused.length && (beforeSeq === null || refused[0].afterSeq < beforeSeq)) {
        list.appendChild(refused.shift().row);
      }
    }

    history.forEach(function (entry, i) {
      if (!entry || typeof entry !== 'object') return;
      var seq = toSeq(entry.seq);
      if (seq !== null && state.seqs.has(seq)) return;
      if (seq !== null) placeRefused(seq);
      if (entry.from === 'user' && typeof entry.id === 'string' && state.local.has(entry.id)) {
        // Stored before the connection dropped, but its ack was lost: it is not pending any more.
        clearTimeout(state.local.get(entry.id).ackTimer);
        state.local.delete(entry.id);
      }
      // Only the latest bot message's choices stay usable, and not once the person has answered.
      var built = buildRow(entry, i === lastOther && i > lastUser);
      if (seq !== null) addSeq(seq);
      list.appendChild(built.row);
    });

    placeRefused(null);
    // Own messages not in the history yet go back at the end, then are sent again.
    state.local.forEach(function (entry) {
      if (entry.status !== 'pending') return;
      entry.inFlight = false;
      list.appendChild(entry.row);
    });
    list.removeAttribute('aria-busy');
    scrollToBottom();
    setConnStatus('online');
    flush();
  }

  function onAck(frame) {
    var entry = state.local.get(frame.id);
    if (!entry) return;
    clearTimeout(entry.ackTimer);
    state.local.delete(frame.id);
    state.pauseStreak = 0;
    var seq = toSeq(frame.seq);
    if (seq !== null && state.seqs.has(seq)) {
      entry.row.remove(); // already shown (history or echo)
      return;
    }
    if (seq !== null) addSeq(seq);
    markSent(entry, seq);
  }

  function rowAfter(seq) {
    var bubbles = list.querySelectorAll('[data-seq]');
    for (var i = 0; i < bubbles.length; i++) {
      if (Number(bubbles[i].getAttribute('data-seq')) > seq) return bubbles[i].parentNode;
    }
    return null;
  }

  function onMessage(frame) {
    var seq = toSeq(frame.seq);
    if (seq !== null && state.seqs.has(seq)) return;
    if (frame.from === 'user' && typeof frame.id === 'string' && state.local.has(frame.id)) {
      onAck({ id: frame.id, seq: seq });
      return;
    }
    var stick = nearBottom();
    var from = sender(frame.from);
    if (from !== 'user' && state.activeChoices) disableChoices(state.activeChoices);
    var built = buildRow(frame, from !== 'user');
    // A reply delivered late (another server took over after a crash) goes where the
    // conversation's sequence puts it, not at the bottom.
    var later = seq !== null && seq < state.maxSeq ? rowAfter(seq) : null;
    if (seq !== null) addSeq(seq);
    if (later) list.insertBefore(built.row, later);
    else list.appendChild(built.row);
    if (stick) scrollToBottom();
    if (from !== 'user' && !state.open) {
      state.unread += 1;
      renderBadge();
    }
  }

  function onError(frame) {
    var code = asText(frame.code);
    var entry = typeof frame.id === 'string' ? state.local.get(frame.id) : null;
    var fallback = asText(frame.message) || T.error;
    switch (code) {
      case 'too_long':
      case 'bad_request':
        if (entry && entry.status === 'pending') {
          clearTimeout(entry.ackTimer);
          markFailed(entry, code === 'too_long' ? T.tooLong : T.badRequest);
        }
        showTransient(code === 'too_long' ? 'too_long' : 'error', code === 'too_long' ? T.tooLong : T.badRequest);
        break;
      case 'rate_limited':
        requeue(entry);
        pause();
        break;
      case 'server_error':
        // Not stored: keep it pending and send it again a little later (the server dedupes by id).
        requeue(entry);
        if (entry) pause();
        showTransient('error', T.serverError);
        break;
      case 'invalid_token':
        // The server goes on with a new session on this same socket; its welcome follows.
        state.token = null;
        forgetToken();
        break;
      case 'invalid_json':
        showTransient('error', T.invalidJson);
        break;
      default:
        showTransient('error', fallback);
    }
  }

  function onFrame(data) {
    var frame;
    try { frame = JSON.parse(data); } catch (e) { return; }
    if (!frame || typeof frame !== 'object') return;
    if (frame.type === 'welcome') onWelcome(frame);
    else if (frame.type === 'error') onError(frame); // invalid_token comes before the welcome
    else if (!state.ready) return; // acks and messages only count after the welcome
    else if (frame.type === 'ack') onAck(frame);
    else if (frame.type === 'message') onMessage(frame);
  }

  // ---------------------------------------------------------------- sending

  function requeue(entry) {
    var entries = entry ? [entry] : Array.from(state.local.values()); // no id: any of them may have been refused
    entries.forEach(function (e) {
      clearTimeout(e.ackTimer);
      e.inFlight = false;
    });
  }

  function pause() {
    state.pauseStreak += 1;
    var delay = Math.min(MAX_DELAY, 3000 * Math.pow(2, state.pauseStreak - 1)) * (0.8 + Math.random() * 0.4);
    state.pausedUntil = Date.now() + delay;
    clearTimeout(state.pauseTimer);
    state.pauseTimer = setTimeout(function () {
      state.pausedUntil = 0;
      flush();
    }, delay);
    showTransient('rate_limited', T.rateLimited, delay);
  }

  function transmit(entry) {
    var ws = state.ws;
    var frame = { type: 'message', id: entry.id, text: entry.text };
    if (entry.payload != null) frame.payload = entry.payload;
    try {
      ws.send(JSON.stringify(frame));
    } catch (e) {
      return false;
    }
    entry.inFlight = true;
    clearTimeout(entry.ackTimer);
    entry.ackTimer = setTimeout(function () {
      // No ack and no error: the socket is half dead. Reconnecting resends with the same id.
      if (state.ws === ws && entry.inFlight && state.local.has(entry.id)) ws.close(4000, 'no ack');
    }, ACK_TIMEOUT);
    return true;
  }

  function flush() {
    if (!state.ready || !state.ws || state.ws.readyState !== 1 || Date.now() < state.pausedUntil) return;
    state.local.forEach(function (entry) {
      if (entry.status === 'pending' && !entry.inFlight) transmit(entry);
    });
  }

  /* Shows the person's message at once (pending) and sends it when connected. */
  function submit(rawText, payload) {
    var text = asText(rawText).replace(/\r\n?/g, '\n').trim();
    if (!text) return false;
    if (text.length > MAX_CHARS) {
      showTransient('too_long', T.tooLong);
      return false;
    }
    var id = newId();
    var built = buildRow({ from: 'user', text: text, id: id, state: 'pending', time: new Date().toISOString() }, false);
    var entry = {
      id: id, text: text, payload: payload == null ? null : payload, status: 'pending', inFlight: false, ackTimer: 0,
      afterSeq: state.maxSeq, row: built.row, bubble: built.bubble, note: built.note
    };
    state.local.set(id, entry);
    list.appendChild(built.row);
    scrollToBottom();
    if (state.ready) flush();
    else connectNow();
    return true;
  }

  function sendFromInput() {
    if (submit(input.value, null)) {
      input.value = '';
      updateComposer();
    }
  }

  // ---------------------------------------------------------------- connection

  function connect() {
    state.wanted = true;
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = 0;
    if (state.ws) return;
    if (!WS_URL) {
      setConnStatus('offline');
      return;
    }
    // First attempt: "connecting"; retries keep the status scheduleReconnect set.
    if (state.attempt === 0 && !state.everReady) setConnStatus('connecting');
    var ws;
    try {
      ws = new WebSocket(WS_URL);
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    state.ready = false;
    ws.onopen = function () {
      if (state.ws !== ws) return;
      try {
        ws.send(JSON.stringify({ type: 'hello', token: state.token || null, locale: LOCALE }));
      } catch (e) { /* the close event follows */ }
      state.welcomeTimer = setTimeout(function () {
        if (state.ws === ws && !state.ready) ws.close(4000, 'no welcome');
      }, WELCOME_TIMEOUT);
    };
    ws.onmessage = function (event) {
      if (state.ws === ws && typeof event.data === 'string') onFrame(event.data);
    };
    ws.onclose = function () {
      if (state.ws !== ws) return;
      dropSocket();
      scheduleReconnect();
    };
    ws.onerror = function () { /* a close event always follows */ };
  }

  function dropSocket() {
    clearTimeout(state.welcomeTimer);
    state.ws = null;
    state.ready = false;
    state.local.forEach(function (entry) {
      clearTimeout(entry.ackTimer);
      entry.inFlight = false;
    });
  }

  function scheduleReconnect() {
    if (!state.wanted) return;
    // Exponential backoff with jitter: 1 s, 1–2 s, 2–4 s, … up to 15–30 s.
    var cap = Math.min(MAX_DELAY, BASE_DELAY * Math.pow(2, state.attempt));
    var delay = Math.max(BASE_DELAY, cap / 2 + Math.random() * cap / 2);
    // A working connection that just dropped: "reconnecting"; anything longer: "offline".
    setConnStatus(state.attempt === 0 && state.everReady ? 'reconnecting' : 'offline');
    state.attempt += 1;
    clearTimeout(state.reconnectTimer);
    state.reconnectTimer = setTimeout(connect, delay);
  }

  /* A person is waiting (opened the panel, sent a message, came back online): do not wait for the backoff. */
  function connectNow() {
    if (!state.ws) connect();
  }

  window.addEventListener('online', function () {
    if (state.wanted) connectNow();
  });
  window.addEventListener('offline', function () {
    if (!state.ready) setConnStatus('offline');
  });
  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState === 'visible' && state.wanted) connectNow();
  });

  // ---------------------------------------------------------------- panel and composer

  function renderBadge() {
    badge.hidden = state.unread === 0;
    badge.textContent = state.unread > 9 ? '9+' : String(state.unread);
    launcher.setAttribute('aria-label', state.open ? T.closeChat
      : state.unread ? T.openChat + ' (' + T.unread(state.unread) + ')' : T.openChat);
  }

  function openPanel(focus) {
    if (!state.open) {
      state.open = true;
      panel.hidden = false;
      root.classList.add('is-open');
      launcher.setAttribute('aria-expanded', 'true');
      chatIcon.style.display = 'none';
      downIcon.style.display = '';
      state.unread = 0;
      renderBadge();
      scrollToBottom();
    }
    connectNow();
    if (focus) {
      try { input.focus({ preventScroll: true }); } catch (e) { input.focus(); }
    }
  }

  function closePanel(restoreFocus) {
    if (!state.open) return;
    state.open = false;
    panel.hidden = true;
    root.classList.remove('is-open');
    launcher.setAttribute('aria-expanded', 'false');
    chatIcon.style.display = '';
    downIcon.style.display = 'none';
    renderBadge();
    if (restoreFocus) launcher.focus();
  }

  function updateComposer() {
    var length = input.value.length;
    counter.hidden = length < COUNTER_FROM;
    counter.textContent = T.counter(length);
    counter.classList.toggle('full', length >= MAX_CHARS);
    sendButton.disabled = !input.value.trim() || length > MAX_CHARS;
    input.style.height = 'auto';
    input.style.height = Math.min(input.scrollHeight + 2, 132) + 'px';
  }

  launcher.addEventListener('click', function () {
    if (state.open) closePanel(false);
    else openPanel(true);
  });
  closeButton.addEventListener('click', function () { closePanel(true); });
  panel.addEventListener('keydown', function (event) {
    if (event.key === 'Escape') {
      event.stopPropagation();
      closePanel(true);
    }
  });
  composer.addEventListener('submit', function (event) {
    event.preventDefault();
    sendFromInput();
  });
  input.addEventListener('keydown', function (event) {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      sendFromInput();
    }
  });
  input.addEventListener('input', updateComposer);

  // ---------------------------------------------------------------- start

  showHint();
  renderStatus();
  renderBadge();

  window.Guichet = Object.freeze({
    __guichet: true,
    open: function () { openPanel(true); },
    close: function () { closePanel(false); },
    send: function (text) {
      openPanel(false);
      return submit(text, null);
    }
  });

  function mount() {
    if (!host.isConnected) document.body.appendChild(host);
    if (OPEN_AT_LOAD) openPanel(false); // no focus: do not steal it from the page
    // Connect at load only when there is a conversation to show; otherwise wait until the panel
    // opens, so that visitors who never use the chat do not each create a session.
    if (state.token) connect();
  }
  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount);
})();

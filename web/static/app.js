// OTrade monitor. One WebSocket carries the live state (snapshots at the engine's push rate plus
// events as they happen); REST serves the controls and the tables the periodic snapshots leave
// out (orders, trades, performance). No framework, no build step: the chart library is the
// vendored global `LightweightCharts`, loaded by index.html before this module.
const LC = window.LightweightCharts;
const TOKEN_KEY = 'otrade.token';
const MAX_MARKERS = 500; // fills kept per symbol, so a long session stays light
const TEXT_MARKERS = 6; // only the newest markers carry a price label
const MAX_EVENTS = 50;
const STALE_MS = 3000; // an open socket silent this long (10 pushes/s expected) died silently
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- formatting
const esc = (s) => String(s ?? '').replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
const finite = (v) => v != null && Number.isFinite(Number(v));
const num = (v, d = 2) =>
  finite(v) ? Number(v).toLocaleString('en', { minimumFractionDigits: d, maximumFractionDigits: d }) : '–';
const int = (v) => (finite(v) ? Number(v).toLocaleString('en') : '–');
const signed = (v) => `<span class="${v > 0 ? 'pos' : v < 0 ? 'neg' : ''}">${num(v)}</span>`;
// h23, not hour12: false, which some locales render as "24:05" after midnight
const HMS = { hourCycle: 'h23', hour: '2-digit', minute: '2-digit', second: '2-digit' };
const HM = { ...HMS, second: undefined };
const hms = (date, seconds = true) => date.toLocaleTimeString([], seconds ? HMS : HM);
const clock = (ns) => (ns ? hms(new Date(ns / 1e6)) : '–');
const total = (counts) => Object.values(counts || {}).reduce((a, b) => a + b, 0);
const breakdown = (counts) => esc(Object.entries(counts || {}).map(([k, n]) => `${k}: ${n}`).join(', '));
const counts = (c) => `<span title="${breakdown(c)}">${int(total(c))}</span>`;
const pad = (n) => String(Math.floor(n)).padStart(2, '0');
const duration = (s) => (finite(s) ? `${pad(s / 3600)}:${pad((s % 3600) / 60)}:${pad(s % 60)}` : '–');

// DOM writes happen only when a value changed: the page renders at the push rate and most
// values (tables, labels) are the same in two consecutive snapshots.
function setText(el, value) {
  if (typeof el === 'string') el = $(el);
  if (el.textContent !== value) el.textContent = value;
}
const htmlCache = new Map();
function setHtml(id, html) {
  if (htmlCache.get(id) === html) return;
  htmlCache.set(id, html);
  $(id).innerHTML = html;
}
function table(id, cols, rows) {
  const head = cols.map(([title]) => `<th>${title}</th>`).join('');
  const body = rows.length
    ? rows.map((r) => `<tr>${cols.map(([, cell]) => `<td>${cell(r)}</td>`).join('')}</tr>`).join('')
    : `<tr><td colspan="${cols.length}" class="empty">none</td></tr>`;
  setHtml(id, `<thead><tr>${head}</tr></thead><tbody>${body}</tbody>`);
}
const kv = (id, pairs) => setHtml(id, pairs.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join(''));

// ---------------------------------------------------------------- state and render scheduling
const state = { status: null, instruments: [], positions: [], orders: { open: [] }, trades: [], perf: null };
const events = [];
let eventsDirty = false;
let renderQueued = false;
// However many messages arrive, the DOM is updated at most once per animation frame (and not
// at all while the tab is hidden; the chart data keeps up meanwhile).
function queueRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(render);
}

// ---------------------------------------------------------------- token
const token = () => sessionStorage.getItem(TOKEN_KEY) || '';
function tokenFromFragment() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (!m) return false;
  sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  // off the address bar and the history, so it is not bookmarked or shared by accident
  history.replaceState(null, '', location.pathname + location.search);
  return true;
}
function askToken(message) {
  setText('token-msg', message);
  $('token-input').value = '';
  if (!$('token-dialog').open) $('token-dialog').showModal();
}
$('token-form').addEventListener('submit', () => {
  sessionStorage.setItem(TOKEN_KEY, $('token-input').value.trim());
  connect();
});
window.addEventListener('hashchange', () => tokenFromFragment() && connect());

// ---------------------------------------------------------------- REST
async function api(path, body) {
  const init = { headers: { Authorization: `Bearer ${token()}` } };
  if (body !== undefined) init.method = 'POST';
  if (body) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(`api/${path}`, init);
  if (res.status === 401 || res.status === 403) unauthorized();
  if (!res.ok) throw new Error(`HTTP ${res.status} ${(await res.json().catch(() => ({}))).detail ?? ''}`);
  return res.json();
}

// Orders, trades and performance are refetched after the events that change them, debounced:
// a fast strategy fills several times a second and the trade list is up to 500 rows.
let refreshTimer = 0;
function refreshSoon(delay = 1000) {
  if (!refreshTimer) refreshTimer = setTimeout(refresh, delay);
}
async function refresh() {
  refreshTimer = 0;
  try {
    const [orders, trades, perf] = await Promise.all([api('orders'), api('trades'), api('performance')]);
    Object.assign(state, { orders, trades, perf });
    queueRender();
  } catch (err) {
    console.warn('refresh failed', err); // the tables keep their last data; #conn shows the link
  }
}
setInterval(() => ws && refreshSoon(0), 5000); // a slow safety net for anything missed

async function control(action, question, body = null) {
  if (!window.confirm(question)) return;
  try {
    state.status = await api(`control/${action}`, body);
    refreshSoon(100);
  } catch (err) {
    logEvent({ type: 'error', reason: `${action} failed: ${err.message}` });
  }
  queueRender();
}
$('btn-pause').onclick = () => control('pause', 'Pause trading? New entries are refused.');
$('btn-resume').onclick = () => control('resume', 'Resume trading?');
$('btn-flatten').onclick = () => control('flatten', 'Flatten ALL positions at market now?');
$('btn-kill').onclick = () => control('kill', 'KILL SWITCH: flatten every position, cancel working orders and refuse new ones until resumed?');
$('btn-reconcile').onclick = () => control('reconcile', 'Check the broker\'s positions and orders again?');
$('btn-adopt').onclick = () => control('adopt', 'Take the BROKER\'s positions as the engine\'s (journaled as fills)?');

// ---------------------------------------------------------------- WebSocket
let ws = null;
let backoff = 500;
let retryTimer = 0;
let lastMessage = 0;

function setConn(value) {
  setText('conn', value);
  $('conn').dataset.state = value;
  document.body.dataset.conn = value; // the stylesheet dims the last-known figures when not live
}
function dropSocket() {
  clearTimeout(retryTimer);
  if (!ws) return;
  ws.onclose = null; // a deliberate close must not schedule a reconnect
  ws.close();
  ws = null;
}

function connect() {
  dropSocket();
  if (!token()) {
    setConn('disconnected');
    return askToken("Enter the engine's API token: $OTRADE_TOKEN, or the one it printed at start.");
  }
  const url = new URL('ws', location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  url.hash = '';
  url.searchParams.set('token', token());
  const sock = (ws = new WebSocket(url));
  sock.onopen = () => (lastMessage = performance.now());
  sock.onmessage = (m) => {
    lastMessage = performance.now();
    backoff = 500;
    // "connected" only once data flows: a refused socket is accepted, then closed with 4401/4403
    setConn('connected');
    const msg = JSON.parse(m.data);
    if (msg.type === 'snapshot') onSnapshot(msg);
    else if (msg.type === 'events') msg.events.forEach(onEvent);
  };
  sock.onclose = (e) => {
    if (ws !== sock) return;
    ws = null;
    if (e.code === 4401 || e.code === 4403 || e.code === 1008) return unauthorized();
    setConn('disconnected');
    retryTimer = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 5000);
  };
}
function unauthorized() {
  dropSocket();
  setConn('unauthorized');
  askToken('The token was refused: enter the right one.');
}
setInterval(() => {
  if (ws?.readyState === WebSocket.OPEN && performance.now() - lastMessage > STALE_MS) ws.close();
}, 1000);

function onSnapshot(msg) {
  state.status = msg.status;
  state.instruments = msg.instruments || [];
  state.positions = msg.positions || [];
  for (const inst of state.instruments) plot(inst, msg.ts); // first: charts keep the config's order
  if (msg.orders) {
    // only the connect snapshot carries orders and trades; performance is never pushed
    Object.assign(state, { orders: msg.orders, trades: msg.trades || [] });
    for (const rec of msg.orders.recent || []) addMarker(rec.action || rec.type, rec);
    refreshSoon(0);
  }
  queueRender();
}
function onEvent(ev) {
  addMarker(ev.type, ev);
  if (['entry', 'exit', 'stop_moved', 'control'].includes(ev.type)) refreshSoon();
  logEvent(ev);
  queueRender();
}
// A repeat of the newest line (say, entries refused while paused, whichever side) bumps its
// count instead of pushing the rest of the list away.
function logEvent(ev) {
  const what = [
    ev.symbol, ev.type !== 'refused' && ev.side, finite(ev.price) && `${ev.qty ?? ''} @ ${num(ev.price)}`,
    finite(ev.stop) && `stop ${num(ev.stop)}`, finite(ev.pnl) && `pnl ${num(ev.pnl)}`,
    ev.action, ev.state, ev.reason, ev.code, ev.message,
    ev.clean === false && 'mismatch: entries halted', ev.clean === true && 'clean',
  ];
  const line = `<b>${esc(ev.type)}</b> ${esc(what.filter(Boolean).join(' '))}`;
  const time = clock(ev.tick_t || Date.now() * 1e6);
  if (events[0]?.line === line) Object.assign(events[0], { time, n: events[0].n + 1 });
  else events.unshift({ type: esc(ev.type), line, time, n: 1 });
  events.length = Math.min(events.length, MAX_EVENTS);
  eventsDirty = true;
}

// ---------------------------------------------------------------- charts
const charts = new Map(); // symbol -> chart, series, point counts, markers, bracket lines
const CHART_OPTIONS = {
  autoSize: true,
  layout: { background: { color: '#12151a' }, textColor: '#c9d1d9' },
  grid: { vertLines: { color: '#1e232b' }, horzLines: { color: '#1e232b' } },
  rightPriceScale: { borderColor: '#2d333b' },
  // data times are UTC seconds; labels show the browser's local time
  timeScale: {
    // rightOffset: room past the last point for the newest markers' labels
    borderColor: '#2d333b', timeVisible: true, secondsVisible: true, rightOffset: 8,
    // tick mark types 0-2 are year, month, day; 3 is a time, 4 a time with seconds
    tickMarkFormatter: (t, type) =>
      type < 3 ? new Date(t * 1e3).toLocaleDateString() : hms(new Date(t * 1e3), type === 4),
  },
  localization: { timeFormatter: (t) => hms(new Date(t * 1000)) },
};
const QUIET = { lineWidth: 1, lastValueVisible: false, priceLineVisible: false, crosshairMarkerVisible: false };

function chartFor(symbol) {
  if (charts.has(symbol)) return charts.get(symbol);
  const box = document.createElement('div');
  box.className = 'chart-box';
  box.innerHTML = `<div class="chart-head"><b>${esc(symbol)}</b> <span class="ltp"></span>
    <span class="legend"><i class="fast"></i>ema fast <i class="slow"></i>ema slow</span>
    <span class="pos-info"></span><button class="flatten warn" hidden>Flatten</button></div>
    <div class="chart-body" id="chart-${esc(symbol)}"></div>`;
  $('chart').append(box);
  const chart = LC.createChart(box.querySelector('.chart-body'), CHART_OPTIONS);
  const price = chart.addSeries(LC.LineSeries, { color: '#58a6ff', lineWidth: 2 });
  const c = {
    price, markerApi: LC.createSeriesMarkers(price, []),
    fast: chart.addSeries(LC.LineSeries, { color: '#d29922', ...QUIET }),
    slow: chart.addSeries(LC.LineSeries, { color: '#a371f7', ...QUIET }),
    ltp: box.querySelector('.ltp'),
    posInfo: box.querySelector('.pos-info'),
    flatten: box.querySelector('.flatten'),
    points: 0, firstTime: 0, lastTime: 0, fills: new Map(), markersShown: 0, markersDirty: false, lines: {},
  };
  // per-symbol flatten lives here, not in the positions table: table rows are rebuilt at the
  // push rate, and a button inside one could be replaced between mouse down and mouse up
  c.flatten.onclick = () => control('flatten', `Flatten ${symbol} at market now?`, { symbol });
  charts.set(symbol, c);
  return c;
}

// lightweight-charts needs strictly increasing integer seconds per series and snapshots come
// several per second: a second already plotted is overwritten (update() on the last time).
function plot(inst, fallbackNs) {
  if (!finite(inst.ltp) || !inst.ticks) return; // nothing traded yet
  const c = chartFor(inst.symbol);
  const t = Math.max(Math.floor((inst.last_ts || fallbackNs) / 1e9), c.lastTime);
  if (t > c.lastTime) {
    c.points += 1;
    c.firstTime ||= t;
    c.lastTime = t;
    c.markersDirty ||= c.fills.size > 0; // a fill waiting for its second may now show
  }
  c.price.update({ time: t, value: inst.ltp });
  if (finite(inst.ema_fast)) c.fast.update({ time: t, value: inst.ema_fast });
  if (finite(inst.ema_slow)) c.slow.update({ time: t, value: inst.ema_slow });
}

function addMarker(kind, ev) {
  if ((kind !== 'entry' && kind !== 'exit') || !ev.symbol || !ev.tick_t) return;
  const c = chartFor(ev.symbol);
  // the same fill arrives as an event and in the connect snapshot's "recent" orders
  const key = `${ev.tick_t}/${ev.seq}/${ev.side}/${kind}`;
  if (c.fills.has(key)) return;
  const buy = ev.side === 'buy';
  c.fills.set(key, {
    kind, time: Math.floor(ev.tick_t / 1e9), color: buy ? '#3fb950' : '#f85149',
    position: buy ? 'belowBar' : 'aboveBar', shape: buy ? 'arrowUp' : 'arrowDown',
    text: kind === 'exit' ? `${num(ev.price)} ${ev.reason || 'exit'}` : num(ev.price),
  });
  if (c.fills.size > MAX_MARKERS) c.fills.delete(c.fills.keys().next().value);
  c.markersDirty = true;
}

// Only fills inside the plotted range are drawn: older ones (from before the page was opened)
// would pile up on the first point; newer ones wait for their second. Fills of one kind in one
// second share a marker ("3× price") and only the newest markers carry text, so a fast
// strategy does not bury the price line.
function applyMarkers(c) {
  const groups = new Map();
  for (const m of c.fills.values()) {
    if (m.time < c.firstTime || m.time > c.lastTime) continue;
    const key = `${m.time}/${m.shape}/${m.kind}`;
    groups.set(key, { ...m, n: (groups.get(key)?.n ?? 0) + 1 });
  }
  const shown = [...groups.values()].sort((a, b) => a.time - b.time);
  const labelled = shown.length - TEXT_MARKERS;
  c.markerApi.setMarkers(shown.map(({ kind, n, text, ...m }, k) =>
    ({ ...m, text: k < labelled ? '' : `${n > 1 ? `${n}× ` : ''}${text}` })));
  c.markersShown = shown.length;
  c.markersDirty = false;
}

// Bracket lines follow each snapshot's positions: created on entry, moved when the stop trails,
// removed when the symbol is flat.
const LEVELS = [
  ['entry_price', 'entry', '#8b949e'], ['target', 'target', '#3fb950'], ['stop', 'stop', '#f85149'],
];
function syncLevels(c, pos) {
  for (const [field, title, color] of LEVELS) {
    const price = pos && finite(pos[field]) ? Number(pos[field]) : null;
    const line = c.lines[field];
    if (price === null) {
      if (line) c.price.removePriceLine(line);
      delete c.lines[field];
    } else if (!line) {
      c.lines[field] = c.price.createPriceLine({ price, color, title, lineWidth: 1, lineStyle: 2 });
    } else if (line.options().price !== price) {
      line.applyOptions({ price });
    }
  }
}

// ---------------------------------------------------------------- render
const HALT_TEXT = {
  paused: 'PAUSED: new entries are refused until resumed', halted: 'HALTED by the kill switch',
  max_loss: 'HALTED: the max loss limit was reached', daily_loss: 'HALTED: the daily loss limit was reached',
  feed: 'HALTED: the feed is down or stale',
  journal: 'HALTED: the journal cannot be written (disk full?); exits run and are recorded once it can',
  profit_target: 'TARGET REACHED: the account reached its profit target; flat, no entries until resumed',
  broker_token: 'PAUSED: the broker token expired; exits resume once it is renewed',
  reconcile: 'HALTED: the broker disagrees with the journal; see the events, then Reconcile or Adopt',
};
const SIGNAL = { 1: '<span class="pos">▲ long</span>', '-1': '<span class="neg">▼ short</span>' };
const side = (s) => `<span class="${s === 'long' || s === 'buy' ? 'pos' : 'neg'}">${esc(s)}</span>`;
// live: is a stop resting at the broker for the position? "unprotected" must never last
const GUARD = { protected: 'pos', engine: 'pos', entering: 'warn', exiting: 'warn', unprotected: 'neg alarm' };
const guard = (p) => `<span class="${GUARD[p.protection] || ''}">${esc(p.protection === 'unprotected' ? 'UNPROTECTED' : p.protection)}</span>`;
const legs = (p) => (p.legs || []).map((l) => `${esc(l.role)} ${num(l.stop_price ?? l.price)} ${esc(l.status)}`).join(' · ') || '–';
const COLUMNS = {
  instruments: [
    ['symbol', (i) => esc(i.symbol)], ['ltp', (i) => num(i.ltp)], ['signal', (i) => SIGNAL[i.signal] || '·'],
    ['ema fast', (i) => num(i.ema_fast)], ['ema slow', (i) => num(i.ema_slow)], ['rsi', (i) => num(i.rsi, 1)],
    ['atr', (i) => num(i.atr)], ['vwap', (i) => num(i.vwap)],
    ['bar o / h / l / c', (i) => ['open', 'high', 'low', 'close'].map((k) => num(i.bar?.[k])).join(' / ')],
    ['bar vol', (i) => int(i.bar?.volume)], ['ticks', (i) => int(i.ticks)],
    ['last tick', (i) => clock(i.last_ts)],
  ],
  positions: [
    ['symbol', (p) => esc(p.symbol)], ['side', (p) => side(p.side)], ['qty', (p) => int(p.qty)],
    ['entry', (p) => num(p.entry_price)], ['target', (p) => num(p.target)], ['stop', (p) => num(p.stop)],
    ['unrealized', (p) => signed(p.unrealized_pnl)], ['since', (p) => clock(p.entry_ts)],
    ['protection', guard], ['at the broker', legs],
  ],
  orders: [
    ['id', (o) => esc(o.order_id)], ['symbol', (o) => esc(o.symbol)], ['side', (o) => side(o.side)],
    ['qty', (o) => int(o.qty)], ['kind', (o) => esc(o.kind)], ['price', (o) => num(o.price)],
    ['stop', (o) => num(o.stop_price)], ['status', (o) => esc(o.status)],
  ],
  trades: [
    ['exit time', (t) => clock(t.exit_ts)], ['symbol', (t) => esc(t.symbol)], ['side', (t) => side(t.side)],
    ['qty', (t) => int(t.qty)], ['entry', (t) => num(t.entry_price)], ['exit', (t) => num(t.exit_price)],
    ['pnl', (t) => signed(t.pnl)], ['reason', (t) => esc(t.exit_reason)], ['mae', (t) => num(t.mae)],
    ['mfe', (t) => num(t.mfe)],
  ],
};

function gauge(id, used, limit) {
  const el = $(id);
  const pct = limit == null ? null : Math.max(0, Number(used) || 0) * 100;
  el.querySelector('i').style.width = `${Math.min(pct ?? 0, 100)}%`;
  el.dataset.level = pct == null ? 'off' : pct >= 80 ? 'high' : pct >= 50 ? 'mid' : 'low';
  setText(el.querySelector('.val'), pct == null ? 'off' : `${pct.toFixed(0)}% of ${num(limit, 0)}`);
}

function renderStatus(s) {
  const halt = s.halt || (s.paused ? 'paused' : 'running');
  setText('halt', halt);
  $('halt').dataset.state = halt === 'running' ? 'ok' : 'bad';
  $('banner').hidden = halt === 'running';
  $('btn-reconcile').hidden = $('btn-adopt').hidden = halt !== 'reconcile';
  setText('banner', HALT_TEXT[halt] || `HALTED: ${halt}`);
  setText('session', s.session_open ? 'session open' : 'session closed');
  $('session').dataset.state = s.session_open ? 'ok' : 'warn';
  const feed = s.feed || {};
  setText('feed-state', `${feed.name || '?'} ${feed.state || '?'}`);
  $('feed-state').dataset.state = feed.state;
  setText('ticks', int(s.ticks));
  setText('tps', num(s.ticks_per_s, 0));
  setText('latency', `${num(s.latency_us?.p50, 1)} / ${num(s.latency_us?.p99, 1)}`);
  setText('order-latency', `${num(s.order_latency_us?.p50, 1)} / ${num(s.order_latency_us?.p99, 1)}`);
  setText('uptime', duration(s.uptime_s));
  const a = s.account || {};
  kv('pnl', [
    ['realized', signed(a.realized)], ['unrealized', signed(a.unrealized)], ['day', signed(a.day_pnl)],
    ['equity', signed(a.equity)], ['drawdown', num(a.drawdown)], ['max drawdown', num(a.max_drawdown)],
  ]);
  gauge('gauge-daily', s.risk?.daily_used, s.risk?.daily_loss_limit);
  gauge('gauge-max', s.risk?.max_used, s.risk?.max_loss_limit);
  kv('feed', [
    ['source', esc(feed.name)], ['state', esc(feed.state)], ['reconnects', int(feed.reconnects)],
    ['last tick', finite(feed.last_tick_age_s) ? `${num(feed.last_tick_age_s, 3)} s ago` : '–'],
    ['rejected frames', counts(feed.rejected_frames)], ['rejected ticks', counts(s.rejected_ticks)],
    ['refused entries', counts(s.refused_entries)], ['web clients', int(s.clients)],
  ]);
}

function render() {
  renderQueued = false;
  if (state.status) renderStatus(state.status);
  const held = new Map(state.positions.map((p) => [p.symbol, p]));
  const ltp = new Map(state.instruments.map((i) => [i.symbol, i.ltp]));
  for (const [symbol, c] of charts) {
    const pos = held.get(symbol);
    setText(c.ltp, num(ltp.get(symbol)));
    const info = pos && `${pos.side} ${pos.qty} @ ${num(pos.entry_price)}   uPnL ${num(pos.unrealized_pnl)}`;
    setText(c.posInfo, info || 'flat');
    c.flatten.hidden = !pos;
    syncLevels(c, pos);
    if (c.markersDirty) applyMarkers(c);
  }
  table('instruments', COLUMNS.instruments, state.instruments);
  table('positions', COLUMNS.positions, state.positions);
  table('orders', COLUMNS.orders, state.orders.open || []);
  table('trades', COLUMNS.trades, state.trades.slice(-100).reverse()); // newest first
  const p = state.perf;
  if (p) {
    kv('performance', [
      ['trades', int(p.trades)], ['wins / losses', `${int(p.wins)} / ${int(p.losses)}`],
      ['win rate', finite(p.win_rate) ? `${num(p.win_rate * 100, 1)}%` : '–'],
      ['realized', signed(p.realized_pnl)],
      ['profit factor', num(p.profit_factor)], ['max drawdown', num(p.max_drawdown)],
    ]);
  }
  if (eventsDirty) {
    const item = (e) => `<li data-type="${e.type}"><time>${e.time}</time> ${e.line}`;
    setHtml('events', events.map((e) => `${item(e)}${e.n > 1 ? ` ×${e.n}` : ''}</li>`).join(''));
  }
  eventsDirty = false;
}

// ---------------------------------------------------------------- test hooks, start
window.otrade = {
  points: (symbol) => charts.get(symbol)?.points ?? 0,
  markers: (symbol) => charts.get(symbol)?.markersShown ?? 0,
};
tokenFromFragment();
connect();

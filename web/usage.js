// The admin Usage tab: GET /admin/api/usage?since=…&bucket=… → a table per
// user and model with totals, and calls over time as an SVG bar chart built
// with DOM APIs (no library).

import { $, el, api, fmtNumber, fmtCost, labelCells, emptyRow } from './core.js';

const RANGES = {
  '24h': { ms: 86400e3, bucket: 3600, label: 'per hour' },
  '7d': { ms: 7 * 86400e3, bucket: 3600, label: 'per hour' },
  '30d': { ms: 30 * 86400e3, bucket: 86400, label: 'per day (UTC)' },
};
const SVG = 'http://www.w3.org/2000/svg';
let lastDrawn = null;

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  node.append(...children);
  return node;
}

// Every bucket of the range, with the server's counts where it has some.
function fill(series, sinceMs, nowMs, bucket) {
  const width = bucket * 1000;
  const counts = new Map(series.map((b) => [Math.floor(Date.parse(b.start) / width), b]));
  const out = [];
  const last = Math.floor(nowMs / width);
  for (let k = Math.floor(sinceMs / width); k <= last; k += 1) {
    const b = counts.get(k);
    out.push({ start: k * width, requests: b?.requests ?? 0, tokens: b?.total_tokens ?? 0 });
  }
  return out;
}

const DAY = { month: 'short', day: 'numeric' };
const HOUR = { hour: 'numeric', minute: '2-digit' };

// A bucket's start for a hover title: "Nov 22, 3:00 PM" or "Nov 22" (days are UTC).
function when(ms, bucket) {
  const d = new Date(ms);
  if (bucket >= 86400) return d.toLocaleDateString(undefined, { ...DAY, timeZone: 'UTC' });
  return `${d.toLocaleDateString(undefined, DAY)}, ${d.toLocaleTimeString(undefined, HOUR)}`;
}

// An axis label: the hour over a day or so, else the day.
function tick(ms, bucket, span) {
  const d = new Date(ms);
  if (bucket >= 86400) return d.toLocaleDateString(undefined, { ...DAY, timeZone: 'UTC' });
  if (span > 2 * 86400e3) return d.toLocaleDateString(undefined, DAY);
  return d.toLocaleTimeString(undefined, { hour: 'numeric' });
}

// A nice upper bound for the y axis.
function ceiling(max) {
  if (max <= 4) return 4;
  const mag = 10 ** Math.floor(Math.log10(max));
  return [1, 2, 2.5, 5, 10].map((f) => f * mag).find((v) => v >= max);
}

function drawChart(buckets, bucket) {
  const box = $('usage-chart');
  lastDrawn = [buckets, bucket];
  // As wide as the card (text keeps its size), at least 300.
  const W = Math.max(300, Math.round(box.clientWidth || 800));
  const H = 220;
  const pad = { l: 40, r: 8, t: 12, b: 28 };
  const plotW = W - pad.l - pad.r;
  const plotH = H - pad.t - pad.b;
  const total = buckets.reduce((n, b) => n + b.requests, 0);
  const top = ceiling(Math.max(...buckets.map((b) => b.requests), 0));
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', class: 'chart-svg', 'aria-label': `Requests over time: ${total} in total` });
  for (let i = 0; i <= 4; i += 1) {
    const v = (top * i) / 4;
    const y = pad.t + plotH - (plotH * i) / 4;
    chart.append(svg('line', { x1: pad.l, x2: W - pad.r, y1: y, y2: y, class: i ? 'grid' : 'axis' }));
    chart.append(svg('text', { x: pad.l - 6, y: y + 4, 'text-anchor': 'end', class: 'tick' }, Number.isInteger(v) ? String(v) : v.toFixed(1)));
  }
  const slot = plotW / buckets.length;
  const barW = Math.max(1, slot * 0.72);
  const span = buckets.length * bucket * 1000;
  buckets.forEach((b, i) => {
    const x = pad.l + i * slot + (slot - barW) / 2;
    const h = top ? (plotH * b.requests) / top : 0;
    const end = b.start + bucket * 1000;
    const range = bucket >= 86400 ? when(b.start, bucket)
      : `${when(b.start, bucket)} – ${new Date(end).toLocaleTimeString(undefined, HOUR)}`;
    const title = `${range}: ${fmtNumber(b.requests)} ${b.requests === 1 ? 'request' : 'requests'}, ${fmtNumber(b.tokens)} tokens`;
    // A full-height transparent target so that empty buckets have a title too.
    const group = svg('g', { class: 'bar', 'data-start': new Date(b.start).toISOString(), 'data-requests': b.requests },
      svg('title', {}, title),
      svg('rect', { x: pad.l + i * slot, y: pad.t, width: slot, height: plotH, class: 'bar-hit' }),
      svg('rect', { x, y: pad.t + plotH - h, width: barW, height: Math.max(h, b.requests ? 1 : 0), rx: Math.min(2, barW / 2), class: 'bar-fill' }));
    chart.append(group);
  });
  // About six labels, evenly spaced, counted back from the latest bucket.
  const every = Math.max(1, Math.ceil(buckets.length / Math.max(2, Math.min(6, Math.floor(plotW / 90)))));
  for (let i = buckets.length - 1; i >= 0; i -= every) {
    const x = pad.l + i * slot + slot / 2;
    const anchor = i === buckets.length - 1 && buckets.length > 1 ? 'end' : x - pad.l < 30 ? 'start' : 'middle';
    chart.append(svg('text', { x: anchor === 'end' ? W - pad.r : x, y: H - 8, 'text-anchor': anchor, class: 'tick' },
      tick(buckets[i].start, bucket, span)));
  }
  box.replaceChildren(chart);
  if (!total) box.append(el('p', { class: 'chart-empty muted' }, 'No requests in this range'));
}

function usageRow(r) {
  return el('tr', { 'data-user': r.user, 'data-model': r.model },
    el('td', {}, r.user || el('span', { class: 'muted' }, r.user_id || '—')),
    el('td', { class: 'mono' }, r.model),
    el('td', { class: 'num' }, fmtNumber(r.requests)),
    el('td', { class: 'num' }, fmtNumber(r.prompt_tokens)),
    el('td', { class: 'num' }, fmtNumber(r.completion_tokens)),
    el('td', { class: 'num' }, fmtNumber(r.total_tokens)),
    el('td', { class: 'num' }, fmtCost(r.cost)));
}

async function load() {
  const range = RANGES[$('usage-range').value] || RANGES['24h'];
  const now = Date.now();
  const since = now - range.ms;
  const q = new URLSearchParams({ since: new Date(since).toISOString(), bucket: String(range.bucket) });
  const report = await api(`/admin/api/usage?${q}`);
  const table = $('usage-table');
  const rows = report.data.sort((a, b) => b.requests - a.requests || a.user.localeCompare(b.user) || a.model.localeCompare(b.model));
  table.tBodies[0].replaceChildren(...rows.map(usageRow));
  const t = report.totals;
  table.tFoot.replaceChildren();
  if (rows.length) {
    table.tFoot.append(el('tr', { class: 'totals-row', 'data-testid': 'usage-totals' },
      el('th', { colspan: 2, scope: 'row' }, 'Total'),
      el('td', { class: 'num' }, fmtNumber(t.requests)),
      el('td', { class: 'num' }, fmtNumber(t.prompt_tokens)),
      el('td', { class: 'num' }, fmtNumber(t.completion_tokens)),
      el('td', { class: 'num' }, fmtNumber(t.total_tokens)),
      el('td', { class: 'num' }, fmtCost(t.cost))));
  } else {
    table.tBodies[0].append(emptyRow(table, 'No usage in this range', 'Calls to the model API show up here.'));
  }
  labelCells(table);
  $('usage-requests').textContent = fmtNumber(t.requests);
  $('usage-tokens').textContent = fmtNumber(t.total_tokens);
  $('usage-cost').textContent = fmtCost(t.cost);
  $('usage-chart-note').textContent = range.label;
  drawChart(fill(report.series || [], since, now, range.bucket), range.bucket);
}

let resizeTimer = null;

function wire() {
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (lastDrawn && $('usage-chart').offsetParent) drawChart(...lastDrawn);
    }, 150);
  });
  $('usage-range').addEventListener('change', () => {
    load().catch((e) => {
      $('usage-error').textContent = e.message;
      $('usage-error').hidden = e.status === 401;
    });
  });
}

export default { load, wire };

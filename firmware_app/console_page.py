"""The operator console's HTML: the live page, /status for a browser, the 401 and 404 pages, the favicon.

Server-rendered, no build step, no framework: one page of HTML + CSS + a little JavaScript that polls
/live.json and swaps in that frame's images (the token travels as `?token=` since an <img> cannot send
a header). The legend's colours come from `panels.legend_stops`, the same function that colours the
depth images, on the same fixed millimetre scale.
"""

from __future__ import annotations

import html
import json
from functools import cache
from urllib.parse import quote

import cv2
import numpy as np

from firmware_app.panels import RELIEF_SCALE_MM, legend_stops, relief_colours

_CSS = """
*{box-sizing:border-box}body{margin:0;background:#101214;color:#e8e8e8;font:16px/1.35 system-ui,sans-serif}
header{display:flex;flex-wrap:wrap;gap:.5em;align-items:center;padding:.5em .8em;background:#1b1e22}
header b{font-size:1.2em;margin-right:.5em}.pill{padding:.15em .6em;border-radius:1em;background:#2a2f35}
.ok{background:#1d5e2e}.warn{background:#7a5a00}.bad{background:#8a1c1c}
label{margin-left:auto;white-space:nowrap}main{display:flex;flex-wrap:wrap;gap:.8em;padding:.8em}
#view{flex:1 1 560px;min-width:0}#stage{position:relative;width:100%;background:#000;overflow:hidden}
#frame{display:block;width:100%;min-height:120px}#overlay{position:absolute;left:0;top:0;width:80px;height:80px;
transform-origin:0 0;image-rendering:pixelated;opacity:.65;pointer-events:none}
#box{position:absolute;border:3px solid #2ee66b;pointer-events:none;display:none}
#wait{position:absolute;inset:0;display:flex;align-items:center;justify-content:center;color:#aaa}
aside{flex:0 1 360px;display:flex;flex-direction:column;gap:.8em;min-width:0;width:100%}
.card{background:#1b1e22;border-radius:.5em;padding:.6em .8em}h2{font-size:1em;margin:0 0 .4em;color:#aab}
.badge{font-size:2em;font-weight:700;letter-spacing:.03em}.live{color:#3ef07a}.spoof{color:#ff5252}
.collecting{color:#ffd54f}.undecided{color:#b0bec5}.none{color:#777}
#chart{width:100%;height:90px;background:#14171a;border-radius:.3em}
.depthrow{display:flex;gap:.8em;align-items:stretch}#depth{width:200px;height:200px;background:#000;
image-rendering:pixelated;flex:none}#legend{display:flex;gap:.3em}#legend .bar{width:22px;border-radius:3px}
#legend .ticks{position:relative;width:4.2em;font-size:.8em}
#legend .ticks span{position:absolute;left:0;transform:translateY(-50%);white-space:nowrap}
#legend .unit{font-size:.8em;align-self:flex-end}
.note{font-size:.8em;color:#99a;margin:.4em 0 0}ol{list-style:none;margin:0;padding:0}
li{display:flex;gap:.6em;align-items:center;padding:.25em 0;border-top:1px solid #2a2f35}
li img{width:120px;height:60px;object-fit:cover;object-position:left;background:#000;border-radius:3px}
table{border-collapse:collapse;font-size:.9em}td{padding:.1em .6em .1em 0}
@media (max-width:700px){body{font-size:17px}main{padding:.4em}aside{flex-basis:100%}
#depth{width:150px;height:150px}}
"""

_JS = """
const P = __PERIOD__, q = new URLSearchParams(location.search), tok = q.get("token");
const url = (p, x) => p + "?" + (tok ? "token=" + encodeURIComponent(tok) + "&" : "") + (x || "");
const $ = id => document.getElementById(id);
let shown = -1, last = null;
window.__live = {updates: [], polls: 0, errors: []};
function load(img, src) {
  return new Promise(done => { const i = new Image();
    i.onload = () => { img.src = src; done(true); }; i.onerror = () => done(false); i.src = src; });
}
function pill(text, cls) { const s = document.createElement("span"); s.className = "pill " + (cls || "");
  s.textContent = text; return s; }
function place(s) {
  const f = s.frame, face = s.face, k = $("frame").clientWidth / (f ? f.width : 1);
  const box = $("box"), ov = $("overlay");
  if (!face) { box.style.display = ov.style.display = "none"; return; }
  const b = face.box;
  Object.assign(box.style, {display: "block", left: b[0] * k + "px", top: b[1] * k + "px",
    width: (b[2] - b[0]) * k + "px", height: (b[3] - b[1]) * k + "px"});
  const m = face.overlay;
  ov.style.display = m && $("ovl").checked ? "block" : "none";
  if (m) ov.style.transform = "matrix(" + m.map(v => v * k).join(",") + ")";
}
function chart(t) {
  const svg = $("chart"), W = 300, H = 90; svg.innerHTML = "";
  if (!t || !t.history.length) return;
  const pts = t.history.filter(p => p[1] !== null);
  if (!pts.length) return;
  const t0 = pts[0][0], span = Math.max(pts[pts.length - 1][0] - t0, 2);  // the track's own time
  const vals = pts.map(p => p[1]).concat(t.lines);
  let lo = Math.min(...vals, 0), hi = Math.max(...vals, 1); const pad = (hi - lo) * 0.1 + 1e-6;
  lo -= pad; hi += pad;
  const X = ts => 4 + (W - 8) * (ts - t0) / span, Y = v => H * (hi - v) / (hi - lo);
  const ns = "http://www.w3.org/2000/svg", add = (tag, a) => { const e = document.createElementNS(ns, tag);
    for (const n in a) e.setAttribute(n, a[n]); svg.appendChild(e); return e; };
  for (const v of t.lines) add("line", {x1: 0, x2: W, y1: Y(v), y2: Y(v), stroke: "#888",
    "stroke-dasharray": "4 3"});
  add("polyline", {points: pts.map(p => X(p[0]) + "," + Y(p[1])).join(" "), fill: "none",
    stroke: "#9ecbff", "stroke-width": 2});
  const col = {live: "#3ef07a", spoof: "#ff5252", collecting: "#ffd54f", undecided: "#b0bec5"};
  for (const p of pts) add("circle", {cx: X(p[0]), cy: Y(p[1]), r: 2.5, fill: col[p[2]] || "#fff"});
}
function track(s) {
  const t = s.track, st = $("state");
  st.className = "badge " + (t ? t.state : "none");
  st.textContent = t ? t.state.toUpperCase() : (s.frame ? "NO FACE" : "NO FRAME");
  $("sub").textContent = t ? (t.present ? "track " + t.track_id + " in view" : "no face now · last track " +
    t.track_id) : "";
  const cues = t ? Object.entries(t.cues).map(([k, v]) => k + " " + (v > 0 ? "+" : "") + v.toFixed(1)) : [];
  $("trackinfo").textContent = t ? (t.value === null ? "" :
    (t.unit === "mm" ? "relief score " : "evidence ") + t.value.toFixed(2) + " " + t.unit) +
    (t.lines.length ? " (decides at " + t.lines.map(v => v.toFixed(1)).join(" / ") + ")" : "") +
    (cues.length ? " · " + cues.join(", ") : "") : "";
  document.body.dataset.track = t ? t.track_id : "";
  document.body.dataset.state = t ? t.state : "";
  chart(t);
}
let shownDecisions = null;
function decisions(s) {
  const key = s.decisions.map(d => d.id + d.thumb).join();
  if (key === shownDecisions) return;  // rebuilt only when a decision arrives (thumbnails load once)
  shownDecisions = key;
  const ol = $("decisions"); ol.innerHTML = "";
  for (const d of s.decisions) {
    const li = document.createElement("li");
    if (d.thumb) { const i = document.createElement("img"); i.loading = "lazy"; i.alt = "";
      i.src = url("/live/thumb/" + encodeURIComponent(d.id) + ".png"); li.appendChild(i); }
    const b = document.createElement("b"); b.className = d.decision; b.textContent = d.decision.toUpperCase();
    const when = d.unix_time ? new Date(d.unix_time * 1000).toLocaleTimeString() : "";
    const info = document.createElement("span"); info.textContent = " track " + d.track_id +
      (d.score_mm === undefined ? "" : " · " + d.score_mm.toFixed(1) + " mm") + " · " + when;
    li.append(b, info); li.dataset.track = d.track_id; li.dataset.decision = d.decision; ol.appendChild(li);
  }
  if (!s.decisions.length) ol.textContent = "none yet";
}
function health(s) {
  const h = s.health || {}, bar = $("health"); bar.innerHTML = "";
  bar.appendChild(pill((h.fps || 0).toFixed(1) + " fps", h.fps > 0 ? "ok" : "bad"));
  const c = h.camera || {};
  bar.appendChild(pill("camera " + (c.open === false ? "down" : "ok"), c.open === false ? "bad" : "ok"));
  for (const [n, k] of Object.entries(h.hooks || {}))
    bar.appendChild(pill(n + (k.failures ? " failing" : k.pending ? " pending" : " ok"),
      k.failures ? "bad" : k.pending ? "warn" : "ok"));
  if (h.disk && h.disk.free_mb !== undefined)
    bar.appendChild(pill("disk " + h.disk.free_mb + " MB free", h.disk.free_mb < 50 ? "bad" : "ok"));
  if (h.degraded) bar.appendChild(pill("DEGRADED: " + h.degraded, "bad"));
  const tb = $("stages"); tb.innerHTML = "";
  for (const [n, v] of Object.entries(h.stages_p95_ms || {})) if (v !== null) {
    const tr = tb.insertRow(); tr.insertCell().textContent = n;
    tr.insertCell().textContent = v.toFixed(1) + " ms p95"; }
}
async function render(s) {
  if (s.frame && s.frame.id !== shown) {
    const id = s.frame.id, jobs = [load($("frame"), url("/live/frame.jpg", "f=" + id))];
    if (s.face && s.face.overlay) {
      const src = url("/live/depth.png", "f=" + id);
      jobs.push(load($("overlay"), src), load($("depth"), src));
    }
    $("depth").style.visibility = s.face && s.face.overlay ? "visible" : "hidden";
    await Promise.all(jobs);
    shown = id; $("wait").style.display = "none";
    document.body.dataset.frame = id; window.__live.updates.push(performance.now());
  }
  last = s;
  for (const part of [place, track, decisions, health]) {
    try { part(s); } catch (e) { window.__live.errors.push(part.name + ": " + e); }  // one part failing
  }
}
async function tick() {
  const t0 = performance.now();
  if (!document.hidden) {
    try {
      const r = await fetch(url("/live.json"), {cache: "no-store"});
      if (r.status === 401) { location.reload(); return; }
      await render(await r.json()); window.__live.polls++; $("conn").textContent = "";
    } catch (e) { $("conn").textContent = "connection lost; retrying"; }
  }
  setTimeout(tick, Math.max(100, P - (performance.now() - t0)));
}
$("statuslink").href = url("/status");
$("ovl").onchange = () => last && place(last);
window.onresize = () => last && place(last);
tick();
"""

_LIVE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>facedepth · live</title><link rel="icon" href="/favicon.ico"><style>{css}</style></head>
<body><header><b>facedepth</b><span id="health" style="display:contents"></span><span id="conn"></span>
<label><input type="checkbox" id="ovl" checked> depth overlay</label></header>
<main><section id="view"><div id="stage"><img id="frame" alt="camera frame"><img id="overlay" alt="">
<div id="box"></div><div id="wait">waiting for the first frame…</div></div></section>
<aside><div class="card"><div id="sub" class="note"></div><div id="state" class="badge none">…</div>
<div id="trackinfo"></div>
<svg id="chart" viewBox="0 0 300 90" preserveAspectRatio="none"
 aria-label="the track evidence over time"></svg>
</div><div class="card"><h2>Depth on the face</h2><div class="depthrow"><img id="depth" alt="">{legend}</div>
<p class="note">Fixed scale, red = near: a print or screen stays one colour, a face spans the legend.</p>
</div>
<div class="card"><h2>Last decisions</h2><ol id="decisions"></ol></div>
<div class="card"><h2>Stage times</h2><table id="stages"></table>
<p class="note"><a href="/status" id="statuslink" style="color:#9ecbff">full status</a></p></div></aside>
</main>
<script>{js}</script></body></html>
"""


def legend_html(n: int = 11) -> str:
    """A vertical colour bar, near (red) on top, with mm ticks: the same colours as the depth images."""
    stops = legend_stops(n)
    grad = ", ".join(f"{c} {100 * i / (n - 1):.0f}%" for i, (_, c) in enumerate(stops))
    lo, hi = RELIEF_SCALE_MM
    ticks = "".join(
        f'<span style="top:{100 * (hi - v) / (hi - lo):.1f}%">{v:+.0f}'
        f'{" near" if v == hi else " far" if v == lo else ""}</span>'
        for v in np.arange(hi, lo - 1e-6, -20.0)
    ).replace(">+0<", ">0<")
    return (f'<div id="legend"><div class="bar" style="background:linear-gradient(to top, {grad})"></div>'
            f'<div class="ticks">{ticks}</div><div class="unit">mm</div></div>')


def live_page(refresh_ms: int = 500) -> str:
    js = _JS.replace("__PERIOD__", str(int(refresh_ms)))
    return _LIVE.format(css=_CSS, js=js, legend=legend_html())


def _table(value) -> str:
    if isinstance(value, dict):
        if not value:
            return "<i>none</i>"
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_table(v)}</td></tr>"
                       for k, v in value.items())
        return f"<table>{rows}</table>"
    if isinstance(value, list):
        return html.escape(json.dumps(value))
    return "<i>–</i>" if value is None else html.escape(str(value))


def status_page(status: dict, live: bool, token: str = "") -> str:
    """`token`: the one this request passed in its URL, carried on to the live page's link."""
    href = "/live" + (f"?token={quote(token)}" if token else "")
    link = f'<a href="{html.escape(href)}">live page</a> · ' if live else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1"><title>facedepth · status</title>'
        '<link rel="icon" href="/favicon.ico"><style>body{font:15px/1.4 system-ui,sans-serif;margin:1em;'
        "background:#101214;color:#e8e8e8}th{text-align:left;vertical-align:top;color:#aab;padding-right:1em}"
        "table table{font-size:.95em}a{color:#9ecbff}</style></head><body><h1>facedepth status</h1>"
        f"<p>{link}the same as JSON: <code>curl -H 'Accept: application/json' …/status</code> or "
        f"<code>?format=json</code></p>{_table(status)}</body></html>"
    )


def unauthorized_page(path: str) -> str:
    example = html.escape(path if path.startswith("/") else "/live")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1"><title>token required</title>'
        '<link rel="icon" href="/favicon.ico"><style>body{font:16px/1.5 system-ui,sans-serif;margin:1.5em;'
        "max-width:46em}code{background:#eee;padding:0 .3em}</style></head><body><h1>Token required</h1>"
        "<p>This daemon's status pages need its token: the <code>http.token</code> value of its config "
        "(usually set from an environment variable such as <code>FACEDEPTH_HTTP_TOKEN</code>).</p>"
        f"<p>In a browser, add it to the address: <code>{example}?token=YOUR_TOKEN</code></p>"
        "<p>From a program, send a header: <code>Authorization: Bearer YOUR_TOKEN</code>, e.g. "
        f"<code>curl -H \"Authorization: Bearer $FACEDEPTH_HTTP_TOKEN\" http://HOST:PORT{example}</code></p>"
        "</body></html>"
    )


UNAUTHORIZED_TEXT = (
    "token required: send 'Authorization: Bearer <token>' or add '?token=<token>' to the URL "
    "(the token is http.token in the daemon's config)\n"
)


def not_found_page(pages: dict[str, str]) -> str:
    items = "".join(f'<li><a href="{html.escape(p)}">{html.escape(p)}</a> {html.escape(d)}</li>'
                    for p, d in pages.items())
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>not found</title></head>'
            f"<body><h1>Not found</h1><p>This daemon serves:</p><ul>{items}</ul></body></html>")


@cache
def favicon_png() -> bytes:
    """32×32: a face-shaped disc in the depth colours (near = red at the centre)."""
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32) - 15.5
    r = np.hypot(xx / 13, yy / 15)
    rgb = relief_colours(40.0 - 100.0 * np.clip(r, 0, 1) ** 2)
    alpha = np.where(r <= 1, 255, 0).astype(np.uint8)[..., None]
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.concatenate([rgb, alpha], -1), cv2.COLOR_RGBA2BGRA))
    return buf.tobytes()

// p2phd edit: the page of bin/edit. Plain JS and a canvas; the server holds the maps, applies
// every edit and renders (see p2phd/editing/server.py for the API). The page only draws.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  info: null, doc: null, label: null, inst: null, W: 0, H: 0,
  cls: 7, selected: null, busy: 0, stroke: null, drag: null, editStart: 0,
};

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function busy(delta) {
  ui.busy += delta;
  document.body.dataset.busy = ui.busy > 0 ? "1" : "0";
}

// The page says so, in a banner, when the server no longer answers for it or its document.
function banner(text) {
  $("banner").textContent = text;
  $("banner").hidden = false;
}

// fetch + JSON errors as one line on the page. Everything but a GET sends JSON (uploads:
// multipart): the server refuses other content types, so no other site's form can post here.
async function call(method, path, body, raw = false) {
  busy(1);
  try {
    const opts = { method };
    if (body instanceof FormData) opts.body = body;
    else if (method !== "GET") {
      opts.body = JSON.stringify(body === undefined ? {} : body);
      opts.headers = { "Content-Type": "application/json" };
    }
    const r = await fetch(path, opts);
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { msg = (await r.json()).error; } catch (e) { /* not JSON */ }
      if (r.status === 401 || r.status === 403) {
        banner(`bin/edit refused this page (${msg}). Open the URL it printed, with its ?token=.`);
        document.body.dataset.gone = "refused";
      } else if (r.status === 404 && msg.includes("no document") && ui.doc && path.includes(ui.doc.id)) {
        banner(`${ui.doc.name} is no longer on the server (closed, or bin/edit was restarted): ` +
          "its edits since the last save are not there. Open or upload a map to go on.");
        document.body.dataset.gone = "document";
      }
      const err = new Error(msg);
      err.status = r.status;
      throw err;
    }
    return raw ? r : await r.json();
  } finally {
    busy(-1);
  }
}

async function guarded(fn) {
  try {
    await fn();
  } catch (e) {
    setStatus(e.message, true);
  }
}

const docPath = (tail) => `/api/documents/${ui.doc.id}${tail}`;
const cls = (c) => ui.info.classes[c];
const tool = () => document.querySelector("input[name=tool]:checked").value;

// ---- the class picker ---------------------------------------------------------------------
function buildClasses() {
  const box = $("classes");
  const sel = $("object-class");
  for (const c of ui.info.classes) {
    const b = document.createElement("button");
    b.dataset.cls = c.id;
    b.title = `${c.name} (${c.id})` + (c.clusters ? `, ${c.clusters} styles` : "");
    b.innerHTML = `<span class="chip" style="background: rgb(${c.colour})"></span>${c.id} ${c.name}`;
    b.onclick = () => pickClass(c.id);
    box.appendChild(b);
    const o = document.createElement("option");
    o.value = c.id;
    o.textContent = `${c.id} ${c.name}`;
    sel.appendChild(o);
  }
  pickClass(ui.info.classes.length > 7 ? 7 : 0);
}

function pickClass(c) {
  ui.cls = c;
  for (const b of $("classes").children) b.classList.toggle("on", +b.dataset.cls === c);
  $("new-object").checked = cls(c).thing;
}

// ---- documents ----------------------------------------------------------------------------
async function showDoc(state) {
  const first = !ui.doc || ui.doc.id !== state.id;
  ui.doc = state;
  $("unsaved").hidden = !state.unsaved;
  if (first) {
    $("banner").hidden = true;
    delete document.body.dataset.gone;
    ui.W = state.width;
    ui.H = state.height;
    const canvas = $("label");
    canvas.width = ui.W;
    canvas.height = ui.H;
    const room = ($("views").clientWidth - 24) / 2;  // the two pictures side by side
    const scale = Math.min(4, Math.max(room, 200) / ui.W);
    canvas.style.width = $("synth").style.width = `${Math.round(ui.W * scale)}px`;
    ui.selected = null;
  }
  const r = await call("GET", docPath("/maps"), undefined, true);
  const buf = await r.arrayBuffer();
  ui.label = new Uint8Array(buf, 0, ui.W * ui.H);
  ui.inst = new Int32Array(buf.slice(ui.W * ui.H));
  if (ui.selected !== null && !state.objects.some((o) => o.id === ui.selected)) ui.selected = null;
  $("undo").disabled = !state.can_undo;
  $("redo").disabled = !state.can_redo;
  drawLabel();
  showObject();
  await preview();
}

async function preview(kind = "preview") {
  const version = ui.doc.version;
  const r = await call("GET", docPath(`/${kind}.png`), undefined, true);
  const blob = await r.blob();
  const img = $("synth");
  const old = img.src;
  await new Promise((ok) => { img.onload = ok; img.src = URL.createObjectURL(blob); });
  if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  img.dataset.version = String(version);
  img.dataset.kind = kind;
  const total = ui.editStart ? ` (edit to picture ${Math.round(performance.now() - ui.editStart)} ms)` : "";
  $("timing").textContent = `${kind} v${version}: G ${r.headers.get("X-Render-Ms")} ms${total}`;
  ui.editStart = 0;
}

async function edit(op) {
  ui.editStart = performance.now();
  try {
    await showDoc(await call("POST", docPath("/edits"), op));
    setStatus(`${op.op} done`);
  } catch (e) {
    setStatus(e.message, true);
    if (ui.label) drawLabel();  // drop the refused stroke drawn ahead on the canvas
  }
}

// ---- drawing the label map ----------------------------------------------------------------
function drawLabel() {
  const ctx = $("label").getContext("2d");
  const img = ctx.createImageData(ui.W, ui.H);
  const px = img.data;
  const colours = ui.info.classes.map((c) => c.colour);
  const sel = ui.selected;
  for (let i = 0; i < ui.label.length; i++) {
    const col = colours[ui.label[i]] || [0, 0, 0];
    let [r, g, b] = col;
    if (sel !== null && ui.inst[i] === sel) {
      const x = i % ui.W;
      const edge = x === 0 || x === ui.W - 1 || i < ui.W || i >= ui.label.length - ui.W ||
        ui.inst[i - 1] !== sel || ui.inst[i + 1] !== sel || ui.inst[i - ui.W] !== sel || ui.inst[i + ui.W] !== sel;
      if (edge) [r, g, b] = [255, 255, 0];
      else [r, g, b] = [(r + 255) >> 1, (g + 255) >> 1, (b + 255) >> 1];
    }
    px[4 * i] = r; px[4 * i + 1] = g; px[4 * i + 2] = b; px[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

function mapXY(ev) {
  const rect = $("label").getBoundingClientRect();
  const x = Math.floor(((ev.clientX - rect.left) * ui.W) / rect.width);
  const y = Math.floor(((ev.clientY - rect.top) * ui.H) / rect.height);
  return [Math.min(ui.W - 1, Math.max(0, x)), Math.min(ui.H - 1, Math.max(0, y))];
}

function target(ev) {
  const o = ui.doc.objects.find((o) => o.id === ui.selected);
  if (ev.shiftKey && o && o.class === ui.cls) return o.id;
  return $("new-object").checked ? "new" : "stuff";
}

// ---- the object panel ---------------------------------------------------------------------
function showObject() {
  const o = ui.doc && ui.doc.objects.find((o) => o.id === ui.selected);
  $("object").hidden = !o;
  if (!o) return;
  $("object-title").textContent = `object ${o.id}: ${cls(o.class).name}, ${o.pixels} px`;
  $("object-class").value = o.class;
  const box = $("style-box");
  box.hidden = !o.style;
  if (!o.style) return;
  const k = cls(o.style.class).clusters;
  const user = o.style.user;
  $("style-now").textContent = o.style.center < 0 ? "(no clusters)" :
    `centre ${o.style.center} ` + (user ? `(your ${user[0]} ${user[1]})` : `(seed ${ui.info.seed})`);
  const sw = $("swatches");
  sw.innerHTML = "";
  for (let j = 0; j < k; j++) {
    const b = document.createElement("button");
    b.title = `cluster ${j}`;
    b.dataset.cluster = j;
    b.classList.toggle("on", j === o.style.center);
    b.innerHTML = `<img src="/api/swatches/${o.style.class}/${j}.png" alt="cluster ${j}">`;
    b.onclick = () => edit({ op: "style", object: o.id, cluster: j });
    sw.appendChild(b);
  }
  if (user && user[0] === "seed") $("seed").value = user[1];
}

// ---- pointer handling on the label map ----------------------------------------------------
function onDown(ev) {
  if (!ui.doc) return;
  const [x, y] = mapXY(ev);
  const t = tool();
  if (t === "brush") {
    ui.stroke = { points: [[x, y]], object: target(ev) };
    $("label").setPointerCapture(ev.pointerId);
    paintDot(x, y, x, y);
  } else if (t === "fill") {
    edit({ op: "fill", class: ui.cls, x, y, object: target(ev) });
  } else {
    const id = ui.inst[y * ui.W + x];
    ui.selected = id;
    ui.drag = { x, y, id };
    $("label").setPointerCapture(ev.pointerId);
    drawLabel();
    showObject();
  }
}

function paintDot(x0, y0, x1, y1) {
  const ctx = $("label").getContext("2d");
  ctx.strokeStyle = `rgb(${cls(ui.cls).colour})`;
  ctx.lineWidth = 2 * +$("radius").value + 1;
  ctx.lineCap = "round";
  ctx.beginPath();
  ctx.moveTo(x0 + 0.5, y0 + 0.5);
  ctx.lineTo(x1 + 0.5, y1 + 0.5);
  ctx.stroke();
}

function onMove(ev) {
  if (!ui.doc) return;
  const [x, y] = mapXY(ev);
  const i = y * ui.W + x;
  const c = ui.label[i];
  const text = `${cls(c) ? cls(c).name : c} (${c}) · instance ${ui.inst[i]} · x ${x} y ${y}`;
  $("hover").textContent = text;
  $("label").title = text;
  if (ui.stroke && ev.buttons) {
    const last = ui.stroke.points[ui.stroke.points.length - 1];
    if (last[0] !== x || last[1] !== y) {
      paintDot(last[0], last[1], x, y);
      ui.stroke.points.push([x, y]);
    }
  }
}

function onUp(ev) {
  if (ui.stroke) {
    const s = ui.stroke;
    ui.stroke = null;
    edit({ op: "brush", class: ui.cls, radius: +$("radius").value, points: s.points, object: s.object });
  } else if (ui.drag) {
    const [x, y] = mapXY(ev);
    const d = ui.drag;
    ui.drag = null;
    // a click is not a move: only a drag of 2 map pixels or more moves the object
    if (Math.abs(x - d.x) + Math.abs(y - d.y) >= 2) {
      edit({ op: "move", object: d.id, dx: x - d.x, dy: y - d.y });
    }
  }
}

// ---- start-up -----------------------------------------------------------------------------
function closeDoc(doc) {
  return call("DELETE", `/api/documents/${doc.id}`).catch(() => { /* already gone */ });
}

// Open another document in place of this one: its unsaved edits go only if the user says so
// (the server keeps a document with unsaved edits until it is saved or closed, and refuses to
// open more with a 409 when all its slots hold one: then this one is closed first).
async function switchTo(open) {
  const old = document.body.dataset.gone ? null : ui.doc;  // a gone one has nothing to ask
  if (old && old.unsaved && !confirm(`Discard the unsaved edits of ${old.name}?`)) return false;
  let state;
  try {
    state = await open();
  } catch (e) {
    if (!old || e.status !== 409) throw e;
    await closeDoc(old);
    state = await open();
  }
  await showDoc(state);
  if (old && old.id !== state.id) closeDoc(old);
  return true;
}

async function openSample() {
  await guarded(async () => {
    const row = +$("sample").value;
    if (await switchTo(() => call("POST", "/api/documents", { sample: row }))) {
      setStatus(`opened ${ui.doc.name}`);
    }
  });
}

async function upload(ev) {
  ev.preventDefault();
  await guarded(async () => {
    const form = new FormData();
    const label = $("upload-label").files[0];
    if (!label) throw new Error("choose a label map PNG first");
    form.append("label", label);
    if ($("upload-inst").files[0]) form.append("inst", $("upload-inst").files[0]);
    if ($("upload-name").value) form.append("name", $("upload-name").value);
    if (await switchTo(() => call("POST", "/api/uploads", form))) {
      setStatus(`uploaded ${ui.doc.name}`);
    }
  });
}

async function save() {
  await guarded(async () => {
    const r = await call("POST", docPath("/save"), {});
    ui.doc.unsaved = r.unsaved;
    $("unsaved").hidden = !r.unsaved;
    $("saved").hidden = false;
    $("saved").textContent = `saved v${r.version} into ${r.folder}:\n  ${r.files.join("\n  ")}\n` +
      `reproduce with:\n  ${r.commands.join("\n  ")}`;
    setStatus(`saved ${ui.doc.name} (${r.files.length} files)`);
    document.body.dataset.saved = String(r.version);
  });
}

function keys(ev) {
  const typing = ev.target.tagName === "SELECT" ||
    (ev.target.tagName === "INPUT" && !["range", "radio", "checkbox"].includes(ev.target.type));
  if (typing) return;
  const k = ev.key.toLowerCase();
  if ((ev.ctrlKey || ev.metaKey) && k === "z") edit({ op: ev.shiftKey ? "redo" : "undo" });
  else if ((ev.ctrlKey || ev.metaKey) && k === "y") edit({ op: "redo" });
  else if (!ev.ctrlKey && ({ b: "brush", f: "fill", s: "select" })[k]) {
    document.querySelector(`input[name=tool][value=${({ b: "brush", f: "fill", s: "select" })[k]}]`).checked = true;
  } else return;
  ev.preventDefault();
}

async function init() {
  // The token has become a cookie: keep it out of the address bar, history and bookmarks.
  if (location.search) history.replaceState(null, "", location.pathname);
  ui.info = await call("GET", "/api/info");
  $("run").textContent = `${ui.info.run} (${ui.info.mode}, ${ui.info.engine})`;
  buildClasses();
  ui.info.samples.forEach((name, i) => {
    const o = document.createElement("option");
    o.value = i;
    o.textContent = name;
    $("sample").appendChild(o);
  });
  $("sample").disabled = $("open").disabled = !ui.info.samples.length;
  $("open").onclick = openSample;
  $("upload").onsubmit = upload;
  $("save").onclick = save;
  $("full").onclick = () => ui.doc && guarded(() => preview("full"));
  $("undo").onclick = () => edit({ op: "undo" });
  $("redo").onclick = () => edit({ op: "redo" });
  $("radius").oninput = () => { $("radius-value").textContent = $("radius").value; };
  $("object-class").onchange = () => edit({ op: "set_class", object: ui.selected, class: +$("object-class").value });
  $("delete").onclick = () => edit({ op: "delete", object: ui.selected });
  for (const b of document.querySelectorAll("button.move")) {
    b.onclick = () => edit({ op: "move", object: ui.selected, dx: +b.dataset.dx, dy: +b.dataset.dy });
  }
  $("use-seed").onclick = () => edit({ op: "style", object: ui.selected, seed: +$("seed").value });
  $("reset-style").onclick = () => edit({ op: "style", object: ui.selected, reset: true });
  const canvas = $("label");
  canvas.addEventListener("pointerdown", onDown);
  canvas.addEventListener("pointermove", onMove);
  canvas.addEventListener("pointerup", onUp);
  document.addEventListener("keydown", keys);
  window.addEventListener("beforeunload", (ev) => {
    if (ui.doc && ui.doc.unsaved) ev.preventDefault();  // the browser asks "leave the page?"
  });
  // Leaving the page closes its document: nothing else could reach it again.
  window.addEventListener("pagehide", () => {
    if (ui.doc && !document.body.dataset.gone) {
      fetch(docPath(""), { method: "DELETE", keepalive: true, body: "{}",
        headers: { "Content-Type": "application/json" } });
    }
  });
  if (ui.info.samples.length) await openSample();
  else setStatus("upload a label map to start");
}

guarded(init);

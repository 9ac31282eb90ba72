// Pix Me! playground: one WebSocket for actions and events, a multipart POST for photos.
// Everything the server sends is rendered with textContent, never as HTML.
// The page's own chrome (labels, placeholders, toasts made here) stays English on purpose: what the
// server says — answers, captions, button labels — comes in the person's language, because every
// action carries the browser's navigator.language. There is no translation system in this file.
"use strict";

const $ = (id) => document.getElementById(id);
// This launch's key, from the address pixme printed: the WebSocket and uploads are refused without it.
const key = new URLSearchParams(location.search).get("key") || "";
const state = {
  chat: sessionStorage.getItem("pixme-chat") || "",
  ws: null,
  retry: 0,
  styles: [],
  maxUpload: 20 * 1024 * 1024,
  messages: new Map(),   // id -> {data, el}
  working: new Map(),    // reply_to -> {el, timer}
  replyTo: null,
  stick: true,           // the conversation follows new content while it is scrolled to the bottom
  scrolledTo: -1,        // where the page itself last scrolled the conversation to
  focus: null,           // a party lobby to bring into view when it changes (the person just joined it)
};
const narrow = window.matchMedia("(max-width: 820px)");

// -- people ------------------------------------------------------------------------------------
const personInput = $("person");
personInput.value = localStorage.getItem("pixme-name") || "Alex";

function me() { return personInput.value.trim().replace(/\s+/g, " ") || "You"; }
const language = navigator.language || "en";
function hue(name) {
  let h = 0;
  for (const c of name.toLowerCase()) h = (h * 31 + c.codePointAt(0)) % 360;
  return h;
}
function avatar(name, cls = "") {
  const el = document.createElement("span");
  el.className = `avatar ${cls}`.trim();
  el.textContent = (name || "?").trim().charAt(0).toUpperCase() || "?";
  el.style.background = `hsl(${hue(name)} 62% 52%)`;
  return el;
}
function knownPeople() {
  try { return JSON.parse(localStorage.getItem("pixme-people") || "[]"); } catch { return []; }
}
function rememberPerson(name) {
  const people = knownPeople().filter((p) => p.toLowerCase() !== name.toLowerCase());
  people.unshift(name);
  localStorage.setItem("pixme-people", JSON.stringify(people.slice(0, 8)));
}
function renderPeople() {
  const name = me();
  localStorage.setItem("pixme-name", name);
  const mine = $("me-avatar");
  mine.textContent = name.charAt(0).toUpperCase();
  mine.style.background = `hsl(${hue(name)} 62% 52%)`;
  const box = $("people");
  box.replaceChildren();
  const people = knownPeople();
  for (const suggestion of ["Alex", "Sam", "Kim"]) {
    if (!people.some((p) => p.toLowerCase() === suggestion.toLowerCase())) people.push(suggestion);
  }
  for (const person of people.slice(0, 8)) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    chip.setAttribute("aria-pressed", String(person.toLowerCase() === name.toLowerCase()));
    chip.append(avatar(person), document.createTextNode(person));
    chip.addEventListener("click", () => { personInput.value = person; renderPeople(); toast(`You are now ${person}`); });
    box.append(chip);
  }
}
personInput.addEventListener("input", renderPeople);
personInput.addEventListener("change", () => { rememberPerson(me()); renderPeople(); });

// -- connection --------------------------------------------------------------------------------
function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const query = `chat=${encodeURIComponent(state.chat)}&lang=${encodeURIComponent(language)}&key=${encodeURIComponent(key)}`;
  const ws = new WebSocket(`${proto}://${location.host}/ws?${query}`);
  state.ws = ws;
  setStatus("connecting", "connecting…");
  ws.addEventListener("message", (e) => onEvent(JSON.parse(e.data)));
  ws.addEventListener("close", () => {
    if (state.ws !== ws) return;
    setStatus("offline", "reconnecting…");
    state.retry = Math.min(state.retry + 1, 5);
    setTimeout(connect, 400 * 2 ** state.retry);
  });
}
function setStatus(kind, text) {
  const el = $("status");
  el.dataset.state = kind;
  el.textContent = text;
}
function send(op, extra = {}) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
    toast("Not connected — trying again…");
    return false;
  }
  state.ws.send(JSON.stringify({ op, name: me(), lang: language, ...extra }));
  rememberPerson(me());
  renderPeople();
  return true;
}

function onEvent(event) {
  switch (event.type) {
    case "hello": return onHello(event);
    case "message": return addMessage(event.message);
    case "edit": return updateMessage(event.message);
    case "delete": return removeMessage(event.id);
    case "working": return showWorking(event.reply_to);
    case "toast": return toast(event.text);
  }
}

function onHello(hello) {
  state.retry = 0;
  state.styles = hello.styles;
  state.maxUpload = hello.max_upload;
  if (hello.chat !== state.chat) {
    state.chat = hello.chat;
    sessionStorage.setItem("pixme-chat", hello.chat);
  }
  const engine = $("engine");
  engine.dataset.engine = hello.engine;
  const [name, more] = hello.engine === "gemini" ? ["Gemini engine", ` · ${hello.model}`]
    : ["Offline engine", " · no AI model, no network"];
  engine.replaceChildren(el("span", "", name), el("span", "engine-more", more));  // narrow screens drop the second part
  engine.title = hello.engine === "gemini" ? "Pictures are made by Google's Gemini image model."
    : "Set GEMINI_API_KEY to use Gemini; the offline engine understands a fixed set of edits.";
  setStatus("online", "connected");
  for (const { el } of state.messages.values()) el.remove();
  for (const grid of $("log").querySelectorAll(".album")) grid.remove();
  state.messages.clear();
  for (const message of hello.history) addMessage(message, false);
  scrollDown();
}

// -- rendering ---------------------------------------------------------------------------------
function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}
function button(label, onClick, cls = "btn") {
  const b = el("button", cls, label);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}
// Line icons as inline SVG (an emoji needs an emoji font, which many machines lack).
const GLYPHS = {
  file: "M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8zM14 3v5h5",
  camera: "M4 8h3l2-3h6l2 3h3a1 1 0 0 1 1 1v10a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V9a1 1 0 0 1 1-1zM12 17a4 4 0 1 0 0-8 4 4 0 0 0 0 8z",
};
function glyph(name) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "glyph");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", GLYPHS[name]);
  svg.append(path);
  return svg;
}
function botAvatar() {
  const box = el("span", "avatar bot");
  const logo = el("img");
  logo.src = "/static/favicon.svg";
  logo.alt = "";
  box.append(logo);
  return box;
}
function summary(id) {
  const item = state.messages.get(id);
  if (!item) return "an earlier message";
  const m = item.data;
  const who = m.from ? m.from.name : "Pix Me!";
  if (m.kind === "sticker") return `${who}: sticker`;
  if (m.kind === "file") return `${who}: ${m.file ? m.file.name : "file"}`;
  if (m.kind === "photo" && !m.image) return `${who}: ${m.file_name || "a file"}`;
  if (m.kind === "image" || (m.kind === "photo" && !m.text)) return `${who}: picture${m.text ? " — " + m.text : ""}`;
  return `${who}: ${m.text || "photo"}`;
}

function render(m) {
  const fromPerson = Boolean(m.from);
  const root = el("div", `msg ${fromPerson ? "person" : "bot"}`);
  root.dataset.id = m.id;
  root.dataset.kind = m.kind;
  root.append(fromPerson ? avatar(m.from.name) : botAvatar());
  const bubble = el("div", "bubble");
  root.append(bubble);
  bubble.append(el("div", "who", fromPerson ? m.from.name : "Pix Me!"));
  if (m.reply_to) {
    const quote = el("div", "quote", `↩ ${summary(m.reply_to)}`);
    quote.addEventListener("click", () => flash(m.reply_to));
    bubble.append(quote);
  }
  if (m.kind === "sticker") {
    bubble.append(sticker(m));
  } else if (m.image) {
    const img = el("img", "shot");
    img.src = m.image;
    img.alt = m.kind === "photo" ? "Your photo" : "Your avatar";
    img.addEventListener("load", followDown);
    img.addEventListener("error", () => img.replaceWith(el("div", "text gone", "This picture is no longer kept here.")));
    bubble.append(img);
  } else if (m.kind === "photo") {  // a file that was refused: which one it was
    const name = el("div", "upload-name");
    name.append(glyph("file"), el("span", "", m.file_name || "a file"));
    bubble.append(name);
  }
  if (m.kind === "file") bubble.append(fileRow(m.file));
  if (m.text) bubble.append(el("div", "text", m.text));
  if (m.kind === "image") bubble.append(resultActions(m), exportRow(m));
  if (m.pick) bubble.append(pickRow(m));
  if (m.kind === "photo" && m.image) bubble.append(photoActions(m));
  if (m.kind === "file" && m.node > 0) bubble.append(fileActions(m));
  if (m.kind === "menu") bubble.append(styleMenu(m));
  if (m.kind === "buttons") bubble.append(buttonRow(m));
  return root;
}

function resultActions(m) {
  const row = el("div", "actions");
  row.append(
    button("↩ Reply", () => startReply(m.id)),
    button("↶ Undo", () => send("undo", { message: m.id, node: m.node })),
    button("↻ Again", () => send("again", { message: m.id, node: m.node })),
  );
  const select = el("select");
  select.setAttribute("aria-label", "Restyle the original photo");
  select.append(Object.assign(el("option", "", "Restyle…"), { value: "" }));
  for (const s of state.styles) select.append(Object.assign(el("option", "", s.label), { value: s.id }));
  select.addEventListener("change", () => {
    if (select.value) send("restyle", { message: m.id, node: m.node, style: select.value });
    select.value = "";
  });
  const save = el("a", "btn", "⬇ Save");
  save.href = m.image;
  save.download = `pixme-${m.node}.${extension(m.mime)}`;
  row.append(select, save);
  return row;
}

// A person's own photo can be replied to, as on Telegram: a style (/comic, or just comic) or a change.
function photoActions(m) {
  const row = el("div", "actions");
  const reply = button("↩ Reply", () => startReply(m.id));
  reply.title = "Reply with a style (comic, /zombie…) or a change (add a crown)";
  row.append(reply);
  return row;
}

// Sticker / profile picture / original: the server's labels (in the person's language), pressed like any button.
function exportRow(m) {
  const row = el("div", "actions exports");
  for (const b of m.exports || []) {
    const kind = b.action.split(":")[1];
    const pressed = button(b.label, () => send("press", { message: m.id, action: b.action }));
    pressed.dataset.export = kind;
    row.append(pressed);
  }
  return row;
}

// A file keeps its bytes: the download is exactly what the server sent (full resolution, metadata kept).
function fileRow(file) {
  const row = el("a", "file-row");
  row.href = file.url;
  row.download = file.name;
  row.append(glyph("file"), el("span", "file-name", file.name), el("span", "file-size", size(file.size)),
             el("span", "file-get", "⬇"));
  return row;
}
function fileActions(m) {
  const row = el("div", "actions");
  row.append(
    button("↩ Reply", () => startReply(m.id)),
    button("↶ Undo", () => send("undo", { message: m.id, node: m.node })),
    button("↻ Again", () => send("again", { message: m.id, node: m.node })),
  );
  return row;
}

// A sticker stands on its own, like in a messenger: no bubble, at most 256 px wide, with a link to save it.
function sticker(m) {
  const box = el("div", "sticker-box");
  const img = el("img", "sticker");
  img.src = m.image;
  img.alt = "Your sticker";
  img.addEventListener("load", followDown);
  img.addEventListener("error", () => img.replaceWith(el("div", "text gone", "This sticker is no longer kept here.")));
  const save = el("a", "sticker-save", `⬇ ${m.file.name} · ${size(m.file.size)}`);
  save.href = m.file.url;
  save.download = m.file.name;
  box.append(img, save);
  return box;
}
function extension(mime) {
  return { "image/png": "png", "image/webp": "webp", "image/gif": "gif" }[mime] || "jpg";
}
function size(bytes) {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

function styleMenu(m) {
  const grid = el("div", "styles");
  for (const s of m.styles) {
    const b = button(s.label, () => send("style", { message: m.id, style: s.id }));
    b.title = s.description;
    b.dataset.style = s.id;
    grid.append(b);
  }
  return grid;
}

function buttonRow(m) {
  const row = el("div", "buttons");
  for (const b of m.buttons || []) {
    const pressed = button(b.label, () => send("press", { message: m.id, action: b.action }));
    if (b.label.startsWith("✓")) pressed.classList.add("current");  // the chosen setting or language
    row.append(pressed);
  }
  if ((m.buttons || []).some((b) => b.action.startsWith("party:join:"))) {
    const selfie = button("Send my selfie", () => { startReply(m.id); $("file").click(); }, "btn primary icon-text");
    selfie.prepend(glyph("camera"));
    for (const b of row.querySelectorAll("button")) {
      if (b !== selfie) b.addEventListener("click", () => { state.focus = m.id; });
    }
    selfie.dataset.role = "party-selfie";
    row.append(selfie);
  }
  return row;
}

function addMessage(m, scroll = true) {
  $("empty").hidden = true;
  const node = render(m);
  state.messages.set(m.id, { data: m, el: node });
  if (!m.from && m.reply_to) clearWorking(m.reply_to);
  const log = $("log");
  const firstWorking = log.querySelector(".working");
  if (m.album) {  // pictures made together (variants, a style pack): side by side in one grid
    let grid = log.querySelector(`.album[data-album="${CSS.escape(m.album)}"]`);
    if (!grid) {
      grid = el("div", "album");
      grid.dataset.album = m.album;
      log.insertBefore(grid, firstWorking);
    }
    grid.append(node);
  } else {
    log.insertBefore(node, firstWorking);
  }
  if (scroll) scrollDown();
}

// One picture of several made together: continue from this one (it comes out as a result of its own).
function pickRow(m) {
  const row = el("div", "actions pick");
  row.append(button(m.pick.label, () => send("press", { message: m.id, action: m.pick.action }), "btn primary"));
  return row;
}
function updateMessage(m) {
  const item = state.messages.get(m.id);
  if (!item) return addMessage(m);
  const log = $("log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  const node = render(m);
  node.style.animation = "none";  // edited in place: no pop, it is the same message
  item.el.replaceWith(node);
  state.messages.set(m.id, { data: m, el: node });
  if (state.focus === m.id) {  // the lobby the person just joined: show who's in, not the photo they sent
    state.focus = null;
    bringIntoView(node);
  } else if (atBottom) {
    scrollDown();  // a keyboard that grew stays in view
  }
}
function removeMessage(id) {
  const item = state.messages.get(id);
  if (item) item.el.remove();
  state.messages.delete(id);
  if (state.replyTo === id) stopReply();
}

function showWorking(replyTo) {
  const key = replyTo || "";
  let item = state.working.get(key);
  if (!item) {
    const root = el("div", "msg bot working");
    root.append(botAvatar());
    const bubble = el("div", "bubble");
    const dots = el("span", "dots");
    dots.append(el("i"), el("i"), el("i"));
    bubble.append(el("span", "", "working…"), dots);
    root.append(bubble);
    $("log").append(root);
    item = { el: root, timer: 0 };
    state.working.set(key, item);
    scrollDown();
  }
  clearTimeout(item.timer);
  item.timer = setTimeout(() => clearWorking(key), 7000);
}
function clearWorking(replyTo) {
  const item = state.working.get(replyTo || "");
  if (!item) return;
  clearTimeout(item.timer);
  item.el.remove();
  state.working.delete(replyTo || "");
}

function scrollDown() {
  const log = $("log");
  log.scrollTop = log.scrollHeight;
  state.stick = true;
  state.scrolledTo = log.scrollTop;
}
// A picture that finishes loading grows the conversation: follow it only if the person was at the bottom.
function followDown() {
  if (state.stick) scrollDown();
}
function bringIntoView(node) {
  node.scrollIntoView({ block: "nearest" });
  state.stick = false;
  state.scrolledTo = $("log").scrollTop;
}
// Only the person's own scrolling decides whether to follow (the event of one of ours may arrive after a
// picture has already grown the conversation, and would read as "scrolled up").
$("log").addEventListener("scroll", () => {
  const log = $("log");
  if (log.scrollTop === state.scrolledTo) return;
  state.stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
});
function flash(id) {
  const item = state.messages.get(id);
  if (!item) return;
  item.el.scrollIntoView({ behavior: "smooth", block: "center" });
  item.el.classList.add("highlight");
  setTimeout(() => item.el.classList.remove("highlight"), 1200);
}

let toastTimer = 0;
function toast(text) {
  const box = $("toast");
  box.textContent = text;
  box.hidden = false;
  followDown();  // its line takes room from the conversation: keep the newest message in view
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 3200);
}

// -- replying and sending ----------------------------------------------------------------------
function startReply(id) {
  state.replyTo = id;
  $("replying-text").textContent = `Replying to ${summary(id)}`;
  $("replying").hidden = false;
  const text = $("text");
  const item = state.messages.get(id);
  text.placeholder = item && item.data.kind === "photo" ? "A style (comic, /zombie…) or a change (add a crown)"
    : "What should change? e.g. add a crown";
  text.focus();
}
function stopReply() {
  state.replyTo = null;
  $("replying").hidden = true;
  $("text").placeholder = "Upload a selfie, or reply to a picture…";
}
$("cancel-reply").addEventListener("click", stopReply);
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && state.replyTo) stopReply(); });

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  if (send("text", { text, reply_to: state.replyTo })) {
    $("text").value = "";
    stopReply();
  }
});
$("party").addEventListener("click", () => {
  if (send("text", { text: "/party" }) && narrow.matches) setSide(false);  // the lobby needs the screen
});

// -- the panel (who you are, parties, how it works): folded by default on narrow screens ----------
function setSide(open) {
  $("layout").dataset.side = open ? "open" : "closed";
  $("side-toggle").setAttribute("aria-expanded", String(open));
}
$("side-toggle").addEventListener("click", () => setSide($("layout").dataset.side !== "open"));
setSide(!narrow.matches);
narrow.addEventListener("change", () => setSide(!narrow.matches));

async function upload(file) {
  if (!file || !state.chat) return;
  const form = new FormData();
  form.append("name", me());
  form.append("lang", language);
  if (state.replyTo) form.append("reply_to", state.replyTo);
  const replied = state.replyTo && state.messages.get(state.replyTo);
  if (replied && (replied.data.buttons || []).some((b) => b.action.startsWith("party:"))) state.focus = state.replyTo;
  form.append("photo", file, file.name || "photo");
  stopReply();
  rememberPerson(me());
  renderPeople();
  toast(`Sending ${file.name || "your photo"}…`);
  try {
    const response = await fetch(`/api/chats/${encodeURIComponent(state.chat)}/photos?key=${encodeURIComponent(key)}`,
                                 { method: "POST", body: form });
    if (!response.ok) toast((await response.text()) || `Upload failed (${response.status})`);
  } catch {
    toast("Upload failed — is the playground still running?");
  }
}
$("attach").addEventListener("click", () => $("file").click());
$("empty-upload").addEventListener("click", () => $("file").click());
$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  $("file").value = "";
  upload(file);
});

// Drag and drop anywhere on the page.
let dragDepth = 0;
window.addEventListener("dragenter", (e) => { if (hasFiles(e)) { dragDepth++; $("drop").hidden = false; } });
window.addEventListener("dragleave", () => { if (--dragDepth <= 0) { dragDepth = 0; $("drop").hidden = true; } });
window.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
window.addEventListener("drop", (e) => {
  e.preventDefault();
  dragDepth = 0;
  $("drop").hidden = true;
  const file = e.dataTransfer && e.dataTransfer.files[0];
  if (file) upload(file);
});
function hasFiles(e) { return e.dataTransfer && Array.from(e.dataTransfer.types).includes("Files"); }

renderPeople();
connect();

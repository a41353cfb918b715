// The trace viewer: replays one simulator run from its trace (embedded in this page as JSON), in the
// spirit of RaftScope: the nodes with role and term, messages in flight, every node's log coloured by
// term, network faults and crashes, on a timeline you can play, pause, step and drag.
//
// The state after event i is a pure function of events 0..=i. To make jumping cheap, a copy of the state
// is kept every CHECKPOINT_EVERY events and a jump replays from the nearest one.
"use strict";

const CHECKPOINT_EVERY = 1000;
const MAX_MESSAGES_DRAWN = 150;
const LOG_WINDOW = 36; // log entries shown per row: the last ones
const SVG_NS = "http://www.w3.org/2000/svg";

const data = JSON.parse(document.getElementById("trace-data").textContent);
const events = data.events;
const runEvent = events.find((e) => e.kind === "run") || { seed: "?", nodes: 0, settings: "" };
const nodeCount = Math.max(runEvent.nodes || 0, ...events.filter((e) => e.node).map((e) => e.node), 1);
const nodeIds = Array.from({ length: nodeCount }, (_, i) => i + 1);

// Each message, from its send to its delivery or drop: what is in flight at any moment.
const messages = new Map();
events.forEach((event, index) => {
  if (event.kind === "send") {
    messages.set(event.id, { id: event.id, from: event.from, to: event.to, text: event.message, sendIndex: index, sendT: event.t, endIndex: Infinity, endT: Infinity, dropped: false });
  } else if (event.kind === "deliver" || event.kind === "drop") {
    const message = messages.get(event.id);
    // A duplicated message is delivered twice: it is in flight until its last delivery.
    if (message) {
      message.endIndex = index;
      message.endT = event.t;
      message.dropped = event.kind === "drop";
      message.reason = event.reason;
    }
  }
});
const messageList = [...messages.values()].sort((a, b) => a.sendIndex - b.sendIndex);

// Marks on the timeline and the stops of "next change".
const isChange = (event) => event.kind === "fault" || event.kind === "violation" || event.kind === "snapshot_install" || (event.kind === "role" && ["leader", "candidate"].includes(event.role));
const changeIndexes = [];
events.forEach((event, index) => { if (isChange(event)) changeIndexes.push(index); });

// ---- the state machine of the replay ----

function initialState() {
  const nodes = {};
  for (const id of nodeIds) {
    nodes[id] = { role: "follower", term: 0, leader: null, vote: null, firstIndex: 1, log: [], commit: 0, applied: 0, status: "up" };
  }
  return { nodes, network: [], phase: "", violation: null };
}

function copyState(state) {
  const nodes = {};
  for (const id of nodeIds) nodes[id] = { ...state.nodes[id], log: state.nodes[id].log.slice() };
  return { nodes, network: state.network.slice(), phase: state.phase, violation: state.violation };
}

function setLog(node, firstIndex, terms) {
  // Entries from firstIndex on replace what the log held there (a conflicting suffix is cut first).
  if (firstIndex < node.firstIndex) {
    node.log = [];
    node.firstIndex = firstIndex;
  }
  node.log.length = Math.min(node.log.length, firstIndex - node.firstIndex);
  while (node.log.length < firstIndex - node.firstIndex) node.log.push(0); // unknown (a gap)
  for (const term of terms) node.log.push(term);
}

// The log now starts after `index`: entries up to it are only in a snapshot (compaction keeps the rest).
function compactTo(node, index) {
  if (index < node.firstIndex) return;
  node.log = node.log.slice(Math.min(node.log.length, index + 1 - node.firstIndex));
  node.firstIndex = index + 1;
}

const numbers = (text) => (text.match(/\d+/g) || []).map(Number);

function applyFault(state, text, t) {
  let match;
  if ((match = text.match(/^(crash|restart|pause|resume|power loss) (\d+)$/))) {
    const node = state.nodes[match[2]];
    if (!node) return;
    if (match[1] === "crash") node.status = "crashed";
    else if (match[1] === "pause") node.status = "paused";
    else if (match[1] === "power loss") node.status = node.status === "up" ? "armed" : node.status;
    else node.status = "up";
  } else if ((match = text.match(/^node (\d+) (stopped|cannot start)/))) {
    if (state.nodes[match[1]]) state.nodes[match[1]].status = "crashed";
  } else if (text === "heal") {
    state.network = [];
  } else if (/^(partition|cut|bridge|clog)/.test(text)) {
    const until = text.startsWith("clog") ? Number((text.match(/until (\d+)/) || [])[1]) : Infinity;
    state.network.push({ text, until, links: cutLinks(text) });
  }
  state.network = state.network.filter((fault) => fault.until > t);
}

// The directed links a network fault affects, as "from-to" strings.
function cutLinks(text) {
  const links = [];
  const pairs = (as, bs) => { for (const a of as) for (const b of bs) if (a !== b) links.push(`${a}-${b}`, `${b}-${a}`); };
  let match;
  if ((match = text.match(/^partition \[([^\]]*)\] \| \[([^\]]*)\]/))) {
    pairs(numbers(match[1]), numbers(match[2]));
  } else if ((match = text.match(/^bridge \[([^\]]*)\] <(\d+)> \[([^\]]*)\]/))) {
    pairs(numbers(match[1]), numbers(match[3]));
  } else if ((match = text.match(/^(cut|clog) (\d+) -> (\d+)/))) {
    links.push(`${match[2]}-${match[3]}`);
  }
  return links;
}

function apply(state, event) {
  const node = state.nodes[event.node];
  switch (event.kind) {
    case "role":
      Object.assign(node, { role: event.role, term: event.term, leader: event.leader ?? null });
      if (node.status === "crashed") node.status = "up";
      break;
    case "persist":
      node.term = event.term;
      node.vote = event.vote ?? null;
      break;
    case "append":
      setLog(node, event.first_index, event.terms);
      break;
    case "recover":
      Object.assign(node, { term: event.term, vote: event.vote ?? null, commit: event.commit_index, role: "follower", leader: null, status: "up", log: [], firstIndex: event.first_index });
      node.applied = Math.min(node.applied, event.commit_index);
      setLog(node, event.first_index, event.terms);
      break;
    case "snapshot_taken":
      compactTo(node, event.index);
      break;
    case "snapshot_install":
      // §7: the entries after the snapshot stay only if the log held its entry with its term.
      if (!event.keep_entries_after) node.log = [];
      compactTo(node, event.index);
      if (!event.keep_entries_after) node.firstIndex = event.index + 1;
      node.commit = Math.max(node.commit, event.index);
      node.applied = Math.max(node.applied, event.index);
      break;
    case "commit":
      node.commit = event.index;
      break;
    case "apply":
      node.applied = event.index;
      // The apply event carries the entry's true term: it corrects a gap left by a snapshot.
      if (event.index >= node.firstIndex && node.log[event.index - node.firstIndex] === 0) node.log[event.index - node.firstIndex] = event.term;
      break;
    case "fault":
      applyFault(state, event.fault, event.t);
      break;
    case "phase":
      state.phase = event.phase;
      break;
    case "violation":
      state.violation = `${event.check}: ${event.detail}`;
      break;
    default:
      break;
  }
}

const checkpoints = [initialState()]; // checkpoints[k]: the state before event k * CHECKPOINT_EVERY
function stateAt(index) {
  const wanted = Math.floor(index / CHECKPOINT_EVERY);
  while (checkpoints.length <= wanted) {
    const k = checkpoints.length - 1;
    const state = copyState(checkpoints[k]);
    for (let i = k * CHECKPOINT_EVERY; i < (k + 1) * CHECKPOINT_EVERY && i < events.length; i++) apply(state, events[i]);
    checkpoints.push(state);
  }
  const state = copyState(checkpoints[wanted]);
  for (let i = wanted * CHECKPOINT_EVERY; i <= index && i < events.length; i++) apply(state, events[i]);
  return state;
}

// ---- drawing ----

const svg = document.getElementById("cluster");
const CENTER = { x: 260, y: 212 };
const RADIUS = nodeCount === 1 ? 0 : 138;
const NODE_RADIUS = 36;
const position = (id) => {
  const angle = -Math.PI / 2 + (2 * Math.PI * (id - 1)) / nodeCount;
  return { x: CENTER.x + RADIUS * Math.cos(angle), y: CENTER.y + RADIUS * Math.sin(angle) };
};

function el(tag, attrs, text) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, value);
  if (text !== undefined) element.textContent = text;
  return element;
}

// Ten colours that stay distinct side by side (Tableau 10), so neighbouring terms never look alike.
const TERM_COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#59a14f", "#b07aa1", "#76b7b2", "#9c755f", "#edc948", "#ff9da7", "#bab0ac"];
const termColor = (term) => (term ? TERM_COLORS[(term - 1) % TERM_COLORS.length] : "#c9ced8");
const roleColor = { leader: "#d18b00", candidate: "#7a4cc2", precandidate: "#a77fe0", follower: "#2f6fbd" };

function messageKind(text) {
  const word = (text.match(/t\d+ (\S+)/) || [null, text.split(" ")[0]])[1];
  if (word.startsWith("prevote") || word.startsWith("vote")) return word.endsWith("?") ? "vote-request" : "vote-response";
  if (word === "app") return text.includes(" ok ") || text.includes("reject") ? "append-response" : "append";
  if (word === "hb") return text.includes("hb ok") ? "heartbeat-response" : "heartbeat";
  return "other";
}
const messageColor = { "vote-request": "#7a4cc2", "vote-response": "#b59ae6", append: "#2e8b57", "append-response": "#7fc8a0", heartbeat: "#8a93a5", "heartbeat-response": "#c3c8d2", other: "#c07a2c" };

function drawCluster(state, index) {
  const now = events[index].t;
  svg.replaceChildren();
  // Links: grey, or red and dashed where a fault cuts or clogs them.
  const affected = new Map();
  for (const fault of state.network) for (const link of fault.links) affected.set(link, fault.text.startsWith("clog") ? "clog" : "cut");
  for (const a of nodeIds) {
    for (const b of nodeIds) {
      if (b <= a) continue;
      const p = position(a);
      const q = position(b);
      const kind = affected.get(`${a}-${b}`) || affected.get(`${b}-${a}`);
      const style = kind === "cut" ? { stroke: "#c0392b", "stroke-dasharray": "6 5", "stroke-width": 2 } : kind === "clog" ? { stroke: "#e67e22", "stroke-width": 3 } : { stroke: "#e3e6ec", "stroke-width": 1 };
      svg.append(el("line", { x1: p.x, y1: p.y, x2: q.x, y2: q.y, ...style }));
    }
  }
  // Messages in flight at this moment, positioned by how much of their trip is done; past the cap, the
  // most recently sent are drawn.
  const flying = [];
  for (const message of messageList) {
    if (message.sendIndex > index) break;
    if (message.endIndex > index) flying.push(message);
  }
  const inFlight = flying.length;
  const drawn = Math.min(inFlight, MAX_MESSAGES_DRAWN);
  for (const message of flying.slice(inFlight - drawn)) {
    const p = position(message.from);
    const q = position(message.to);
    const span = Number.isFinite(message.endT) ? Math.max(1, message.endT - message.sendT) : 1e6;
    const done = Math.min(1, Math.max(0, (now - message.sendT) / span));
    // Start and end at the circles' edges, with a small sideways offset so the two directions differ.
    const dx = q.x - p.x;
    const dy = q.y - p.y;
    const length = Math.hypot(dx, dy) || 1;
    const along = NODE_RADIUS / length + done * (1 - (2 * NODE_RADIUS) / length);
    const x = p.x + dx * along - (dy / length) * 6;
    const y = p.y + dy * along + (dx / length) * 6;
    const kind = messageKind(message.text);
    const dot = el("circle", { cx: x, cy: y, r: kind.startsWith("heartbeat") ? 4 : 6, fill: messageColor[kind], stroke: message.dropped ? "#c0392b" : "#fff", "stroke-width": message.dropped ? 2 : 1, "data-message": message.id });
    dot.append(el("title", {}, `#${message.id} ${message.text}${message.dropped ? ` (will be dropped: ${message.reason})` : ""}`));
    svg.append(dot);
  }
  for (const id of nodeIds) {
    const node = state.nodes[id];
    const p = position(id);
    const down = node.status === "crashed";
    const group = el("g", { "data-node": id, "data-role": down ? "crashed" : node.role, "data-term": node.term, "data-status": node.status });
    const fill = down ? "#c9ced8" : roleColor[node.role] || "#888";
    if (node.role === "leader" && !down) group.append(el("circle", { cx: p.x, cy: p.y, r: NODE_RADIUS + 6, fill: "none", stroke: "#d18b00", "stroke-width": 3 }));
    group.append(el("circle", { cx: p.x, cy: p.y, r: NODE_RADIUS, fill, stroke: node.status === "paused" || node.status === "armed" ? "#c0392b" : "#fff", "stroke-width": 3, "stroke-dasharray": node.status === "paused" ? "5 4" : "none" }));
    group.append(el("text", { x: p.x, y: p.y - 6, "text-anchor": "middle", fill: "#fff", "font-size": 20, "font-weight": 700 }, down ? "×" : String(node.term)));
    group.append(el("text", { x: p.x, y: p.y + 14, "text-anchor": "middle", fill: "#fff", "font-size": 10 }, down ? "crashed" : "term"));
    const detail = `${down ? "crashed" : node.role}${node.status === "paused" ? " · paused" : node.status === "armed" ? " · power loss armed" : ""}`;
    const below = p.y > CENTER.y + 10 || nodeCount === 1;
    const labelY = below ? p.y + NODE_RADIUS + 17 : p.y - NODE_RADIUS - 24;
    group.append(el("text", { x: p.x, y: labelY, "text-anchor": "middle", fill: "#1d2330", "font-size": 13, "font-weight": 700 }, `node ${id}`));
    group.append(el("text", { x: p.x, y: labelY + 14, "text-anchor": "middle", fill: "#6b7385", "font-size": 11 }, detail));
    svg.append(group);
  }
  svg.append(el("text", { x: 10, y: 410, fill: "#6b7385", "font-size": 11 }, `${inFlight} message${inFlight === 1 ? "" : "s"} in flight${inFlight > drawn ? ` (${drawn} drawn)` : ""}`));
}

function drawLogs(state) {
  const container = document.getElementById("logs");
  const last = Math.max(0, ...nodeIds.map((id) => state.nodes[id].firstIndex + state.nodes[id].log.length - 1));
  const start = Math.max(1, last - LOG_WINDOW + 1);
  const rows = [];
  const header = document.createElement("div");
  header.className = "logrow indexes";
  header.append(Object.assign(document.createElement("span"), { className: "who", textContent: "index" }));
  for (let i = start; i <= start + LOG_WINDOW - 1; i++) header.append(Object.assign(document.createElement("span"), { className: "entry", textContent: i % 5 === 0 || i === start ? String(i) : "" }));
  rows.push(header);
  for (const id of nodeIds) {
    const node = state.nodes[id];
    const row = document.createElement("div");
    row.className = `logrow${node.status === "crashed" ? " crashed" : ""}`;
    row.dataset.node = id;
    row.append(Object.assign(document.createElement("span"), { className: "who", textContent: `node ${id}` }));
    for (let i = start; i <= start + LOG_WINDOW - 1; i++) {
      const box = document.createElement("span");
      const term = i >= node.firstIndex ? node.log[i - node.firstIndex] : undefined;
      if (i < node.firstIndex) {
        box.className = "entry compacted";
        box.title = `index ${i}: in a snapshot`;
      } else if (term === undefined) {
        box.className = "entry none";
      } else {
        box.className = `entry${i > node.commit ? " uncommitted" : ""}`;
        box.style.background = termColor(term);
        box.textContent = term ? String(term) : "?";
        box.title = `index ${i}, term ${term || "unknown"}${i > node.commit ? ", not committed here yet" : ", committed"}${i <= node.applied ? ", applied" : ""}`;
      }
      row.append(box);
    }
    rows.push(row);
  }
  container.replaceChildren(...rows);
}

function describe(event) {
  switch (event.kind) {
    case "run": return `run: seed ${event.seed}, ${event.nodes} nodes, faults ${event.settings}`;
    case "send": return `send #${event.id} ${event.message}`;
    case "deliver": return `deliver #${event.id} ${event.from}→${event.to}`;
    case "drop": return `drop #${event.id} ${event.from}→${event.to} (${event.reason})`;
    case "role": return `node ${event.node} is ${event.role} in term ${event.term}${event.leader ? `, leader ${event.leader}` : ""}`;
    case "persist": return `node ${event.node} persists term ${event.term}, vote ${event.vote ?? "none"}, last index ${event.last_index}`;
    case "append": return `node ${event.node} appends ${event.terms.length} entr${event.terms.length === 1 ? "y" : "ies"} from index ${event.first_index}`;
    case "recover": return `node ${event.node} restarts from its disk: term ${event.term}, ${event.terms.length} entries, commit ${event.commit_index}`;
    case "snapshot_taken": return `node ${event.node} snapshots at ${event.index} (term ${event.term}) and compacts its log`;
    case "snapshot_install": return `node ${event.node} installs its leader's snapshot at ${event.index} (term ${event.term})${event.keep_entries_after ? ", keeping the entries after it" : ", replacing its log"}`;
    case "commit": return `node ${event.node} commits up to ${event.index}`;
    case "apply": return `node ${event.node} applies ${event.index} (term ${event.term})`;
    case "invoke": return `client ${event.client} → node ${event.node}: ${event.op}`;
    case "complete": return `client ${event.client} ← node ${event.node}: ${event.result}`;
    case "fault": return `FAULT: ${event.fault}`;
    case "phase": return `phase: ${event.phase}`;
    case "violation": return `VIOLATION ${event.check}: ${event.detail}`;
    default: return JSON.stringify(event);
  }
}

const formatTime = (us) => `${(us / 1000).toFixed(3)} ms`;

function drawSide(state, index) {
  const event = events[index];
  document.getElementById("clock").textContent = `t = ${formatTime(event.t)}`;
  document.getElementById("current").textContent = describe(event);
  document.getElementById("position").textContent = `event ${index + 1} of ${events.length}`;
  const network = document.getElementById("network");
  const lines = state.network.map((fault) => Object.assign(document.createElement("div"), { className: "cut", textContent: fault.text }));
  const down = nodeIds.filter((id) => state.nodes[id].status !== "up").map((id) => `node ${id}: ${state.nodes[id].status}`);
  for (const text of down) lines.push(Object.assign(document.createElement("div"), { className: "cut", textContent: text }));
  if (state.violation) lines.push(Object.assign(document.createElement("div"), { className: "cut", textContent: `violation: ${state.violation}` }));
  if (!lines.length) lines.push(document.createTextNode("all links up, every node running"));
  network.replaceChildren(...lines);
  const list = document.getElementById("events");
  const items = [];
  for (let i = index; i >= 0 && items.length < 14; i--) {
    const e = events[i];
    if (e.kind === "send" || e.kind === "deliver") continue; // the picture shows those
    const kind = e.kind === "fault" || e.kind === "violation" ? "fault" : e.kind.startsWith("snapshot") ? "snapshot" : e.kind === "role" ? (e.role === "leader" ? "leader" : "election") : "info";
    const item = document.createElement("li");
    item.className = `${kind}${i === index ? " now" : ""}`;
    item.append(Object.assign(document.createElement("time"), { textContent: formatTime(e.t) }), Object.assign(document.createElement("span"), { textContent: describe(e) }));
    items.push(item);
  }
  list.replaceChildren(...items);
}

// ---- the timeline ----

const slider = document.getElementById("slider");
const playButton = document.getElementById("play");
let current = 0;
let playing = null; // {startedAt (real ms), fromT (simulated µs)} while playing

function show(index) {
  current = Math.max(0, Math.min(events.length - 1, index));
  slider.value = String(current);
  const state = stateAt(current);
  drawCluster(state, current);
  drawLogs(state);
  drawSide(state, current);
  document.body.dataset.index = String(current);
}

function pause() {
  playing = null;
  playButton.textContent = "▶ play";
}

function frame(timestamp) {
  if (!playing) return;
  const speedMsPerSecond = Number(document.getElementById("speed").value);
  const target = playing.fromT + (timestamp - playing.startedAt) * speedMsPerSecond; // µs: ms/s × real ms
  let index = current;
  while (index + 1 < events.length && events[index + 1].t <= target) index += 1;
  if (index !== current) show(index);
  if (current >= events.length - 1) return pause();
  requestAnimationFrame(frame);
}

function play() {
  if (current >= events.length - 1) show(0);
  playButton.textContent = "‖ pause";
  playing = { startedAt: performance.now(), fromT: events[current].t };
  requestAnimationFrame(frame);
}

function markTimeline() {
  const marks = document.getElementById("marks");
  const last = Math.max(1, events.length - 1);
  for (const index of changeIndexes) {
    const event = events[index];
    if (event.kind === "role" && event.role !== "leader") continue;
    const mark = document.createElement("span");
    mark.className = `mark ${event.kind === "role" ? "leader" : event.kind === "snapshot_install" ? "snapshot" : "fault"}`;
    mark.style.left = `${(100 * index) / last}%`;
    mark.title = `${formatTime(event.t)}: ${describe(event)}`;
    mark.addEventListener("click", () => { pause(); show(index); });
    marks.append(mark);
  }
}

function setUp() {
  document.getElementById("run").textContent = `seed ${runEvent.seed} · ${nodeCount} nodes · faults ${runEvent.settings || "?"} · ${data.source || ""}`;
  if (data.note) {
    const note = document.getElementById("note");
    note.textContent = data.note;
    note.hidden = false;
  }
  slider.max = String(Math.max(0, events.length - 1));
  slider.addEventListener("input", () => { pause(); show(Number(slider.value)); });
  document.getElementById("start").addEventListener("click", () => { pause(); show(0); });
  document.getElementById("back").addEventListener("click", () => { pause(); show(current - 1); });
  document.getElementById("step").addEventListener("click", () => { pause(); show(current + 1); });
  document.getElementById("next-change").addEventListener("click", () => {
    pause();
    const next = changeIndexes.find((i) => i > current);
    show(next === undefined ? events.length - 1 : next);
  });
  playButton.addEventListener("click", () => (playing ? pause() : play()));
  document.addEventListener("keydown", (event) => {
    if (event.target.tagName === "SELECT") return;
    const actions = { ArrowRight: "step", ArrowLeft: "back", " ": "play", Home: "start", n: "next-change" };
    if (actions[event.key]) {
      event.preventDefault();
      document.getElementById(actions[event.key]).click();
    }
  });
  markTimeline();
  if (events.length === 0) {
    document.getElementById("current").textContent = "this trace has no events";
    return;
  }
  // A position in the address (page.html#1234) opens the replay at that event, to share a moment.
  const linked = Number(location.hash.slice(1));
  show(Number.isInteger(linked) && linked > 0 ? linked : 0);
}

setUp();

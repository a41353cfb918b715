// The live view: polls /cluster on the node that served this page, draws one card per node, and works out
// a strip of events (elections, leader changes, nodes going down and coming back) by comparing each answer
// with the previous one. No library, no build step, nothing fetched from anywhere else.
"use strict";

const POLL_MS = 500;
// A poll that takes longer than this is abandoned and counted as a lost connection, so a stuck serving
// node cannot stop the page from polling.
const POLL_TIMEOUT_MS = 2000;
const MAX_EVENTS = 40;

const state = {
  previous: null, // the last poll's summary, to compare the next one with
  events: [], // newest first
  polls: 0,
  connected: null, // null until the first answer or failure
};

// Builds an element: h("span", {class: "x"}, "text", child...). Text goes in as text, never as HTML.
function h(tag, attrs, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) element.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

// The cluster as one poll saw it: nodes by id, and the leader. Two nodes may both say "leader" for a
// moment (a deposed leader that has not yet heard of the new term): the one with the higher term leads.
function summarize(view) {
  const nodes = view.nodes.map((node) => ({
    id: node.id,
    up: node.up,
    error: node.error,
    addr: node.admin_addr,
    status: node.status || null,
  }));
  let leader = null;
  for (const node of nodes) {
    if (node.up && node.status.role === "leader" && (!leader || node.status.term > leader.status.term)) {
      leader = node;
    }
  }
  const terms = nodes.filter((n) => n.up).map((n) => n.status.term);
  const byId = new Map(nodes.map((n) => [n.id, n]));
  // The leader's configuration is the one that changes (dissertation §4); without a leader, the serving
  // node's view.
  const source = leader || byId.get(view.served_by);
  return {
    servedBy: view.served_by,
    nodes,
    byId,
    leader,
    maxTerm: terms.length ? Math.max(...terms) : 0,
    configuration: source && source.up ? source.status.configuration || null : null,
  };
}

function idList(ids) {
  return ids && ids.length ? ids.join(",") : "none";
}

// One line for a configuration: during a joint change (§6) both halves, old → new, and the entry.
function describeConfiguration(configuration) {
  const c = configuration;
  const learners = c.learners.length ? ` · learners ${idList(c.learners)}` : "";
  if (c.joint) {
    return `joint C_old,new → C_new: voters {${idList(c.outgoing_voters)}} → {${idList(c.voters)}}${learners} (configuration entry ${c.index})`;
  }
  const pending = c.change_in_progress ? ", not yet committed" : "";
  return `voters ${idList(c.voters)}${learners} (configuration entry ${c.index}${pending})`;
}

// A node's place in the configuration: voter or learner; during a joint change, a voter of only the old
// half is leaving and one of only the new half joining.
function membershipOf(configuration, id) {
  const c = configuration;
  if (!c) return "unknown";
  const incoming = c.voters.includes(id);
  const outgoing = (c.outgoing_voters || []).includes(id);
  if (c.learners.includes(id)) return "learner";
  if (c.joint && incoming && !outgoing) return "voter (joining)";
  if (c.joint && outgoing && !incoming) return "voter (leaving)";
  if (incoming || outgoing) return "voter";
  return "not a member";
}

function clock() {
  const now = new Date();
  const pad = (n, width) => String(n).padStart(width, "0");
  return `${pad(now.getHours(), 2)}:${pad(now.getMinutes(), 2)}:${pad(now.getSeconds(), 2)}.${pad(now.getMilliseconds(), 3)}`;
}

function addEvent(kind, text) {
  state.events.unshift({ time: clock(), kind, text });
  state.events.length = Math.min(state.events.length, MAX_EVENTS);
}

// What changed between two polls, as events.
function deriveEvents(before, now) {
  if (!before) {
    const up = now.nodes.filter((n) => n.up).length;
    addEvent("info", `watching ${now.nodes.length} nodes through node ${now.servedBy} (${up} up)`);
    if (now.leader) addEvent("leader", `node ${now.leader.id} leads in term ${now.leader.status.term}`);
    if (now.configuration) addEvent("info", `configuration: ${describeConfiguration(now.configuration)}`);
    return;
  }
  for (const node of now.nodes) {
    const old = before.byId.get(node.id);
    if (old && old.up && !node.up) addEvent("down", `node ${node.id} went down (${node.error})`);
    if (old && !old.up && node.up) {
      addEvent("up", `node ${node.id} is back: ${node.status.role} in term ${node.status.term}`);
    }
    if (!old) addEvent("info", `node ${node.id} joined the view`);
    const wasCampaigning = old && old.up && ["candidate", "precandidate"].includes(old.status.role);
    if (node.up && node.status.role === "candidate" && !(wasCampaigning && old.status.term === node.status.term)) {
      addEvent("election", `node ${node.id} stands for election in term ${node.status.term}`);
    }
  }
  if (now.maxTerm > before.maxTerm) {
    addEvent("election", `term ${before.maxTerm} → ${now.maxTerm}: an election was held`);
  }
  const oldIndex = before.configuration ? before.configuration.index : null;
  if (now.configuration && now.configuration.index !== oldIndex) {
    addEvent("info", `configuration changed: ${describeConfiguration(now.configuration)}`);
  }
  const oldLeader = before.leader ? before.leader.id : null;
  const newLeader = now.leader ? now.leader.id : null;
  if (newLeader !== oldLeader) {
    if (newLeader === null) {
      addEvent("down", `no leader: node ${oldLeader} no longer leads; waiting for an election`);
    } else if (oldLeader === null) {
      addEvent("leader", `node ${newLeader} became leader in term ${now.leader.status.term}`);
    } else {
      addEvent("leader", `leader changed: node ${oldLeader} → node ${newLeader} (term ${now.leader.status.term})`);
    }
  } else if (now.leader && before.leader && now.leader.status.term !== before.leader.status.term) {
    addEvent("leader", `node ${newLeader} re-elected in term ${now.leader.status.term}`);
  }
}

// Replication lag of `node`, in entries: on the leader's word (its last index minus the follower's match
// index) when there is a leader that tracks it; otherwise how far the node's applying trails its commit.
function lagOf(node, summary) {
  const status = node.status;
  const leader = summary.leader;
  if (leader && leader.id !== node.id) {
    const progress = (leader.status.followers || []).find((f) => f.id === node.id);
    if (progress) {
      return { entries: Math.max(0, leader.status.last_index - progress.match_index), basis: "behind the leader's log" };
    }
  }
  return { entries: Math.max(0, status.commit_index - status.applied_index), basis: "committed, not yet applied" };
}

function card(node, summary) {
  const served = node.id === summary.servedBy ? h("span", { class: "served" }, "serves this page") : null;
  const member = membershipOf(summary.configuration, node.id);
  const memberLine = h("div", { class: `member ${member.split(" ")[0]}` }, member);
  if (!node.up) {
    return h(
      "article",
      { class: "node down", "data-id": node.id, "data-role": "down", "data-member": member },
      h("header", {}, h("span", { class: "name" }, `node ${node.id}`), h("span", { class: "pill down" }, "down")),
      memberLine,
      h("div", { class: "why" }, node.error || "unreachable"),
      h("div", { class: "addr" }, node.addr || "no admin address"),
      served,
    );
  }
  const status = node.status;
  const isLeader = summary.leader && summary.leader.id === node.id;
  const role = status.role;
  const lag = lagOf(node, summary);
  const rows = [
    ["term", status.term],
    ["leader", status.leader ? `node ${status.leader.id}` : "none known"],
    ["commit index", status.commit_index],
    ["applied index", status.applied_index],
    ["last index", status.last_index],
  ];
  const list = h("dl", {});
  for (const [name, value] of rows) list.append(h("dt", {}, name), h("dd", {}, value));
  list.append(
    h("dt", {}, "replication lag"),
    h("dd", { class: lag.entries > 0 ? "lag behind" : "lag", title: lag.basis }, `${lag.entries} entries`),
  );
  if (isLeader) {
    for (const follower of status.followers || []) {
      const contact = follower.last_contact_ms_ago === null ? "never" : `${follower.last_contact_ms_ago} ms ago`;
      list.append(h("dt", {}, `node ${follower.id}`), h("dd", {}, `match ${follower.match_index}, ${contact}`));
    }
  }
  return h(
    "article",
    { class: `node ${role}${isLeader ? " leader" : ""}`, "data-id": node.id, "data-role": role, "data-member": member },
    h(
      "header",
      {},
      h("span", { class: "name" }, `node ${node.id}`),
      h("span", { class: `pill ${role}` }, isLeader ? "★ leader" : role),
    ),
    memberLine,
    list,
    h("div", { class: "addr" }, node.addr || ""),
    served,
  );
}

function render(summary) {
  const nodes = document.getElementById("nodes");
  nodes.replaceChildren(...summary.nodes.map((node) => card(node, summary)));
  const leader = document.getElementById("leader");
  leader.dataset.leader = summary.leader ? String(summary.leader.id) : "";
  leader.replaceChildren("leader: ", h("b", {}, summary.leader ? `node ${summary.leader.id}` : "none"));
  document.getElementById("term").textContent = `term ${summary.maxTerm}`;
  const configuration = document.getElementById("configuration");
  configuration.className = summary.configuration && summary.configuration.joint ? "joint" : "";
  configuration.textContent = summary.configuration ? describeConfiguration(summary.configuration) : "";
  const list = document.getElementById("events");
  list.replaceChildren(
    ...state.events.map((event) => h("li", { class: event.kind }, h("time", {}, event.time), h("span", {}, event.text))),
  );
  document.body.dataset.polls = String(state.polls);
}

function setConnection(ok, text) {
  const element = document.getElementById("connection");
  element.className = ok ? "ok" : "lost";
  element.textContent = text;
  if (state.connected !== null && state.connected !== ok) {
    addEvent(ok ? "up" : "down", ok ? "connection to the serving node is back" : `lost the serving node: ${text}`);
  }
  state.connected = ok;
}

async function poll() {
  const started = performance.now();
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), POLL_TIMEOUT_MS);
  try {
    const response = await fetch("cluster", { cache: "no-store", signal: abort.signal });
    if (!response.ok) throw new Error(`/cluster answered ${response.status}`);
    const summary = summarize(await response.json());
    state.polls += 1;
    deriveEvents(state.previous, summary);
    state.previous = summary;
    setConnection(true, `updated ${clock()}`);
    render(summary);
  } catch (error) {
    setConnection(false, `cannot reach the serving node (${error.name === "AbortError" ? "timeout" : error.message})`);
    if (state.previous) render(state.previous);
  } finally {
    clearTimeout(timer);
    setTimeout(poll, Math.max(0, POLL_MS - (performance.now() - started)));
  }
}

poll();

// Build the real Node OpenAI clients from generated environments and record where they send.
//
// Input: a JSON Lines file of cases, `{"id": ..., "env": {...}}`; output: one JSON line per case,
// `{"id": ..., "probes": {CLIENT: {"requests": [...], "error": ...}}}`. The client packages are
// loaded from the directory named by ORACLE_NODE_MODULES (the cached `npm ci` of package.json).
//
// Every client is built with no arguments beyond a model name and issues one stateless request.
// Both openai-node and LangChain send through the global `fetch`, which is replaced before any
// client loads: it records the request and answers with a fake success, so nothing is sent and the
// client finishes its normal flow. Below it, `net`/`tls` connections, `dns` lookups and
// `http(s).request` are refused and recorded, and `tests/clients/run` starts this process in a
// network namespace of its own.
//
// Isolation: these clients read the environment when they are constructed (openai-node's
// `readEnv`, LangChain's `getEnvironmentVariable`), not when they load; every case sets its
// variables into `process.env` in place and constructs new clients. That they do not read client
// variables at load is checked on every run (a traced `process.env` while the packages load; the
// run refuses otherwise), and `--fresh` runs cases in a new process each, which `run` uses on a
// sample to prove the in-process answers equal fresh ones.
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const { createRequire } = require("node:module");

const MARKER = "hostguard-oracle-prompt";
const PROBE_TIMEOUT_MS = 30000;
const MODEL_PATHS = ["/chat/completions", "/completions", "/embeddings", "/responses"];

let recorded = [];

function record(via, method, url, body) {
  let parsed = null;
  try {
    parsed = new URL(url);
  } catch {
    // recorded as it is; the judgement treats a URL that does not parse as not allowed
  }
  const text = typeof body === "string" ? body : body instanceof Uint8Array ? Buffer.from(body).toString() : "";
  const pathname = parsed ? parsed.pathname : "";
  recorded.push({
    via,
    method,
    url: String(url),
    scheme: parsed ? parsed.protocol.replace(/:$/, "") : "",
    host: parsed ? parsed.hostname : "",
    port: parsed && parsed.port !== "" ? Number(parsed.port) : null,
    model_traffic: text.includes(MARKER) || MODEL_PATHS.some((p) => pathname.endsWith(p)),
  });
}

function fakeBody(pathname) {
  if (pathname.endsWith("/embeddings")) {
    return {
      object: "list",
      data: [{ object: "embedding", index: 0, embedding: [0.0, 0.1, 0.2] }],
      model: "text-embedding-ada-002",
      usage: { prompt_tokens: 1, total_tokens: 1 },
    };
  }
  return {
    id: "chatcmpl-oracle",
    object: "chat.completion",
    created: 1700000000,
    model: "gpt-4o",
    choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop", logprobs: null }],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
  };
}

function installRecorders() {
  globalThis.fetch = async (input, init = {}) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const method = init.method || (typeof input === "object" && input.method) || "GET";
    record("fetch", method, url, init.body);
    let pathname = "";
    try {
      pathname = new URL(url).pathname;
    } catch {
      pathname = "";
    }
    return new Response(JSON.stringify(fakeBody(pathname)), {
      status: 200,
      headers: { "content-type": "application/json", "x-request-id": "oracle" },
    });
  };
  const refuse = (what) => {
    const error = new Error(`oracle: no network (${what})`);
    error.code = "ENETUNREACH";
    return error;
  };
  const net = require("node:net");
  const connect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function (...args) {
    const options = typeof args[0] === "object" && args[0] !== null ? args[0] : { port: args[0], host: args[1] };
    if (options.path) return connect.apply(this, args); // a local socket, not the network
    record("socket", "CONNECT", `tcp://${options.host}:${options.port}`, null);
    process.nextTick(() => this.destroy(refuse(`${options.host}:${options.port}`)));
    return this;
  };
  const dns = require("node:dns");
  dns.lookup = (host, options, callback) => {
    record("dns", "RESOLVE", `dns://${host}`, null);
    const cb = typeof options === "function" ? options : callback;
    process.nextTick(() => cb(refuse(`lookup ${host}`)));
  };
  for (const name of ["node:http", "node:https"]) {
    const module = require(name);
    module.request = module.get = (target) => {
      const url = typeof target === "string" ? target : target instanceof URL ? target.href : `${name.slice(5)}://${target.host || target.hostname}${target.path || "/"}`;
      record(name.slice(5), "REQUEST", url, null);
      throw refuse(url);
    };
  }
}

// process.env is replaced by a plain store behind a Proxy: cases set it in place, and the
// trace sees every read.
const store = Object.assign(Object.create(null), process.env);
const realEnv = { ...store }; // the harness environment `run` built: no client variables
const trace = { active: false, reads: new Map(), enumerated: [] };
function traced(key) {
  if (trace.active && typeof key === "string") {
    const where = new Error().stack.split("\n")[3] || "?";
    if (!trace.reads.has(key)) trace.reads.set(key, new Set());
    trace.reads.get(key).add(where.trim());
  }
}
process.env = new Proxy(store, {
  get(target, key) {
    traced(key);
    return target[key];
  },
  has(target, key) {
    traced(key);
    return key in target;
  },
  ownKeys(target) {
    if (trace.active) trace.enumerated.push((new Error().stack.split("\n")[2] || "?").trim());
    return Reflect.ownKeys(target);
  },
  getOwnPropertyDescriptor(target, key) {
    traced(key);
    return Reflect.getOwnPropertyDescriptor(target, key);
  },
  set(target, key, value) {
    target[key] = String(value);
    return true;
  },
  deleteProperty(target, key) {
    delete target[key];
    return true;
  },
});

function setCaseEnvironment(baseEnv, caseEnv) {
  for (const key of Object.keys(store)) delete store[key];
  Object.assign(store, baseEnv, caseEnv);
}

// ORACLE_DEBUG=1 in the harness environment: each probe's time and error on stderr.
const debug = process.env.ORACLE_DEBUG ? { case: null } : null;

let clients = null;
function loadClients(watched) {
  const requireFromCache = createRequire(path.join(process.env.ORACLE_NODE_MODULES || "", "package.json"));
  trace.active = true;
  trace.reads.clear();
  trace.enumerated = [];
  const openai = requireFromCache("openai");
  const langchain = requireFromCache("@langchain/openai");
  trace.active = false;
  const stale = [...trace.reads.entries()].filter(([key]) => watched.has(key));
  if (stale.length > 0 || trace.enumerated.length > 0) {
    throw new Error(
      "oracle: a client package reads client configuration when it loads, so in-process cases could " +
        `see stale values (use --fresh). reads: ${JSON.stringify(stale.map(([k, w]) => [k, [...w]]))}; ` +
        `enumerations: ${JSON.stringify(trace.enumerated)}`,
    );
  }
  clients = { openai, langchain };
}

const messages = [{ role: "user", content: MARKER }];
// Each built the way its documentation shows with the fewest arguments the user must write: a
// model name (for AzureOpenAI the deployment is the model; LangChain's AzureChatOpenAI takes its
// deployment from AZURE_OPENAI_API_DEPLOYMENT_NAME, as its documentation sets it up). LangChain
// also gets `maxRetries: 0`: it retries a refusal (an admin key only, say) with back-off for
// minutes; the retry count changes no destination, and the first attempt is the one recorded.
const PROBES = {
  "node/openai/OpenAI()": async () => {
    await new clients.openai.OpenAI().chat.completions.create({ model: "gpt-4o", messages });
  },
  "node/openai/AzureOpenAI()": async () => {
    await new clients.openai.AzureOpenAI().chat.completions.create({ model: "gpt-4o", messages });
  },
  "node/langchain/ChatOpenAI({model})": async () => {
    await new clients.langchain.ChatOpenAI({ model: "gpt-4o", maxRetries: 0 }).invoke(MARKER);
  },
  "node/langchain/AzureChatOpenAI({model})": async () => {
    await new clients.langchain.AzureChatOpenAI({ model: "gpt-4o", maxRetries: 0 }).invoke(MARKER);
  },
  "node/langchain/OpenAIEmbeddings()": async () => {
    await new clients.langchain.OpenAIEmbeddings({ maxRetries: 0 }).embedQuery(MARKER);
  },
};

function shortError(error) {
  const text = `${(error && error.constructor && error.constructor.name) || "Error"}: ${error && error.message ? error.message : String(error)}`;
  return text.length <= 400 ? text : `${text.slice(0, 400)}…`;
}

async function runProbe(name) {
  recorded = [];
  let error = null;
  let timer;
  const started = Date.now();
  try {
    await Promise.race([
      PROBES[name](),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`oracle: no answer in ${PROBE_TIMEOUT_MS / 1000} s`)), PROBE_TIMEOUT_MS);
      }),
    ]);
  } catch (caught) {
    error = shortError(caught);
  } finally {
    clearTimeout(timer);
  }
  if (debug) process.stderr.write(`${debug.case} ${name} ${Date.now() - started} ms ${error || ""}\n`);
  return { requests: recorded, error };
}

async function runCase(testCase, baseEnv) {
  setCaseEnvironment(baseEnv, testCase.env);
  if (debug) debug.case = testCase.id;
  const probes = {};
  for (const name of Object.keys(PROBES)) probes[name] = await runProbe(name);
  return { id: testCase.id, probes };
}

function parseArgs(argv) {
  const args = { cases: null, out: null, fresh: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--out") args.out = argv[++i];
    else if (argv[i] === "--fresh") args.fresh = true;
    else if (argv[i] === "--one") args.one = argv[++i];
    else args.cases = argv[i];
  }
  if (!args.out || (!args.cases && !args.one)) {
    throw new Error("usage: probe.cjs CASES.jsonl --out RESULTS.jsonl [--fresh]");
  }
  return args;
}

async function main() {
  const baseEnv = { ...realEnv };
  const args = parseArgs(process.argv.slice(2));
  installRecorders();
  if (args.one) {
    const testCase = JSON.parse(fs.readFileSync(args.one, "utf8"));
    setCaseEnvironment(baseEnv, testCase.env); // before the packages load: a fresh process
    loadClients(new Set());
    fs.writeFileSync(args.out, JSON.stringify(await runCase(testCase, baseEnv)));
    return;
  }
  const cases = fs
    .readFileSync(args.cases, "utf8")
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => JSON.parse(line));
  const results = [];
  if (args.fresh) {
    const { execFileSync } = require("node:child_process");
    const os = require("node:os");
    const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "oracle-node-"));
    for (const testCase of cases) {
      const casePath = path.join(scratch, `${testCase.id}.case.json`);
      const outPath = path.join(scratch, `${testCase.id}.fresh.json`);
      fs.writeFileSync(casePath, JSON.stringify(testCase));
      execFileSync(process.execPath, [__filename, "--one", casePath, "--out", outPath], {
        env: baseEnv,
        stdio: ["ignore", "ignore", "inherit"],
      });
      results.push(JSON.parse(fs.readFileSync(outPath, "utf8")));
    }
    fs.rmSync(scratch, { recursive: true, force: true });
  } else {
    setCaseEnvironment(baseEnv, {});
    loadClients(new Set(cases.flatMap((testCase) => Object.keys(testCase.env))));
    for (const testCase of cases) results.push(await runCase(testCase, baseEnv));
  }
  fs.writeFileSync(args.out, results.map((result) => JSON.stringify(result)).join("\n") + "\n");
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(2);
});

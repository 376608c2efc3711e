"""Build the real Python OpenAI clients from generated environments and record where they send.

Input: a JSON Lines file of cases, `{"id": ..., "env": {...}}`. Output: one JSON line per case,
`{"id": ..., "probes": {CLIENT: {"requests": [...], "error": ...}}}`.

Every client is built exactly as a user would with no arguments beyond a model or deployment name
(see PROBES), issues one stateless request, and the request is recorded by a patch at the last
point every HTTP library here passes before the network (`_send_single_request` of httpx and
httpx2, `requests`' adapter, botocore's session, aiohttp) and answered with a fake success, so
the client finishes its normal flow (token exchanges included) and nothing is sent. Below those,
`socket` refuses and records any connection or name lookup, and `tests/clients/run` starts this
process in a network namespace of its own, so nothing can leave even through native code.

Isolation: the SDKs read the environment at import and at construction. The parent imports every
module with no client variable set, then forks one child per case, which sets the case's
environment and re-executes `openai/__init__.py` (the only import-time reader of client
variables: `verify_import_time_reads` checks that on every run and refuses to go on otherwise);
each probe then runs in a grandchild forked from that child, so no probe sees another's state and
no case sees another case's. `--fresh` runs the same cases in brand-new interpreters instead (one
per case: slow), which `run` uses on a sample to prove the fork path gives the same answers.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import signal
import socket
import sys
import tempfile
import traceback
from urllib.parse import urlsplit

# The prompt every probe sends: a request whose body carries it, or whose path is a stateless
# API's (embeddings carry token ids, not the text), is model traffic; any other request (a token
# exchange, a tokenizer download) is auxiliary.
MARKER = "hostguard-oracle-prompt"
MODEL_PATHS = ("/chat/completions", "/completions", "/embeddings", "/responses")
PROBE_TIMEOUT_SECONDS = 30

# Import-time reads matter only for variables whose value differs between cases: the check
# watches every name any case sets.
# Import-time reads that are re-executed per case (openai/__init__.py: api_type, api_version,
# azure_endpoint), or that are harness settings rather than client configuration.
REEXECUTED_AT_IMPORT = {"OPENAI_API_TYPE", "OPENAI_API_VERSION", "AZURE_OPENAI_ENDPOINT", "OPENAI_LOG"}

RECORDED: list[dict] = []


def _record(via: str, method: str, url: str, scheme: str, host: str, port, body: bytes | None) -> None:
    RECORDED.append(
        {
            "via": via,
            "method": method,
            "url": url,
            "scheme": scheme,
            "host": host,
            "port": port,
            "model_traffic": (bool(body) and MARKER.encode() in body)
            or urlsplit(url).path.endswith(MODEL_PATHS),
        }
    )


def _fake_body(path: str) -> dict:
    """A success body that lets each client finish its flow, chosen by the path it asked for."""
    if path.endswith("/embeddings"):
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 0.1, 0.2]}],
            "model": "text-embedding-ada-002",
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }
    if path.endswith("/token") or "oauth" in path:
        return {
            "access_token": "oracle-access-token",
            "token_type": "Bearer",
            "expires_in": 3600,
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        }
    return {
        "id": "chatcmpl-oracle",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop", "logprobs": None}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _patch_httpx_family(module) -> None:
    """Every request of an httpx-style client, auth sub-requests and redirects included."""

    def sync_send(self, request):
        body = request.read()
        url = request.url
        _record(module.__name__, request.method, str(url), url.scheme, url.host, url.port, body)
        return module.Response(200, json=_fake_body(url.path), request=request)

    async def async_send(self, request):
        body = await request.aread()
        url = request.url
        _record(module.__name__, request.method, str(url), url.scheme, url.host, url.port, body)
        return module.Response(200, json=_fake_body(url.path), request=request)

    module.Client._send_single_request = sync_send
    module.AsyncClient._send_single_request = async_send


class NetworkRefused(OSError):
    pass


def install_recorders() -> None:
    import httpx
    import httpx2

    _patch_httpx_family(httpx)
    _patch_httpx_family(httpx2)

    import requests.adapters

    def requests_send(self, request, **kwargs):
        parts = urlsplit(request.url)
        body = request.body.encode() if isinstance(request.body, str) else request.body
        _record("requests", request.method, request.url, parts.scheme, parts.hostname or "", parts.port, body)
        raise requests.exceptions.ConnectionError(f"oracle: no network ({request.url})")

    requests.adapters.HTTPAdapter.send = requests_send

    import botocore.httpsession

    def botocore_send(self, request):
        parts = urlsplit(request.url)
        body = request.body if isinstance(request.body, bytes) else None
        _record("botocore", request.method, request.url, parts.scheme, parts.hostname or "", parts.port, body)
        raise NetworkRefused(f"oracle: no network ({request.url})")

    botocore.httpsession.URLLib3Session.send = botocore_send

    import aiohttp

    async def aiohttp_request(self, method, str_or_url, **kwargs):
        url = aiohttp.client.URL(str(str_or_url))
        body = kwargs.get("data") or (json.dumps(kwargs["json"]).encode() if kwargs.get("json") is not None else None)
        body = body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else None
        _record("aiohttp", method, str(url), url.scheme, url.host or "", url.port, body)
        raise aiohttp.ClientConnectionError(f"oracle: no network ({url})")

    aiohttp.ClientSession._request = aiohttp_request

    # Nothing ever connects, so the trust store of a TLS context is never used; parsing the
    # default CA bundle (certifi's) for every client was most of a case's time. Any other CA
    # file is still loaded, so a client that refuses a bad one still refuses.
    import ssl

    import certifi

    default_bundle = certifi.where()
    load_verify_locations = ssl.SSLContext.load_verify_locations

    def skip_default_bundle(self, cafile=None, capath=None, cadata=None):
        if cafile is not None and os.fspath(cafile) == default_bundle and capath is None and cadata is None:
            return None
        return load_verify_locations(self, cafile, capath, cadata)

    ssl.SSLContext.load_verify_locations = skip_default_bundle

    # The floor: whatever reaches a socket was not seen above; record it and refuse.
    def refuse_connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _record("socket", "CONNECT", f"tcp://{address[0]}:{address[1]}", "tcp", str(address[0]), address[1], None)
            raise NetworkRefused(f"oracle: no network ({address})")
        return _connect(self, address)

    def refuse_getaddrinfo(host, port, *args, **kwargs):
        _record("socket", "RESOLVE", f"dns://{host}:{port}", "dns", str(host), port, None)
        raise socket.gaierror(socket.EAI_NONAME, f"oracle: no name lookups ({host})")

    _connect = socket.socket.connect
    socket.socket.connect = refuse_connect
    socket.socket.connect_ex = lambda self, address: refuse_connect(self, address)
    socket.getaddrinfo = refuse_getaddrinfo


# The clients, each built the way its documentation shows with the fewest arguments the user
# must write: a model name (a deployment name for the Azure clients, which their request URL uses).
def probe_openai():
    from openai import OpenAI

    OpenAI().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": MARKER}])


def probe_azure_openai():
    from openai import AzureOpenAI

    AzureOpenAI().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": MARKER}])


def probe_openai_module():
    import openai

    openai.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": MARKER}])


def probe_langchain_chat():
    from langchain_openai import ChatOpenAI

    ChatOpenAI(model="gpt-4o").invoke(MARKER)


def probe_langchain_azure_chat():
    from langchain_openai import AzureChatOpenAI

    AzureChatOpenAI(azure_deployment="gpt-4o").invoke(MARKER)


def probe_langchain_embeddings():
    from langchain_openai import OpenAIEmbeddings

    OpenAIEmbeddings().embed_query(MARKER)


# What `num_retries=0` is for: LiteLLM's own retry loop would repeat the same request; the first
# one is the destination. It is a call argument of the request, not client configuration.
def probe_litellm_openai():
    import litellm

    litellm.completion(model="gpt-4o", messages=[{"role": "user", "content": MARKER}], num_retries=0)


def probe_litellm_azure():
    import litellm

    litellm.completion(model="azure/gpt-4o", messages=[{"role": "user", "content": MARKER}], num_retries=0)


PROBES = {
    "py/openai/module-client": probe_openai_module,
    "py/openai/OpenAI()": probe_openai,
    "py/openai/AzureOpenAI()": probe_azure_openai,
    "py/langchain/ChatOpenAI(model)": probe_langchain_chat,
    "py/langchain/AzureChatOpenAI(azure_deployment)": probe_langchain_azure_chat,
    "py/langchain/OpenAIEmbeddings()": probe_langchain_embeddings,
    "py/litellm/completion(gpt-4o)": probe_litellm_openai,
    "py/litellm/completion(azure/gpt-4o)": probe_litellm_azure,
}



def _short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 400 else text[:400] + "…"


class ProbeTimeout(BaseException):
    """Raised by SIGALRM in a probe that has not finished in PROBE_TIMEOUT_SECONDS."""


def _on_alarm(signum, frame):
    raise ProbeTimeout(f"oracle: no answer in {PROBE_TIMEOUT_SECONDS} s")


def run_probe(name: str) -> dict:
    RECORDED.clear()
    modules_before = set(sys.modules)
    error = None
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(PROBE_TIMEOUT_SECONDS)
    try:
        PROBES[name]()
    except BaseException as exc:  # the client's refusal is the result, whatever it raises
        error = _short_error(exc)
    finally:
        signal.alarm(0)
    return {"requests": list(RECORDED), "error": error, "imported": sorted(set(sys.modules) - modules_before)}


def set_case_environment(base_env: dict, case_env: dict) -> None:
    os.environ.clear()
    os.environ.update(base_env)
    os.environ.update(case_env)


def run_case(case: dict, base_env: dict, reexecute_openai: bool) -> dict:
    """In the case's own process: its environment, then every probe in turn (the module client
    first: LiteLLM assigns `openai.api_type` when it runs)."""
    set_case_environment(base_env, case["env"])
    if reexecute_openai:
        import openai

        # Re-executes openai/__init__.py with this case's environment (see module docs).
        importlib.reload(openai)
    return {"id": case["id"], "probes": {name: run_probe(name) for name in PROBES}}


def in_child(work) -> int:
    """Fork; the child runs `work()` and exits without running the parent's exit handlers."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # clients print banners; keep stdout clean
            work()
        except BaseException:
            traceback.print_exc()
            code = 3
        finally:
            sys.stderr.flush()
            os._exit(code)
    return pid


class EnvTrace:
    """Records which variables are read while modules are imported."""

    def __init__(self) -> None:
        self.reads: dict[str, set[str]] = {}
        self.iterated: list[str] = []

    def __enter__(self):
        environ_type = type(os.environ)
        self._saved = (environ_type.__getitem__, environ_type.__contains__, environ_type.__iter__)
        getitem, contains, iterate = self._saved
        trace = self

        def where() -> str:
            frame = sys._getframe(2)
            while frame and (
                frame.f_code.co_filename.endswith(("os.py", "_collections_abc.py", __file__))
                or frame.f_code.co_filename.startswith("<frozen")
            ):
                frame = frame.f_back
            return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame else "?"

        def traced_getitem(self, key):
            trace.reads.setdefault(key, set()).add(where())
            return getitem(self, key)

        def traced_contains(self, key):
            trace.reads.setdefault(key, set()).add(where())
            return contains(self, key)

        def traced_iter(self):
            trace.iterated.append(where())
            return iterate(self)

        environ_type.__getitem__ = traced_getitem
        environ_type.__contains__ = traced_contains
        environ_type.__iter__ = traced_iter
        return self

    def __exit__(self, *exc):
        environ_type = type(os.environ)
        environ_type.__getitem__, environ_type.__contains__, environ_type.__iter__ = self._saved


# Environments that take every client down its request path once, so that the modules the
# clients import lazily on their first request are known and can be imported before forking
# (otherwise every case would import them again: seconds per case).
WARMUP_CASES = [
    {"id": "warmup-openai", "env": {"OPENAI_API_KEY": "sk-warmup"}},
    {
        "id": "warmup-azure",
        "env": {
            "AZURE_OPENAI_API_KEY": "warmup",
            "AZURE_OPENAI_ENDPOINT": "https://warmup.openai.azure.com/",
            "OPENAI_API_VERSION": "2024-10-21",
        },
    },
    {"id": "warmup-proxy", "env": {"USE_LITELLM_PROXY": "True", "LITELLM_PROXY_API_BASE": "http://warmup:4000"}},
]


def precompute_pure_state() -> None:
    """Work every case would repeat that depends on no environment variable: the tokenizer
    tables LangChain's embeddings load, and the validators pydantic builds on a model's first
    use. Done once here, inherited by every fork."""
    import pydantic
    import tiktoken

    for encoding in ("cl100k_base", "o200k_base"):
        tiktoken.get_encoding(encoding)
    seen, stack = set(), [pydantic.BaseModel]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
    for model in seen:
        if not getattr(model, "__pydantic_complete__", True):
            try:
                model.model_rebuild()
            except Exception:  # generic or forward-referencing models complete on use
                pass


def preload_and_verify(watched_names: set[str], base_env: dict, scratch: str) -> None:
    """Import every client module once (those the clients load lazily included), and refuse if
    any reads a variable some case sets at import, other than those re-executed per case."""
    with EnvTrace() as trace:
        import langchain_openai  # noqa: F401
        import litellm  # noqa: F401
        import openai  # noqa: F401

        install_recorders()
        lazy: set[str] = set()
        for case in WARMUP_CASES:
            out_path = os.path.join(scratch, f"{case['id']}.json")
            pid = in_child(lambda c=case, p=out_path: json.dump(run_case(c, base_env, True), open(p, "w")))
            os.waitpid(pid, 0)
            for probe in json.load(open(out_path))["probes"].values():
                lazy.update(probe["imported"])
        for name in sorted(lazy):
            try:
                importlib.import_module(name)
            except Exception:  # a module that imports only in its client's own context
                pass
        precompute_pure_state()
    stale = {
        name: sorted(places)
        for name, places in trace.reads.items()
        if name in watched_names and name not in REEXECUTED_AT_IMPORT
    }
    if stale or trace.iterated:
        raise SystemExit(
            "oracle: a client module reads client configuration at import, so forked cases could "
            f"see stale values (use --fresh, or re-execute that module per case). reads: {stale}; "
            f"whole-environment iterations: {trace.iterated}"
        )


def run_forked(cases: list[dict], base_env: dict, jobs: int, scratch: str) -> list[dict]:
    import gc

    preload_and_verify({name for case in cases for name in case["env"]}, base_env, scratch)
    gc.collect()
    gc.freeze()  # the collector would otherwise touch (and so copy) every page of the parent
    pending = list(cases)
    running: dict[int, dict] = {}
    results: dict[str, dict] = {}
    while pending or running:
        while pending and len(running) < jobs:
            case = pending.pop(0)
            out_path = os.path.join(scratch, f"{case['id']}.json")
            running[in_child(lambda c=case, p=out_path: json.dump(run_case(c, base_env, True), open(p, "w")))] = case
        pid, status = os.wait()
        case = running.pop(pid)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"oracle: the process of case {case['id']} failed (status {status})")
        results[case["id"]] = json.load(open(os.path.join(scratch, f"{case['id']}.json")))
    return [results[case["id"]] for case in cases]


def run_fresh(cases: list[dict], base_env: dict, jobs: int, scratch: str) -> list[dict]:
    """Each case in a brand-new interpreter that imports the clients after its environment is
    set, `jobs` at a time."""
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    def one(case: dict) -> dict:
        case_path = os.path.join(scratch, f"{case['id']}.case.json")
        out_path = os.path.join(scratch, f"{case['id']}.fresh.json")
        json.dump(case, open(case_path, "w"))
        subprocess.run(
            [sys.executable, __file__, "--one", case_path, "--out", out_path],
            env=base_env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return json.load(open(out_path))

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, cases))


def run_one(case_path: str, base_env: dict, out_path: str) -> None:
    case = json.load(open(case_path))
    set_case_environment(base_env, case["env"])
    import langchain_openai  # noqa: F401
    import litellm  # noqa: F401
    import openai  # noqa: F401

    install_recorders()
    result = run_case(case, base_env, reexecute_openai=False)
    json.dump(result, open(out_path, "w"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="?", help="JSON Lines file of cases")
    parser.add_argument("--out", required=True, help="where the JSON Lines results go")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--fresh", action="store_true", help="a new interpreter per case (slow; the self-check)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one case file, this interpreter
    args = parser.parse_args()

    base_env = dict(os.environ)  # the harness environment `run` built: no client variables
    if args.one:
        run_one(args.one, base_env, args.out)
        return
    cases = [json.loads(line) for line in open(args.cases) if line.strip()]
    with tempfile.TemporaryDirectory(prefix="oracle-py-") as scratch:
        results = run_fresh(cases, base_env, args.jobs, scratch) if args.fresh else run_forked(cases, base_env, args.jobs, scratch)
    with open(args.out, "w") as out:
        for result in results:
            for probe in result["probes"].values():
                del probe["imported"]
            out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()

"""The environments the oracle builds every client from: deterministic (seeded), ~1,000 of them.

Three parts, in this order, each case with a stable id and a label saying where it came from:

- `adversarial`: hand-written cases, each named for what it tries (the combinations of issue 9,
  every spelling of a clean Azure endpoint, look-alike hosts, blank and padded values);
- `pairwise`: a greedy covering array over every variable of
  shared/reference/sdk-env-vars.md, so that every pair of values of two variables (unset
  included) appears in at least one case;
- `profile`: realistic sparse environments (one way of configuring a client, plus a few
  unrelated variables of the other clients), drawn at random.

The values are literals, as a pod spec's `env` would carry them. Nothing here knows what any
client or hostguard does with them.
"""

from __future__ import annotations

import itertools
import random

SEED = 20260227
TARGET_CASES = 1000

AZ = "https://contoso.openai.azure.com"
AZ_V1 = f"{AZ}/openai/v1/"
EXTERNAL_PROXY = "https://llm-proxy.example.com/v1"
IN_CLUSTER_PROXY = "http://llm-gateway.ai.svc.cluster.local:8080/v1"
TOKEN_FILE = "/var/run/secrets/openai/token"  # `run` provides a token there (see README)

# Every variable of the reference with the values worth trying; None means unset. Some factors
# set several variables at once (a key and its gateway, a workload identity triple).
FACTORS: dict[str, list] = {
    "OPENAI_API_KEY": [None, "sk-proj-oracle", "", "   "],
    "OPENAI_BASE_URL": [
        None,
        AZ_V1,
        "",
        f" {AZ_V1} ",
        "https://api.openai.com/v1",
        EXTERNAL_PROXY,
        "https://eu.api.openai.com/v1",
        "https://contoso.openai.azure.com:443/openai/v1/",
        "https://CONTOSO.openai.azure.com/openai/v1/",
        IN_CLUSTER_PROXY,
    ],
    "OPENAI_API_BASE": [None, AZ_V1, "https://api.openai.com/v1", EXTERNAL_PROXY, ""],
    "AZURE_OPENAI_ENDPOINT": [
        None,
        f"{AZ}/",
        AZ,
        f"{AZ}:443/",
        "https://Contoso.OpenAI.Azure.com/",
        f"{AZ}?api-version=2024-10-21",
        "https://contoso.cognitiveservices.azure.com/",
        "https://contoso.services.ai.azure.com/",
        "https://contoso.openai.azure.us/",
        "",
        f" {AZ}/ ",
        "https://contoso.openai.azure.com.evil.example/",
        "https://api.openai.com/",
    ],
    "AZURE_OPENAI_API_KEY": [None, "az-key-oracle", ""],
    "AZURE_OPENAI_AD_TOKEN": [None, "eyJ0eXAiOiJKV1QifQ.oracle.signature"],
    "OPENAI_API_VERSION": [None, "2024-10-21", ""],
    "OPENAI_API_TYPE": [None, "azure", "AZURE", "azure_ad", "open_ai", "amazon-bedrock", "junk"],
    "AZURE_API_BASE": [None, f"{AZ}/", "https://api.openai.com/v1", EXTERNAL_PROXY],
    "AZURE_API_KEY": [None, "az-litellm-oracle"],
    "AZURE_API_VERSION": [None, "2024-10-21"],
    "LANGSMITH_GATEWAY": [None, "true", "1", "yes", "false", "https://gateway.example.com", AZ],
    "LANGSMITH_KEY": [None, {"LANGSMITH_API_KEY": "lsv2-oracle"}, {"LANGSMITH_GATEWAY_API_KEY": "lsv2-gw-oracle"}],
    "USE_LITELLM_PROXY": [None, "True", "true", "False"],
    "LITELLM_PROXY_API_BASE": [None, "http://litellm.ai.svc.cluster.local:4000", f"{AZ}/openai/v1", "https://litellm.example.com"],
    "LITELLM_PROXY_API_KEY": [None, "sk-litellm-oracle"],
    "OPENAI_IDENTITY": [
        None,
        {
            "OPENAI_IDENTITY_PROVIDER_ID": "idp-oracle",
            "OPENAI_SERVICE_ACCOUNT_ID": "sa-oracle",
            "OPENAI_IDENTITY_TOKEN_FILE": TOKEN_FILE,
        },
        {"OPENAI_IDENTITY_PROVIDER_ID": "idp-oracle", "OPENAI_SERVICE_ACCOUNT_ID": "sa-oracle"},
    ],
    "OPENAI_ORG_ID": [None, "org-oracle"],
    "OPENAI_PROJECT_ID": [None, "proj_oracle"],
    "OPENAI_ADMIN_KEY": [None, "sk-admin-oracle"],
    "AWS_BEDROCK_BASE_URL": [None, "https://bedrock-mantle.us-east-1.api.aws/v1"],
    "AWS_REGION": [None, "us-east-1"],
    "AWS_BEARER_TOKEN_BEDROCK": [None, "bedrock-oracle"],
    "AZURE_OPENAI_API_INSTANCE_NAME": [None, "contoso", "Contoso", "llm-proxy.example.com#"],
    "AZURE_OPENAI_API_DEPLOYMENT_NAME": [None, "gpt-4o"],
    "AZURE_OPENAI_API_VERSION": [None, "2024-10-21"],
    "AZURE_OPENAI_BASE_PATH": [None, f"{AZ}/openai/deployments", "https://llm-proxy.example.com/openai/deployments"],
}


def _apply(env: dict, factor: str, value) -> None:
    if value is None:
        return
    if isinstance(value, dict):
        env.update(value)
    else:
        env[factor] = value


def _env_of(assignment: dict) -> dict:
    env: dict = {}
    for factor, value in assignment.items():
        _apply(env, factor, value)
    return env


def _key(value) -> str:
    return repr(sorted(value.items())) if isinstance(value, dict) else repr(value)


def pairwise(rng: random.Random) -> list[dict]:
    """A greedy covering array (AETG-style): each row is the best of several random candidates
    by the number of still-uncovered value pairs it covers; unset is favoured in candidates so
    rows stay closer to real configurations."""
    names = list(FACTORS)
    uncovered = {
        (a, _key(va), b, _key(vb))
        for a, b in itertools.combinations(names, 2)
        for va in FACTORS[a]
        for vb in FACTORS[b]
    }
    rows = []
    while uncovered:
        # Seed the row with one uncovered pair so every row makes progress.
        a, ka, b, kb = min(uncovered)
        best, best_gain = None, -1
        for _ in range(24):
            row = {n: (rng.choice(FACTORS[n]) if rng.random() < 0.45 else None) for n in names}
            row[a] = next(v for v in FACTORS[a] if _key(v) == ka)
            row[b] = next(v for v in FACTORS[b] if _key(v) == kb)
            gain = sum(
                (x, _key(row[x]), y, _key(row[y])) in uncovered for x, y in itertools.combinations(names, 2)
            )
            if gain > best_gain:
                best, best_gain = row, gain
        for x, y in itertools.combinations(names, 2):
            uncovered.discard((x, _key(best[x]), y, _key(best[y])))
        rows.append(best)
    return [_env_of(row) for row in rows]


# One way each client is configured in the wild; profile cases start from one of these.
PROFILES: dict[str, dict] = {
    "openai-direct": {"OPENAI_API_KEY": "sk-proj-oracle"},
    "openai-base-url-azure-v1": {"OPENAI_API_KEY": "az-key-oracle", "OPENAI_BASE_URL": AZ_V1},
    "azure-sdk": {"AZURE_OPENAI_API_KEY": "az-key-oracle", "AZURE_OPENAI_ENDPOINT": f"{AZ}/", "OPENAI_API_VERSION": "2024-10-21"},
    "azure-ad-token": {"AZURE_OPENAI_AD_TOKEN": "eyJ0eXAiOiJKV1QifQ.oracle.signature", "AZURE_OPENAI_ENDPOINT": f"{AZ}/", "OPENAI_API_VERSION": "2024-10-21"},
    "azure-module-client": {"OPENAI_API_TYPE": "azure", "AZURE_OPENAI_API_KEY": "az-key-oracle", "AZURE_OPENAI_ENDPOINT": f"{AZ}/", "OPENAI_API_VERSION": "2024-10-21"},
    "langchain-js-azure-instance": {
        "AZURE_OPENAI_API_KEY": "az-key-oracle",
        "AZURE_OPENAI_API_INSTANCE_NAME": "contoso",
        "AZURE_OPENAI_API_DEPLOYMENT_NAME": "gpt-4o",
        "AZURE_OPENAI_API_VERSION": "2024-10-21",
    },
    "litellm-azure": {"AZURE_API_BASE": f"{AZ}/", "AZURE_API_KEY": "az-litellm-oracle", "AZURE_API_VERSION": "2024-10-21"},
    "litellm-proxy": {"USE_LITELLM_PROXY": "True", "LITELLM_PROXY_API_BASE": "https://litellm.example.com", "LITELLM_PROXY_API_KEY": "sk-litellm-oracle"},
    "langsmith-gateway": {"LANGSMITH_GATEWAY": "true", "LANGSMITH_API_KEY": "lsv2-oracle"},
    "workload-identity": {
        "OPENAI_IDENTITY_PROVIDER_ID": "idp-oracle",
        "OPENAI_SERVICE_ACCOUNT_ID": "sa-oracle",
        "OPENAI_IDENTITY_TOKEN_FILE": TOKEN_FILE,
    },
    "bedrock": {"OPENAI_API_TYPE": "amazon-bedrock", "AWS_REGION": "us-east-1", "AWS_BEARER_TOKEN_BEDROCK": "bedrock-oracle"},
    "openai-platform-ids": {"OPENAI_ORG_ID": "org-oracle", "OPENAI_PROJECT_ID": "proj_oracle"},
    "openai-api-base-legacy": {"OPENAI_API_KEY": "sk-proj-oracle", "OPENAI_API_BASE": AZ_V1},
}


def profiles(rng: random.Random, count: int) -> list[tuple[str, dict]]:
    out = []
    names = list(FACTORS)
    for _ in range(count):
        picked = rng.sample(list(PROFILES), k=rng.choice([1, 1, 2]))
        env: dict = {}
        for profile in picked:
            env.update(PROFILES[profile])
        for factor in rng.sample(names, k=rng.choice([0, 1, 1, 2, 3])):
            _apply(env, factor, rng.choice([v for v in FACTORS[factor] if v is not None]))
        out.append(("+".join(picked), env))
    return out


def _azure(endpoint: str) -> dict:
    return {"AZURE_OPENAI_API_KEY": "az-key-oracle", "AZURE_OPENAI_ENDPOINT": endpoint, "OPENAI_API_VERSION": "2024-10-21"}


ADVERSARIAL: list[tuple[str, dict]] = [
    # Clean Azure, in every spelling the clients accept: every client that sends, sends to Azure.
    *[(f"clean azure endpoint {spelling!r}", _azure(spelling)) for spelling in [
        f"{AZ}/", AZ, f"{AZ}:443/", f"{AZ}:443", "https://CONTOSO.OPENAI.AZURE.COM/", "https://Contoso.OpenAI.Azure.com",
        f"{AZ}?api-version=2024-10-21", f"{AZ}/?api-version=2024-10-21", f"{AZ}//", f"{AZ}./",
        "https://contoso.cognitiveservices.azure.com/", "https://contoso.services.ai.azure.com/",
        "https://contoso.openai.azure.us/", "https://contoso.cognitiveservices.azure.us/",
        f" {AZ}/", f"{AZ}/ ",
    ]],
    *[(f"clean azure v1 base url {spelling!r}", {"OPENAI_API_KEY": "az-key-oracle", "OPENAI_BASE_URL": spelling}) for spelling in [
        AZ_V1, f"{AZ}/openai/v1", f"{AZ}:443/openai/v1/", "https://CONTOSO.openai.azure.com/openai/v1/",
        "https://contoso.services.ai.azure.com/openai/v1/", "https://contoso.cognitiveservices.azure.com/openai/v1/",
    ]],
    ("azure sdk with AD token", {"AZURE_OPENAI_AD_TOKEN": "eyJ0eXAiOiJKV1QifQ.oracle.signature", "AZURE_OPENAI_ENDPOINT": f"{AZ}/", "OPENAI_API_VERSION": "2024-10-21"}),
    ("azure sdk, key in OPENAI_API_KEY only", {"OPENAI_API_KEY": "az-key-oracle", "AZURE_OPENAI_ENDPOINT": f"{AZ}/", "OPENAI_API_VERSION": "2024-10-21"}),
    ("langchain js instance name", {"AZURE_OPENAI_API_KEY": "az-key-oracle", "AZURE_OPENAI_API_INSTANCE_NAME": "contoso", "AZURE_OPENAI_API_DEPLOYMENT_NAME": "gpt-4o", "AZURE_OPENAI_API_VERSION": "2024-10-21"}),
    ("langchain js instance name with a fragment", {"AZURE_OPENAI_API_KEY": "az-key-oracle", "AZURE_OPENAI_API_INSTANCE_NAME": "llm-proxy.example.com#", "AZURE_OPENAI_API_DEPLOYMENT_NAME": "gpt-4o", "AZURE_OPENAI_API_VERSION": "2024-10-21"}),
    ("langchain js instance name with a path", {"AZURE_OPENAI_API_KEY": "az-key-oracle", "AZURE_OPENAI_API_INSTANCE_NAME": "llm-proxy.example.com/x?", "AZURE_OPENAI_API_DEPLOYMENT_NAME": "gpt-4o", "AZURE_OPENAI_API_VERSION": "2024-10-21"}),
    ("langchain js base path to a proxy", {"AZURE_OPENAI_API_KEY": "az-key-oracle", "AZURE_OPENAI_BASE_PATH": "https://llm-proxy.example.com/openai/deployments", "AZURE_OPENAI_API_DEPLOYMENT_NAME": "gpt-4o", "AZURE_OPENAI_API_VERSION": "2024-10-21", "AZURE_OPENAI_ENDPOINT": f"{AZ}/"}),
    ("litellm azure clean", {"AZURE_API_BASE": f"{AZ}/", "AZURE_API_KEY": "az-litellm-oracle", "AZURE_API_VERSION": "2024-10-21"}),
    # Issue 9: the SDK default is dropped as soon as another endpoint variable is set.
    ("openai key + azure endpoint", {"OPENAI_API_KEY": "sk-proj-oracle", "AZURE_OPENAI_ENDPOINT": f"{AZ}/"}),
    ("openai key + azure endpoint + version", {"OPENAI_API_KEY": "sk-proj-oracle", "AZURE_OPENAI_ENDPOINT": f"{AZ}/", "OPENAI_API_VERSION": "2024-10-21"}),
    ("openai key + AZURE_API_BASE", {"OPENAI_API_KEY": "sk-proj-oracle", "AZURE_API_BASE": f"{AZ}/"}),
    ("openai key + OPENAI_API_BASE azure (not read by openai >= 1)", {"OPENAI_API_KEY": "sk-proj-oracle", "OPENAI_API_BASE": AZ_V1}),
    *[(f"openai key + azure endpoint + OPENAI_API_TYPE={t}", {"OPENAI_API_KEY": "sk-proj-oracle", "AZURE_OPENAI_ENDPOINT": f"{AZ}/", "OPENAI_API_VERSION": "2024-10-21", "OPENAI_API_TYPE": t}) for t in ["azure", "AZURE", "azure_ad", "open_ai", "junk"]],
    ("azure key + azure endpoint + openai key", {"OPENAI_API_KEY": "sk-proj-oracle", **_azure(f"{AZ}/")}),
    ("whitespace-only key", {"OPENAI_API_KEY": "   "}),
    ("tab key", {"OPENAI_API_KEY": "\t"}),
    ("empty key", {"OPENAI_API_KEY": ""}),
    ("empty base url + key", {"OPENAI_API_KEY": "sk-proj-oracle", "OPENAI_BASE_URL": ""}),
    ("blank base url + key", {"OPENAI_API_KEY": "sk-proj-oracle", "OPENAI_BASE_URL": "  "}),
    ("padded azure base url + key", {"OPENAI_API_KEY": "sk-proj-oracle", "OPENAI_BASE_URL": f" {AZ_V1} "}),
    ("newline-padded azure base url + key", {"OPENAI_API_KEY": "sk-proj-oracle", "OPENAI_BASE_URL": f"{AZ_V1}\n"}),
    ("empty base url + azure endpoint + key", {"OPENAI_API_KEY": "sk-proj-oracle", "OPENAI_BASE_URL": "", **_azure(f"{AZ}/")}),
    ("base url api.openai.com + azure sdk", {"OPENAI_BASE_URL": "https://api.openai.com/v1", **_azure(f"{AZ}/")}),
    ("base url proxy + azure sdk", {"OPENAI_BASE_URL": EXTERNAL_PROXY, **_azure(f"{AZ}/")}),
    ("regional openai host", {"OPENAI_API_KEY": "sk-proj-oracle", "OPENAI_BASE_URL": "https://eu.api.openai.com/v1"}),
    ("look-alike azure endpoint", _azure("https://contoso.openai.azure.com.evil.example/")),
    ("look-alike azure base url", {"OPENAI_API_KEY": "sk-proj-oracle", "OPENAI_BASE_URL": "https://contoso.openai.azure.com.evil.example/openai/v1/"}),
    ("userinfo azure base url", {"OPENAI_API_KEY": "sk-proj-oracle", "OPENAI_BASE_URL": "https://contoso.openai.azure.com@llm-proxy.example.com/openai/v1/"}),
    ("backslash azure base url", {"OPENAI_API_KEY": "sk-proj-oracle", "OPENAI_BASE_URL": "https://llm-proxy.example.com\\@contoso.openai.azure.com/openai/v1/"}),
    ("http azure base url", {"OPENAI_API_KEY": "sk-proj-oracle", "OPENAI_BASE_URL": "http://contoso.openai.azure.com/openai/v1/"}),
    ("azure base url on port 8443", {"OPENAI_API_KEY": "sk-proj-oracle", "OPENAI_BASE_URL": "https://contoso.openai.azure.com:8443/openai/v1/"}),
    ("bare openai.azure.com", {"OPENAI_API_KEY": "sk-proj-oracle", "OPENAI_BASE_URL": "https://openai.azure.com/openai/v1/"}),
    # Gateways and proxies the clients switch to on their own.
    ("langsmith gateway true + azure base url", {"LANGSMITH_GATEWAY": "true", "LANGSMITH_API_KEY": "lsv2-oracle", "OPENAI_API_KEY": "az-key-oracle", "OPENAI_BASE_URL": AZ_V1}),
    ("langsmith gateway url + openai key", {"LANGSMITH_GATEWAY": "https://gateway.example.com", "OPENAI_API_KEY": "sk-proj-oracle"}),
    ("langsmith gateway at an azure host", {"LANGSMITH_GATEWAY": AZ, "LANGSMITH_GATEWAY_API_KEY": "lsv2-gw-oracle"}),
    ("langsmith gateway false + azure base url", {"LANGSMITH_GATEWAY": "false", "OPENAI_API_KEY": "az-key-oracle", "OPENAI_BASE_URL": AZ_V1}),
    ("litellm proxy external + azure sdk", {"USE_LITELLM_PROXY": "True", "LITELLM_PROXY_API_BASE": "https://litellm.example.com", **_azure(f"{AZ}/")}),
    ("litellm proxy in cluster", {"USE_LITELLM_PROXY": "True", "LITELLM_PROXY_API_BASE": "http://litellm.ai.svc.cluster.local:4000"}),
    ("litellm proxy lower-case true", {"USE_LITELLM_PROXY": "true", "LITELLM_PROXY_API_BASE": "https://litellm.example.com", "OPENAI_API_KEY": "az-key-oracle", "OPENAI_BASE_URL": AZ_V1}),
    ("litellm proxy without base", {"USE_LITELLM_PROXY": "True", "OPENAI_API_KEY": "az-key-oracle", "OPENAI_BASE_URL": AZ_V1}),
    # Credentials without a key, platform-only variables.
    ("workload identity, no key", PROFILES["workload-identity"]),
    ("workload identity + azure base url", {**PROFILES["workload-identity"], "OPENAI_BASE_URL": AZ_V1}),
    ("workload identity without token file", {"OPENAI_IDENTITY_PROVIDER_ID": "idp-oracle", "OPENAI_SERVICE_ACCOUNT_ID": "sa-oracle"}),
    ("admin key only", {"OPENAI_ADMIN_KEY": "sk-admin-oracle"}),
    ("org and project only", {"OPENAI_ORG_ID": "org-oracle", "OPENAI_PROJECT_ID": "proj_oracle"}),
    ("org id + azure sdk", {"OPENAI_ORG_ID": "org-oracle", **_azure(f"{AZ}/")}),
    ("bedrock via OPENAI_API_TYPE", PROFILES["bedrock"]),
    ("bedrock base url", {"OPENAI_API_TYPE": "amazon-bedrock", "AWS_BEDROCK_BASE_URL": "https://bedrock-mantle.us-east-1.api.aws/v1", "AWS_BEARER_TOKEN_BEDROCK": "bedrock-oracle"}),
    ("bedrock token + openai key", {"AWS_BEARER_TOKEN_BEDROCK": "bedrock-oracle", "AWS_REGION": "us-east-1", "OPENAI_API_KEY": "sk-proj-oracle"}),
    # Names the clients never read (case-sensitive reads): whatever hostguard says, no client sends.
    ("lower-case names only", {"openai_api_key": "sk-proj-oracle", "openai_base_url": "https://api.openai.com/v1"}),
    ("AZURE_OPENAI_BASE_URL is read by no client", {"AZURE_OPENAI_BASE_URL": AZ_V1, "OPENAI_API_KEY": "sk-proj-oracle"}),
    ("no variables at all", {}),
]


def generate(target: int = TARGET_CASES) -> list[dict]:
    rng = random.Random(SEED)
    cases: list[dict] = []
    seen: set[str] = set()

    def add(source: str, label: str, env: dict) -> None:
        key = repr(sorted(env.items()))
        if key in seen:
            return
        seen.add(key)
        cases.append({"id": f"case-{len(cases) + 1:04d}", "source": source, "label": label, "env": env})

    for label, env in ADVERSARIAL:
        add("adversarial", label, env)
    for env in pairwise(rng):
        add("pairwise", "pairwise", env)
    while len(cases) < target:
        for label, env in profiles(rng, 1):
            add("profile", label, env)
    return cases


if __name__ == "__main__":
    import collections
    import json
    import sys

    generated = generate()
    print(json.dumps(collections.Counter(c["source"] for c in generated)), file=sys.stderr)
    for case in generated:
        print(json.dumps(case))

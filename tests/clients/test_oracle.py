"""Tests of the oracle's own logic: the destination judgement, the categories, the generator and
the sandbox. `run` runs them before the oracle (`python3 -m unittest test_oracle` here)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import unittest

import envgen
import oracle


def request(url: str, scheme: str, host: str, port=None, model=True, via="httpx2") -> dict:
    return {"via": via, "method": "POST", "url": url, "scheme": scheme, "host": host, "port": port, "model_traffic": model}


AZURE_CHAT = request("https://contoso.openai.azure.com/openai/deployments/gpt-4o/chat/completions", "https", "contoso.openai.azure.com")
OPENAI_CHAT = request("https://api.openai.com/v1/chat/completions", "https", "api.openai.com")


class JudgeDestination(unittest.TestCase):
    def allowed(self, scheme, host, port=None) -> bool:
        return oracle.judge_destination(request("x", scheme, host, port))[0]

    def test_hosts_under_each_allowed_suffix_are_allowed(self):
        for host in [
            "contoso.openai.azure.com",
            "contoso.cognitiveservices.azure.com",
            "contoso.services.ai.azure.com",
            "contoso.openai.azure.us",
            "contoso.cognitiveservices.azure.us",
            "a.b.openai.azure.com",
        ]:
            self.assertTrue(self.allowed("https", host), host)

    def test_explicit_default_port_upper_case_and_trailing_dot_are_the_same_host(self):
        self.assertTrue(self.allowed("https", "contoso.openai.azure.com", 443))
        self.assertTrue(self.allowed("HTTPS", "Contoso.OpenAI.Azure.com"))
        self.assertTrue(self.allowed("https", "contoso.openai.azure.com."))

    def test_the_suffix_itself_and_look_alikes_are_not_allowed(self):
        for host in [
            "openai.azure.com",
            "contoso.openai.azure.com.evil.example",
            "contosoopenai.azure.com",
            "xopenai.azure.com",
            "api.openai.com",
            "eu.api.openai.com",
            "contoso..openai.azure.com",
            "",
            "20.1.2.3",
        ]:
            self.assertFalse(self.allowed("https", host), host)

    def test_plain_http_and_other_ports_are_not_allowed(self):
        self.assertFalse(self.allowed("http", "contoso.openai.azure.com"))
        self.assertFalse(self.allowed("https", "contoso.openai.azure.com", 8443))
        self.assertFalse(self.allowed("tcp", "contoso.openai.azure.com", 443))

    def test_in_cluster_hosts(self):
        self.assertTrue(oracle.is_in_cluster_host("litellm.ai.svc.cluster.local"))
        self.assertTrue(oracle.is_in_cluster_host("gateway"))
        self.assertFalse(oracle.is_in_cluster_host("litellm.example.com"))


def case(env=None) -> dict:
    return {"id": "case-0001", "source": "adversarial", "label": "t", "env": env or {}}


def probe(*requests, error=None) -> dict:
    return {"requests": list(requests), "error": error}


class Categorise(unittest.TestCase):
    def category(self, verdict: str, probes: dict) -> str:
        return oracle.categorise(case(), {"verdict": verdict, "findings": []}, probes)["category"]

    def test_a_client_leaving_azure_while_hostguard_allows_or_warns_fails(self):
        probes = {"a": probe(AZURE_CHAT), "b": probe(OPENAI_CHAT)}
        self.assertEqual(self.category("allow", probes), "FAIL")
        self.assertEqual(self.category("warn", probes), "FAIL")

    def test_a_client_leaving_azure_while_hostguard_denies_agrees(self):
        self.assertEqual(self.category("deny", {"a": probe(OPENAI_CHAT)}), "agree-deny")

    def test_every_sender_on_azure_and_a_denial_is_over_denied(self):
        probes = {"a": probe(AZURE_CHAT), "b": probe(error="OpenAIError: Missing credentials")}
        self.assertEqual(self.category("deny", probes), "over-denied")
        self.assertEqual(self.category("allow", probes), "agree-allow")

    def test_no_sender_is_no_request_whatever_the_verdict(self):
        for verdict in ("allow", "deny", "warn"):
            self.assertEqual(self.category(verdict, {"a": probe(error="refused")}), "no-request")

    def test_auxiliary_requests_are_not_model_traffic_but_socket_attempts_are(self):
        token = request("https://auth.openai.com/oauth/token", "https", "auth.openai.com", model=False)
        self.assertEqual(self.category("allow", {"a": probe(token, AZURE_CHAT)}), "agree-allow")
        socket = request("tcp://203.0.113.9:443", "tcp", "203.0.113.9", 443, model=False, via="socket")
        self.assertEqual(self.category("allow", {"a": probe(socket)}), "FAIL")


    def test_a_url_without_a_host_reaches_no_server(self):
        hostless = request("https:///chat/completions", "https", "")
        self.assertEqual(self.category("allow", {"a": probe(hostless)}), "no-request")


class Generator(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cases = envgen.generate()

    def test_deterministic_and_about_a_thousand(self):
        self.assertEqual(self.cases, envgen.generate())
        self.assertGreaterEqual(len(self.cases), 950)
        self.assertEqual(len({c["id"] for c in self.cases}), len(self.cases))
        self.assertEqual(len({json.dumps(sorted(c["env"].items())) for c in self.cases}), len(self.cases))

    def test_every_pair_of_values_of_two_variables_appears(self):
        pairwise = [c["env"] for c in self.cases]

        def value_of(env, factor):
            for value in envgen.FACTORS[factor]:
                if isinstance(value, dict):
                    if all(env.get(k) == v for k, v in value.items()) and not (
                        factor == "OPENAI_IDENTITY" and "OPENAI_IDENTITY_TOKEN_FILE" in env and "OPENAI_IDENTITY_TOKEN_FILE" not in value
                    ):
                        return envgen._key(value)
                elif value is not None and env.get(factor) == value:
                    return envgen._key(value)
            return envgen._key(None)

        seen = {
            (a, value_of(env, a), b, value_of(env, b))
            for env in pairwise
            for a, b in itertools.combinations(envgen.FACTORS, 2)
        }
        missing = [
            (a, va, b, vb)
            for a, b in itertools.combinations(envgen.FACTORS, 2)
            for va in map(envgen._key, envgen.FACTORS[a])
            for vb in map(envgen._key, envgen.FACTORS[b])
            if (a, va, b, vb) not in seen
        ]
        self.assertEqual(missing[:5], [])

    def test_every_variable_the_reference_names_is_set_somewhere(self):
        names = {name for c in self.cases for name in c["env"]}
        for name in [
            "OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_API_BASE", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY",
            "AZURE_OPENAI_AD_TOKEN", "OPENAI_API_VERSION", "OPENAI_API_TYPE", "AZURE_API_BASE", "AZURE_API_KEY",
            "LANGSMITH_GATEWAY", "LANGSMITH_API_KEY", "LANGSMITH_GATEWAY_API_KEY", "USE_LITELLM_PROXY",
            "LITELLM_PROXY_API_BASE", "OPENAI_IDENTITY_PROVIDER_ID", "OPENAI_SERVICE_ACCOUNT_ID",
            "OPENAI_IDENTITY_TOKEN_FILE", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_ADMIN_KEY",
            "AWS_BEDROCK_BASE_URL", "AWS_REGION", "AWS_BEARER_TOKEN_BEDROCK", "AZURE_OPENAI_API_INSTANCE_NAME",
            "AZURE_OPENAI_API_DEPLOYMENT_NAME",
        ]:
            self.assertIn(name, names)


class Manifests(unittest.TestCase):
    def test_values_are_carried_literally(self):
        env = {"OPENAI_API_KEY": "   ", "OPENAI_BASE_URL": "", "X": " padded "}
        container = oracle.deployment(case(env))["spec"]["template"]["spec"]["containers"][0]
        self.assertEqual(container["env"], [{"name": k, "value": v} for k, v in env.items()])


class Sandbox(unittest.TestCase):
    def test_probes_see_no_network_interface_but_loopback_and_the_token_file(self):
        script = (
            "import socket, json; print(json.dumps([[n for _, n in socket.if_nameindex()],"
            f" open({envgen.TOKEN_FILE!r}).read()]))"
        )
        done = subprocess.run(oracle.sandboxed([sys.executable, "-c", script]), capture_output=True, text=True, check=True)
        interfaces, token = json.loads(done.stdout)
        self.assertEqual(interfaces, ["lo"])
        self.assertEqual(token, oracle.WORKLOAD_TOKEN)


if __name__ == "__main__":
    unittest.main()

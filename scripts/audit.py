"""`make audit`: pip-audit over the pinned dependency set (constraints.txt).

Fails on any known vulnerability. If the vulnerability service cannot be reached (offline
machines), it says so and exits 0: an audit that could not run is reported, not faked.
Packages the service does not know (private mirrors) are listed as not audited.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        proc = subprocess.run(
            [sys.executable, "-m", "pip_audit", "-r", str(ROOT / "constraints.txt"), "--format", "json",
             "--output", str(out), "--progress-spinner", "off"],
            capture_output=True, text=True, timeout=600,
        )
        if not out.exists():
            print(f"pip-audit could not run (exit {proc.returncode}); vulnerability service unreachable?\n"
                  f"{proc.stderr.strip()[-600:]}")
            return 0
        report = json.loads(out.read_text())
    deps = report.get("dependencies", [])
    vulnerable = [d for d in deps if d.get("vulns")]
    skipped = [d for d in deps if d.get("skip_reason")]
    for d in vulnerable:
        for v in d["vulns"]:
            fixed = ", ".join(v.get("fix_versions", [])) or "-"
            print(f"VULNERABLE {d['name']} {d['version']}: {v['id']} (fixed in {fixed})")
    print(f"pip-audit: {len(deps) - len(skipped)} packages audited, {len(vulnerable)} with known vulnerabilities, "
          f"{len(skipped)} not known to the vulnerability service (not audited)")
    if len(deps) == len(skipped):
        print("WARNING: nothing could be audited from this machine (the registry it reaches is not known to the "
              "vulnerability service); run `make audit` where pypi.org or osv.dev is reachable")
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())

"""The package's public names: the audit loads on first use, so `import occlusion_widget` needs no pandas."""

from __future__ import annotations

import subprocess
import sys


def test_audit_names_load_on_first_use_only() -> None:
    code = (
        "import sys, occlusion_widget as ow\n"
        "assert 'pandas' not in sys.modules and 'occlusion_widget.audit' not in sys.modules\n"
        "from occlusion_widget.audit import Audit, audit, compare_audits\n"
        "assert (ow.audit, ow.Audit, ow.compare_audits) == (audit, Audit, compare_audits)\n"
        "assert ow.AuditWidget.__name__ == 'AuditWidget'\n"
        "assert set(['audit', 'Audit', 'compare_audits', 'AuditWidget']) <= set(ow.__all__)\n"
        "try:\n    ow.no_such_name\nexcept AttributeError as exc:\n    assert 'no_such_name' in str(exc)\n"
        "else:\n    raise SystemExit('no AttributeError')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

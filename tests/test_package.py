"""The package's public names: the audit loads on first use, so `import occlusion_widget` needs no pandas."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys, tempfile, os
import numpy as np, torch
from PIL import Image
import occlusion_widget as ow

assert 'pandas' not in sys.modules and 'occlusion_widget.audit' not in sys.modules, "the audit loads on first use"
assert {'audit', 'Audit', 'compare_audits', 'AuditWidget'} <= set(ow.__all__)
from occlusion_widget.audit import Audit, compare_audits   # binds the subpackage to the name ow.audit
assert (ow.Audit, ow.compare_audits) == (Audit, compare_audits) and ow.AuditWidget.__name__ == 'AuditWidget'

torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                          torch.nn.Linear(4, 3)).eval()
model = ow.ImageClassifier(net, (32, 32), ["a", "b", "c"], name="tiny")
folder = tempfile.mkdtemp()
paths = []
for i in range(2):
    path = os.path.join(folder, f"{i}.png")
    Image.fromarray((np.random.default_rng(i).random((40, 40, 3)) * 255).astype(np.uint8)).save(path)
    paths.append(path)
result = ow.audit(model, paths, out=os.path.join(folder, "out"), mask_size=8, stride=8, progress=False)
assert isinstance(result, Audit) and len(result.table) == 2, result
try:
    ow.no_such_name
except AttributeError as exc:
    assert "no_such_name" in str(exc)
else:
    raise SystemExit("no AttributeError")
"""


def test_audit_names_load_on_first_use_and_ow_audit_runs_an_audit() -> None:
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

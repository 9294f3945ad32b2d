"""FerretDB's patches are applied to its source tree inside the checkout's .cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

from localsuite.common import EngineError  # noqa: E402
from localsuite.fetch import apply_patches  # noqa: E402

# git's own format (what `git diff` writes): a changed file and a new one.
GIT_PATCH = """\
diff --git a/pkg/a.go b/pkg/a.go
--- a/pkg/a.go
+++ b/pkg/a.go
@@ -1 +1 @@
-package before
+package after
diff --git a/pkg/b.go b/pkg/b.go
new file mode 100644
--- /dev/null
+++ b/pkg/b.go
@@ -0,0 +1 @@
+package added
"""


def _source_inside_a_repository(tmp_path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text(".cache/\n")
    src = tmp_path / ".cache" / "src" / "ferretdb"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "a.go").write_text("package before\n")
    return src


def test_a_patch_in_gits_format_is_applied_inside_the_checkout(tmp_path: Path) -> None:
    src = _source_inside_a_repository(tmp_path)
    patch = tmp_path / "change.patch"
    patch.write_text(GIT_PATCH)
    apply_patches(src, [patch])
    assert (src / "pkg" / "a.go").read_text() == "package after\n"
    assert (src / "pkg" / "b.go").read_text() == "package added\n"


def test_a_patch_that_does_not_apply_stops_the_build(tmp_path: Path) -> None:
    src = _source_inside_a_repository(tmp_path)
    (src / "pkg" / "a.go").write_text("package other\n")
    patch = tmp_path / "change.patch"
    patch.write_text(GIT_PATCH)
    with pytest.raises(EngineError, match=r"change\.patch does not apply"):
        apply_patches(src, [patch])

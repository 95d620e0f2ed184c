#!/usr/bin/env bash
# Build what spark-submit ships to executors, into build/ (or $RETAIL_ANN_BUILD_DIR).
#
#   bin/build-package.sh          build/retail_ann-<version>.zip: the retail_ann package for
#                                 --py-files, with conf/*.yaml inside it as retail_ann/conf/; rebuilt
#                                 only when a file under retail_ann/ or conf/ is newer.
#                                 Prints the zip's path.
#   bin/build-package.sh --env    also build/retail-ann-env.tar.gz: a packed virtualenv (venv-pack)
#                                 with retail-ann and its pinned dependencies, for executors on
#                                 machines without them: ./spark-submit.sh uses it when
#                                 RETAIL_ANN_ENV_ARCHIVE points at it. Needs PyPI (or a mirror) and
#                                 ~3.5 GB of disk while building; ~1 GB result. venv-pack goes into
#                                 that throwaway venv only. Prints the archive's path.
#
# The packed environment holds a venv, not an interpreter: its bin/python links to the Python
# that created it ($PYTHON, default .venv's base interpreter), which must exist at the same path on
# every node (same image), or build the env on a machine like the nodes.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${RETAIL_ANN_BUILD_DIR:-$here/build}"
pkg="$here/retail_ann"
mkdir -p "$build"

version="$(sed -n 's/^__version__ *= *"\(.*\)"/\1/p' "$pkg/__init__.py")"
[ -n "$version" ] || { echo "build-package: no __version__ in $pkg/__init__.py" >&2; exit 1; }
zip="$build/retail_ann-$version.zip"

# Stale when missing or when any file of the package (not caches) or of conf/ is newer than the zip.
if [ ! -f "$zip" ] || [ -n "$(find "$pkg" "$here/conf" -newer "$zip" ! -path '*/__pycache__*' ! -name '*.pyc' -print -quit)" ]; then
  python="${PYTHON:-$(command -v python3)}"
  [ -x "$here/.venv/bin/python" ] && python="${PYTHON:-$here/.venv/bin/python}"
  tmp="$zip.tmp.$$"
  # Build beside the target and rename: concurrent submits never see a half-written zip.
  "$python" - "$here" "$tmp" <<'EOF'
import os, sys, zipfile
root, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
    for d, dirs, files in os.walk(os.path.join(root, "retail_ann")):
        dirs[:] = sorted(x for x in dirs if x != "__pycache__" and not x.startswith("."))
        for f in sorted(files):
            if f.endswith((".pyc", ".pyo")) or f.startswith("."):
                continue
            path = os.path.join(d, f)
            zf.write(path, os.path.relpath(path, root))
    # the job YAML travels inside the package (retail_ann.config reads it with importlib.resources),
    # so a driver started from the zip (cluster deploy mode) runs with conf/, not bare defaults
    for f in sorted(os.listdir(os.path.join(root, "conf"))):
        if f.endswith(".yaml"):
            zf.write(os.path.join(root, "conf", f), f"retail_ann/conf/{f}")
EOF
  mv -f "$tmp" "$zip"
  echo "build-package: built $zip" >&2
fi

if [ "${1:-}" = "--env" ]; then
  env_dir="$build/env-venv"
  archive="$build/retail-ann-env.tar.gz"
  base="${PYTHON:-}"
  if [ -z "$base" ]; then
    # The interpreter .venv was made from (pyvenv.cfg `executable`), else python3 on PATH.
    base="$(sed -n 's/^executable *= *//p' "$here/.venv/pyvenv.cfg" 2>/dev/null || true)"
    base="${base:-$(command -v python3)}"
  fi
  rm -rf "$env_dir" "$archive"
  "$base" -m venv "$env_dir"
  "$env_dir/bin/python" -m pip install --quiet --upgrade pip
  # Not editable (venv-pack refuses editable installs); dependencies as pinned in setup.py.
  "$env_dir/bin/python" -m pip install --quiet "$here" venv-pack==0.2.0
  "$env_dir/bin/venv-pack" -p "$env_dir" -o "$archive" --quiet
  rm -rf "$env_dir"
  echo "build-package: packed $archive" >&2
  echo "$archive"
fi
echo "$zip"

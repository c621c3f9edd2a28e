"""Slim a pip --target directory into a Lambda layer that fits, then prove it still imports.

    python3.12 slim.py [--precompile PACKAGE]... [--remove GLOB]... [--path DIR]... [--check SCRIPT]
                       SITE [MODULE ...]

The dependency layers' Makefiles (layers/ml/, layers/serving/) run it; each of those folders holds a
symbolic link to this file, because `sam build` copies only a layer's own folder (following links)
to the scratch directory it builds in.

1. Removes what nothing imports at runtime:
   - test suites: directories named ``tests`` or ``test`` (sklearn/*/tests, pandas/tests,
     onnx/backend/test, joblib/test, ...). Runtime helpers are named otherwise and stay:
     ``numpy/testing`` (imported by scipy and sklearn at import time), ``pandas/_testing``,
     ``sklearn/utils/_testing.py``, ``scipy/_lib/_testutils.py``;
   - C/C++/Cython sources and templates, headers and static libraries (``include/`` dirs, *.h, *.c,
     *.pyx, *.tp, *.a, ...) and *.pyi stubs: only a compiler or a type checker reads them;
   - pytest's ``conftest.py`` files, and the extension modules the packages build only for their
     test suites (TEST_EXTENSIONS: numpy's ``_multiarray_tests``, ``_simd``, ..., scipy's ``_test_*``,
     ``ndimage._ctest``, ...): nothing outside their tests/ imports them;
   - any ``__pycache__`` (pip ran with --no-compile; they are rebuilt below);
   - what the layer's Makefile names with --remove (globs relative to SITE; the build fails if one
     matches nothing, so that a renamed file is noticed rather than shipped again).
   ``*.dist-info`` folders (importlib.metadata, licenses) and auditwheel ``*.libs/`` folders are
   never touched by the rules above.
2. Strips debug symbols from the extension modules (``strip --strip-unneeded``), never from a file
   inside a ``*.libs/`` folder: those vendored libraries are patched by auditwheel, and stripping
   them breaks scipy.
3. Imports MODULE... from SITE alone (``python -I -S``: no site-packages, no PYTHONPATH), followed on
   sys.path by the --path directories (what another layer provides at runtime; they are only read),
   then runs the --check SCRIPT in the same interpreter, so the build fails if step 1 removed
   something that is imported or used; then precompiles exactly the modules that import and check
   loaded from SITE, as checked-hash .pyc: all of them, or only those of the top-level packages given
   with --precompile. /opt is read-only on Lambda: without .pyc every cold start compiles them again;
   precompiling the whole tree would cost about 10 MiB more for modules these imports never load,
   and each MiB of .pyc saves about 0.1 s of CPU per cold start. Hash-based .pyc stay valid
   whatever mtimes the zip keeps, and a .py overwritten by a later layer is recompiled, not run
   stale. Step 3 needs a host that can load the wheels (Linux x86_64, CPython 3.12); elsewhere it is
   skipped with a warning unless SLUICE_REQUIRE_IMPORT_CHECK=1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import py_compile
import shutil
import subprocess
import sys
from pathlib import Path

REMOVE_DIRS = {"tests", "test", "include", "__pycache__"}
REMOVE_SUFFIXES = (".pyi", ".h", ".hpp", ".c", ".cc", ".cpp", ".pyx", ".pxd", ".pxi", ".tp", ".a")
REMOVE_FILES = {"conftest.py"}
# Extension modules built only for the packages' own test suites: nothing outside tests/ imports them.
TEST_EXTENSIONS = frozenset(
    {
        "numpy._core._multiarray_tests",
        "numpy._core._umath_tests",
        "numpy._core._rational_tests",
        "numpy._core._struct_ufunc_tests",
        "numpy._core._operand_flag_tests",
        "numpy._core._simd",
        "scipy._lib._test_ccallback",
        "scipy._lib._test_deprecation_call",
        "scipy._lib._test_deprecation_def",
        "scipy.integrate._test_multivariate",
        "scipy.special._test_internal",
        "scipy.ndimage._ctest",
        "scipy.ndimage._cytest",
    }
)
MiB = 1024 * 1024

# Imports MODULE... with only SITE, the --path directories (and the standard library) on sys.path,
# runs the --check script, and prints, as JSON, the source files of the modules it loaded from SITE.
CHILD = """
import importlib, json, os, runpy, sys
site, paths, check = os.path.realpath(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
sys.path[:0] = [site, *paths]
for name in sys.argv[4:]:
    importlib.import_module(name)
if check:
    runpy.run_path(check, run_name="__main__")
files = set()
for module in list(sys.modules.values()):
    origin = getattr(getattr(module, "__spec__", None), "origin", None) or ""
    if origin.endswith(".py") and os.path.realpath(origin).startswith(site + os.sep):
        files.add(os.path.realpath(origin))
print(json.dumps(sorted(files)))
"""


def tree_bytes(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _protected(rel: Path) -> bool:
    return any(part.endswith((".dist-info", ".libs")) for part in rel.parts)


def _test_extension(rel: Path) -> bool:
    """True for an extension module (``pkg/mod.cpython-312-x86_64-linux-gnu.so``) of TEST_EXTENSIONS."""
    if not rel.name.endswith(".so"):
        return False
    return ".".join([*rel.parent.parts, rel.name.split(".", 1)[0]]) in TEST_EXTENSIONS


def _removable(rel: Path) -> str | None:
    """The kind of file REL is, if it is one to remove, for the summary; None to keep it."""
    if rel.name.endswith(REMOVE_SUFFIXES):
        return rel.suffix
    if rel.name in REMOVE_FILES:
        return rel.name
    if _test_extension(rel):
        return "test extensions"
    return None


def remove_named(site: Path, patterns: list[str]) -> dict[str, int]:
    """Remove what each glob (relative to SITE) matches, files or directories; bytes per pattern."""
    removed: dict[str, int] = {}
    for pattern in patterns:
        matches = sorted(site.glob(pattern))
        if not matches:
            raise SystemExit(f"slim.py: --remove {pattern!r} matches nothing in {site}: update the Makefile")
        for path in matches:
            if path.is_dir() and not path.is_symlink():
                removed[pattern] = removed.get(pattern, 0) + tree_bytes(path)
                shutil.rmtree(path)
            else:
                removed[pattern] = removed.get(pattern, 0) + path.lstat().st_size
                path.unlink()
    return removed


def prune(site: Path) -> dict[str, int]:
    removed: dict[str, int] = {}
    for root, dirs, files in os.walk(site):
        here = Path(root)
        if _protected(here.relative_to(site)):
            dirs[:] = []
            continue
        for d in list(dirs):
            if d in REMOVE_DIRS:
                removed[d + "/"] = removed.get(d + "/", 0) + tree_bytes(here / d)
                shutil.rmtree(here / d)
                dirs.remove(d)
        for f in files:
            kind = _removable((here / f).relative_to(site))
            if kind:
                removed[kind] = removed.get(kind, 0) + (here / f).lstat().st_size
                (here / f).unlink()
    return removed


def _is_elf(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"\x7fELF"


def strip_shared_objects(site: Path) -> int:
    """strip --strip-unneeded every ELF *.so / *.so.N outside *.libs/; returns the bytes saved."""
    targets = [
        p
        for p in sorted(site.rglob("*.so*"))
        if p.is_file()
        and not p.is_symlink()
        and (p.suffix == ".so" or ".so." in p.name)
        and not any(part.endswith(".libs") for part in p.relative_to(site).parts)
        and _is_elf(p)
    ]
    strip = os.environ.get("STRIP", "strip")
    if not shutil.which(strip):
        raise SystemExit(f"slim.py: `{strip}` not found (binutils): the layer would not fit unstripped")
    before = sum(p.stat().st_size for p in targets)
    for i in range(0, len(targets), 200):
        subprocess.run([strip, "--strip-unneeded", *map(str, targets[i : i + 200])], check=True)
    return before - sum(p.stat().st_size for p in targets)


def can_import_here() -> bool:
    return (
        sys.platform == "linux"
        and platform.machine() == "x86_64"
        and sys.implementation.name == "cpython"
        and sys.version_info[:2] == (3, 12)
    )


def import_and_precompile(
    site: Path, modules: list[str], only: set[str], paths: list[Path], check: Path | None
) -> tuple[int, int]:
    """Import MODULES from SITE (then PATHS) alone and run CHECK, then compile what they loaded from
    the top-level packages ONLY (all of it if ONLY is empty); returns (files compiled, pyc bytes)."""
    paths_json = json.dumps([str(p) for p in paths])
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", CHILD, str(site), paths_json, str(check or ""), *modules],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        what = " ".join(modules) + (f" and running {check.name}" if check else "")
        raise SystemExit(f"slim.py: importing {what} from the slimmed layer failed:\n{proc.stderr[-4000:]}")
    files = [
        f
        for f in json.loads(proc.stdout.strip().splitlines()[-1])
        if not only or Path(f).relative_to(site).parts[0].removesuffix(".py") in only
    ]
    size = 0
    for f in files:
        cfile = py_compile.compile(
            f, doraise=True, optimize=0, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH
        )
        size += Path(cfile).stat().st_size
    return len(files), size


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", type=Path, help="the pip --target directory to slim in place")
    parser.add_argument("modules", nargs="*", help="modules to import from it, then precompile")
    parser.add_argument(
        "--precompile",
        action="append",
        default=[],
        metavar="PACKAGE",
        help="precompile only the loaded modules of these top-level packages (default: all)",
    )
    parser.add_argument(
        "--remove",
        action="append",
        default=[],
        metavar="GLOB",
        help="also remove what this glob (relative to SITE) matches; it must match something",
    )
    parser.add_argument(
        "--path",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="a directory on sys.path after SITE for the import check only (another layer's packages)",
    )
    parser.add_argument(
        "--check", type=Path, metavar="SCRIPT", help="a script run after the imports, in the same interpreter"
    )
    args = parser.parse_args(argv[1:])
    site, modules, only = args.site.resolve(), args.modules, set(args.precompile)
    paths = [p.resolve() for p in args.path]
    check = args.check.resolve() if args.check else None
    before = tree_bytes(site)
    removed = {**remove_named(site, args.remove), **prune(site)}
    detail = ", ".join(f"{k} {v / MiB:.1f}" for k, v in sorted(removed.items(), key=lambda kv: -kv[1]))
    print(f"slim: {before / MiB:.1f} MiB installed; removed {sum(removed.values()) / MiB:.1f} MiB ({detail})")
    print(f"slim: strip --strip-unneeded saved {strip_shared_objects(site) / MiB:.1f} MiB (not in *.libs/)")
    if modules and can_import_here():
        count, size = import_and_precompile(site, modules, only, paths, check)
        print(f"slim: imported {' '.join(modules)}{f' and ran {check.name}' if check else ''}: OK")
        print(f"slim: precompiled {count} modules ({size / MiB:.1f} MiB) of {sorted(only) or 'all packages'}")
    elif modules:
        message = f"cannot load {platform.machine()} Linux cp312 wheels on this host ({sys.platform})"
        if os.environ.get("SLUICE_REQUIRE_IMPORT_CHECK") == "1":
            raise SystemExit(f"slim.py: {message} and SLUICE_REQUIRE_IMPORT_CHECK=1")
        print(f"slim: WARNING: {message}: import check and .pyc skipped", file=sys.stderr)
    print(f"slim: {tree_bytes(site) / MiB:.1f} MiB in {site}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

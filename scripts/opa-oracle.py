#!/usr/bin/env python3
"""Checks tests/opa/cases.json against real OPA (issue 15).

Every case there is a place where regorus and OPA could differ, with the
answer the server must give (`want`; null is undefined). tests/opa_differences.rs
checks that the server gives it; this script checks that OPA 1.x does, by
loading the OPA engine embedded in the `opa-golib-python-bindings` wheel
(ctypes over OPA's Go library). The wheel is fetched with pip into
target/opa-oracle the first time (a package registry is all it needs).

    python3 scripts/opa-oracle.py            # exit 0 when OPA agrees on every case
"""

import glob
import json
import os
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "target", "opa-oracle")
WHEEL = "opa-golib-python-bindings==0.4.4"


def engine_module():
    unpacked = os.path.join(CACHE, "unpacked")
    if not os.path.isdir(os.path.join(unpacked, "opa_bindings")):
        os.makedirs(CACHE, exist_ok=True)
        # The wheel says Python >= 3.14 but is a ctypes loader of a Go
        # shared library, which any Python 3.10+ can load.
        subprocess.run(
            [sys.executable, "-m", "pip", "download", WHEEL, "--no-deps",
             "--python-version", "3.14", "--only-binary=:all:", "-d", CACHE],
            check=True, stdout=subprocess.DEVNULL,
        )
        wheel = glob.glob(os.path.join(CACHE, "opa_golib_python_bindings-*.whl"))[0]
        with zipfile.ZipFile(wheel) as z:
            z.extractall(unpacked)
    sys.path.insert(0, unpacked)
    import opa_bindings
    return opa_bindings


def main():
    opa = engine_module()
    with open(os.path.join(ROOT, "tests", "opa", "cases.json")) as f:
        cases = json.load(f)["cases"]
    wrong = skipped = 0
    for case in cases:
        if case.get("unchecked"):
            skipped += 1
            print(f"---- {case['name']}: not checked: {case['unchecked']}")
            continue
        e = opa.OpaEngine()
        for path, src in case["modules"].items():
            e.add_policy(path, src)
        path = case["query"].removeprefix("data.")
        try:
            got = e.eval_document(path, case["input"])
        except opa.OpaUndefinedError:
            got = None
        ok = got == case["want"]
        wrong += not ok
        print(f"{'ok  ' if ok else 'DIFF'} {case['name']}: OPA {json.dumps(got)}"
              + ("" if ok else f", cases.json says {json.dumps(case['want'])}"))
        e.close()
    checked = len(cases) - skipped
    print(f"{checked - wrong} of {checked} cases checked: OPA answers as cases.json says ({skipped} not checked)")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())

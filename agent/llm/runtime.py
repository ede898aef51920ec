"""The llama.cpp runtime: which build flags this CPU takes, and whether the installed build runs here.

llama-cpp-python is built from source (extra ``llm``). Facts measured on the project's machines:
``-DGGML_NATIVE=ON`` builds but segfaults at the first evaluation (the AMX matmul path); a portable
AVX2 build (``-DGGML_NATIVE=OFF``) works; an AVX-512 build works where the CPU has AVX-512 and
processes prompts 1.5-1.6x faster. :func:`cmake_args` picks the flags from the CPU's flags, and
:func:`check_runtime` loads the installed build in a *child* process (an unsupported instruction
kills the child, not us) and compares what it was built for with what the CPU has, so a wheel built
elsewhere falls back to the transformers backend instead of crashing.

This file imports nothing from lumenrec, so CI can run it before lumenrec is installed::

    CMAKE_ARGS="$(python agent/llm/runtime.py --cmake-args)" pip install --no-cache-dir llama-cpp-python
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["cpu_flags", "cmake_args", "check_runtime", "RuntimeStatus", "LLAMA_CPP_VERSION"]

LLAMA_CPP_VERSION = "0.3.36"

# (CPU flag in /proc/cpuinfo, cmake option it allows); AVX512 options need avx512f too.
_AVX512_OPTS = [("avx512f", "GGML_AVX512"), ("avx512vbmi", "GGML_AVX512_VBMI"),
                ("avx512_vnni", "GGML_AVX512_VNNI"), ("avx512_bf16", "GGML_AVX512_BF16")]
# What llama_print_system_info() reports -> the CPU flag that feature needs.
_FEATURE_FLAG = {"AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi", "AVX512_VNNI": "avx512_vnni",
                 "AVX512_BF16": "avx512_bf16", "AVX_VNNI": "avx_vnni", "AVX2": "avx2", "AVX": "avx",
                 "F16C": "f16c", "FMA": "fma", "AMX_INT8": "amx_int8"}


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cmake_args(flags: set[str] | None = None) -> str:
    """CMAKE_ARGS for a llama-cpp-python source build on this CPU: never NATIVE (its AMX path crashes)."""
    flags = cpu_flags() if flags is None else flags
    args = ["-DGGML_NATIVE=OFF", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF"]
    if "avx512f" in flags:
        args += [f"-D{opt}=ON" for flag, opt in _AVX512_OPTS if flag in flags]
    if "avx_vnni" in flags:
        args.append("-DGGML_AVX_VNNI=ON")
    return " ".join(args)


class RuntimeStatus(dict):
    """{"ok": bool, "reason": str, "version": str, "features": [...], "missing": [...]}."""

    @property
    def ok(self) -> bool:
        return bool(self.get("ok"))


_PROBE = ("import json, llama_cpp; info = llama_cpp.llama_print_system_info(); "
          "info = info.decode() if isinstance(info, bytes) else str(info); "
          "print(json.dumps({'version': llama_cpp.__version__, 'info': info}))")


def parse_features(info: str) -> list[str]:
    """Features llama.cpp reports as on ('AVX2 = 1 | AVX512 = 1 | ...')."""
    out = []
    for part in info.replace("\n", "|").split("|"):
        if "=" in part:
            k, _, v = part.partition("=")
            k = k.strip().split(":")[-1].strip()
            if v.strip() == "1" and k:
                out.append(k)
    return out


def check_runtime(timeout_s: float = 60.0, flags: set[str] | None = None) -> RuntimeStatus:
    """Does the installed llama-cpp-python load here, and was it built only for features this CPU has?

    Runs the import in a child process; cached per build in ``$LUMENREC_CACHE_DIR`` (keyed by the
    shared library's path, size and mtime), so a server start pays ~1 s only once per build.
    """
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return RuntimeStatus(ok=False, reason="llama-cpp-python is not installed (pip install 'lumenrec[llm]', "
                                              "built as README says)")
    pkg = Path(list(spec.submodule_search_locations)[0])
    libs = sorted(str(p) + f":{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in pkg.rglob("*.so*"))
    key = hashlib.sha256("|".join(libs).encode()).hexdigest()[:16]
    cache = Path(os.environ.get("LUMENREC_CACHE_DIR") or Path.home() / ".cache" / "lumenrec") / "llama_cpp_runtime.json"
    flags = cpu_flags() if flags is None else flags
    probe = None
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("key") == key:
            probe = cached["probe"]
    except (OSError, ValueError, KeyError):
        pass
    if probe is None:
        try:
            res = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return RuntimeStatus(ok=False, reason=f"importing llama_cpp took longer than {timeout_s:g} s")
        if res.returncode != 0:
            tail = (res.stderr or "").strip().splitlines()[-1:] or [f"exit code {res.returncode}"]
            return RuntimeStatus(ok=False, reason=f"llama_cpp does not load here ({tail[0][:200]}); rebuild it with "
                                                  f'CMAKE_ARGS="{cmake_args(flags)}"')
        probe = json.loads(res.stdout.strip().splitlines()[-1])
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"key": key, "probe": probe}), encoding="utf-8")
        except OSError:
            pass
    feats = parse_features(probe["info"])
    if "AMX_INT8" in feats or "AMX" in feats:
        return RuntimeStatus(ok=False, version=probe["version"], features=feats, missing=[],
                             reason=f"llama-cpp-python {probe['version']} was built with AMX (a GGML_NATIVE=ON build), "
                                    f"which segfaults at the first evaluation on these machines; rebuild it with "
                                    f'CMAKE_ARGS="{cmake_args(flags)}" pip install --no-cache-dir --force-reinstall '
                                    f"llama-cpp-python=={LLAMA_CPP_VERSION}")
    missing = [f for f in feats if f in _FEATURE_FLAG and flags and _FEATURE_FLAG[f] not in flags]
    if missing:
        return RuntimeStatus(ok=False, version=probe["version"], features=feats, missing=missing,
                             reason=f"llama-cpp-python {probe['version']} was built for {', '.join(missing)}, which this "
                                    f'CPU lacks; rebuild it with CMAKE_ARGS="{cmake_args(flags)}" pip install '
                                    f"--no-cache-dir --force-reinstall llama-cpp-python=={LLAMA_CPP_VERSION}")
    return RuntimeStatus(ok=True, reason="", version=probe["version"], features=feats, missing=[])


if __name__ == "__main__":  # `python agent/llm/runtime.py --cmake-args` | `--check`
    if "--cmake-args" in sys.argv:
        print(cmake_args())
    else:
        st = check_runtime()
        print(json.dumps(st))
        raise SystemExit(0 if st.ok else 1)

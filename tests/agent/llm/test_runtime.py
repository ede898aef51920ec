"""The llama.cpp build flags follow the CPU, and a build for features the CPU lacks is refused before it runs."""

from __future__ import annotations

import json

import pytest

from lumenrec.agent.llm import runtime


def test_cmake_args_never_native_and_follow_the_cpu():
    plain = runtime.cmake_args({"avx", "avx2", "fma", "f16c"})
    assert "-DGGML_NATIVE=OFF" in plain and "AVX512" not in plain and "-DLLAMA_CURL=OFF" in plain
    full = runtime.cmake_args({"avx2", "avx512f", "avx512vbmi", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_int8"})
    for opt in ("GGML_AVX512", "GGML_AVX512_VBMI", "GGML_AVX512_VNNI", "GGML_AVX512_BF16", "GGML_AVX_VNNI"):
        assert f"-D{opt}=ON" in full
    assert "AMX" not in full and "NATIVE=ON" not in full
    # AVX512 sub-features are never asked for without avx512f
    assert "AVX512" not in runtime.cmake_args({"avx2", "avx512_vnni"})


def test_cpu_flags_are_read_from_cpuinfo_text():
    text = "processor\t: 0\nflags\t\t: fpu avx avx2 avx512f\nbugs\t: none\n"
    assert runtime.cpu_flags(text) == {"fpu", "avx", "avx2", "avx512f"}
    assert runtime.cpu_flags("no flags here") == set()


def test_parse_features_reads_llama_system_info():
    info = "CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VBMI = 0 | LLAMAFILE = 1 | "
    assert runtime.parse_features(info) == ["SSE3", "AVX", "AVX2", "AVX512", "LLAMAFILE"]


@pytest.fixture
def fake_probe(tmp_path, monkeypatch):
    """check_runtime with a cached probe result (no llama_cpp import): writes what the build reports."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    monkeypatch.setenv("LUMENREC_CACHE_DIR", str(tmp_path))

    def write(info: str) -> None:
        runtime.check_runtime(flags={"avx2"})  # creates the cache entry with the real key
        path = tmp_path / "llama_cpp_runtime.json"
        d = json.loads(path.read_text())
        d["probe"]["info"] = info
        path.write_text(json.dumps(d))
    return write


def test_a_build_for_missing_cpu_features_is_refused(fake_probe):
    fake_probe("CPU : AVX = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VNNI = 1 |")
    st = runtime.check_runtime(flags={"avx", "avx2"})
    assert not st.ok and set(st["missing"]) == {"AVX512", "AVX512_VNNI"}
    assert "CMAKE_ARGS" in st["reason"] and "--no-cache-dir" in st["reason"]
    assert runtime.check_runtime(flags={"avx", "avx2", "avx512f", "avx512_vnni"}).ok


def test_an_amx_build_is_refused(fake_probe):
    fake_probe("CPU : AVX2 = 1 | AMX_INT8 = 1 |")
    st = runtime.check_runtime(flags={"avx2", "amx_int8"})
    assert not st.ok and "AMX" in st["reason"] and "GGML_NATIVE=ON" in st["reason"]


def test_runtime_script_runs_without_lumenrec(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(runtime.__file__)
    out = subprocess.run([sys.executable, "-I", str(script), "--cmake-args"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("-DGGML_NATIVE=OFF")

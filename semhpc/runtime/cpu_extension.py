"""Intel Extension for TensorFlow (the mkl flavour): did its plugin load into this process, and
with which CPU backend?

Stock TensorFlow 2.15 loads every library in `site-packages/tensorflow-plugins` when it is
imported; the extension's `libitex_cpu.so` then loads one CPU backend, built for AVX512 or AVX2,
by what the CPU supports. A plugin that fails to load leaves no more than a line in TensorFlow's
log, so the answer is read from the libraries this process really mapped (`/proc/self/maps`),
after `import tensorflow`. `semhpc doctor` reports it (`stack_report`).
"""

from __future__ import annotations

import importlib.metadata
import os

DISTRIBUTION = "intel-extension-for-tensorflow"
PLUGIN = "libitex_cpu.so"
BACKENDS = {"libitex_cpu_internal_avx512.so": "AVX512", "libitex_cpu_internal_avx2.so": "AVX2"}
HOW_TO_ADD = "containers/build.sh --flavor mkl, or scripts/bootstrap.sh --mkl"


def mapped_libraries(maps: str = "/proc/self/maps") -> set[str]:
    """File names of the shared libraries mapped into this process."""
    try:
        with open(maps) as fh:
            return {os.path.basename(line.split()[-1]) for line in fh if ".so" in line and "/" in line}
    except OSError:
        return set()


def cpu_extension_report(libraries: set[str] | None = None, cpu_bf16: bool = False) -> dict:
    """`itex` (installed version or None), `itex_loaded`, `itex_backend` (AVX512/AVX2), a one-line
    `cpu_extension` verdict, and `warnings` (installed but not loaded). Call after importing
    TensorFlow; `libraries` defaults to this process's."""
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        version = None
    libraries = mapped_libraries() if libraries is None else libraries
    loaded = PLUGIN in libraries
    backend = next((isa for library, isa in BACKENDS.items() if library in libraries), None)
    report = {"itex": version, "itex_loaded": loaded, "itex_backend": backend, "warnings": []}
    if loaded:
        amp = "; bfloat16 on this CPU's AVX512_BF16/AMX" if cpu_bf16 else "; no native bfloat16 on this CPU"
        report["cpu_extension"] = (f"Intel Extension for TensorFlow {version} loaded, "
                                   f"{backend or 'unknown'} CPU backend{amp}")
    elif version:
        report["cpu_extension"] = f"Intel Extension for TensorFlow {version} installed but NOT loaded"
        report["warnings"].append(
            f"{DISTRIBUTION} {version} is installed but TensorFlow did not load its plugin ({PLUGIN}): "
            "run `python -c 'import tensorflow'` with TF_CPP_MIN_LOG_LEVEL=0 to see why; "
            "training uses stock TensorFlow's kernels")
    else:
        report["cpu_extension"] = f"none: stock TensorFlow oneDNN kernels (the mkl flavour adds it: {HOW_TO_ADD})"
    return report

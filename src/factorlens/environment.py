"""Where a result was made: the machine and the numerical libraries, recorded next to every figure.

Training is deterministic for one seed on one kind of CPU, but the floating-point kernels torch picks
(oneDNN / MKL code paths chosen per instruction set: AVX2, AVX-512, AVX512-BF16...) differ between CPU
kinds, so the same seed diverges across machines after a few hundred steps. ``metrics.json``,
``summary.json``, the benchmark tables and the HTML report therefore carry :func:`machine_record`.
"""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

from factorlens import openmp

CPUINFO = Path("/proc/cpuinfo")


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name (``lscpu``'s "Model name": ``/proc/cpuinfo``), else ``platform.processor()``."""
    fields = _cpuinfo_fields(_read_cpuinfo() if cpuinfo is None else cpuinfo)
    return fields.get("model name") or platform.processor() or platform.machine() or "unknown"


def _cpuinfo_fields(cpuinfo: str) -> dict[str, str]:
    """The ``key: value`` lines of the first processor in ``/proc/cpuinfo``."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def onednn_version(config_text: str | None = None) -> str | None:
    """oneDNN's version from ``torch.__config__.show()`` (``Intel(R) MKL-DNN v3.12.0``), or None."""
    if config_text is None:
        import torch

        config_text = torch.__config__.show()
    match = re.search(r"(?:oneDNN|MKL-DNN)\s+v?(\d+(?:\.\d+)+)", config_text)
    return match.group(1) if match else None


def gpu_names() -> list[str]:
    """The CUDA devices torch sees (empty without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def bf16_matrix_units(cpuinfo: str | None = None) -> str | None:
    """The CPU's bf16 matrix instructions: ``"amx_bf16"`` (Intel AMX tiles, Sapphire Rapids and later),
    ``"avx512_bf16"`` (bf16 dot products in AVX-512 registers, e.g. AMD Zen 4), or None."""
    flags = set(_cpuinfo_fields(_read_cpuinfo() if cpuinfo is None else cpuinfo).get("flags", "").split())
    for unit in ("amx_bf16", "avx512_bf16"):
        if unit in flags:
            return unit
    return None


def resolve_precision(requested: str, device_type: str, cpuinfo: str | None = None) -> tuple[str, str]:
    """``train.precision`` as run: ``(precision, why)``; ``"auto"`` becomes ``"bf16"`` or ``"fp32"``.

    auto chooses bf16 autocast on CUDA GPUs that support it and on CPUs with bf16 matrix instructions
    (AMX-BF16 or AVX512-BF16: every model's training step measured 1.1-1.7x faster in bf16 on an AMD EPYC
    with AVX512-BF16, docs/performance.md), fp32 on CPUs without them, which emulate bf16 and run slower.
    """
    if requested != "auto":
        return requested, "configured"
    if device_type == "cuda":
        import torch

        if torch.cuda.is_bf16_supported():
            return "bf16", "auto: this GPU supports bf16"
        return "fp32", "auto: this GPU has no bf16 support"
    units = bf16_matrix_units(cpuinfo)
    if units is not None:
        return "bf16", f"auto: the CPU has {units.upper().replace('_', '-')} instructions"
    return "fp32", "auto: the CPU has no bf16 matrix instructions (bf16 would be emulated)"


def machine_record(precision: str | None = None) -> dict:
    """The machine and libraries a result was made with, as a JSON-ready dict.

    Args:
        precision: the arithmetic of the figures (``fp32`` / ``bf16``: ``train.precision``); None when
            the caller has no single one (e.g. an evaluation of runs trained differently).
    """
    import numpy as np
    import torch

    cpuinfo = _read_cpuinfo()
    fields = _cpuinfo_fields(cpuinfo)
    return {
        "cpu_model": cpu_model(cpuinfo),
        # family / model / stepping tell CPU generations apart when the model name is generic ("AMD EPYC").
        "cpu_family_model_stepping": "/".join(
            fields.get(key, "?") for key in ("cpu family", "model", "stepping")
        ),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "bf16_units": bf16_matrix_units(cpuinfo),
        # Set by the factorlens command before torch loads (factorlens.openmp); "unset" = libgomp's default.
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "omp_wait_policy_reason": openmp.decision,
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu_names(),
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "onednn": onednn_version() if torch.backends.mkldnn.is_available() else None,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "precision": precision,
    }


def describe_machine(record: dict) -> str:
    """One line for tables and logs: ``AMD EPYC (25/17/1, AVX512), 2 CPUs (2 torch threads), no GPU;
    torch 2.13.0+cpu, oneDNN 3.12.0, numpy 2.4.6; fp32``."""
    gpu = ", ".join(record.get("gpu") or []) or "no GPU"
    cpu = record.get("cpu_model", "unknown CPU")
    details = ", ".join(
        str(v) for v in (record.get("cpu_family_model_stepping"), record.get("cpu_capability")) if v
    )
    threads = record.get("torch_threads")
    cpus = f"{record.get('logical_cpus', '?')} CPUs" + (f" ({threads} torch threads)" if threads else "")
    text = f"{cpu}{f' ({details})' if details else ''}, {cpus}, {gpu}; "
    text += f"torch {record.get('torch')}, oneDNN {record.get('onednn') or 'n/a'}, "
    text += f"numpy {record.get('numpy')}"
    if record.get("omp_wait_policy", "unset") != "unset":
        text += f", OMP_WAIT_POLICY={record['omp_wait_policy']}"
    if record.get("precision"):
        text += f"; {record['precision']}"
    return text


def machine_line(precision: str | None = None) -> str:
    """``machine: <describe_machine(machine_record(precision))>``, the line benchmark tables print."""
    return "machine: " + describe_machine(machine_record(precision))


def _read_cpuinfo() -> str:
    try:
        return CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""

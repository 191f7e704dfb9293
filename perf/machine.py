"""The machine a figure was measured on: every perf result records this beside its numbers.

CPUs of the same cloud kind differ (an AVX-512 VNNI EPYC runs int8 IS-Net several times
faster than an AVX2-only one), so a figure without its CPU model and ISA flags cannot be
compared with anything. The load average is recorded too: the machines are shared.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess

# The flags that decide CPU inference speed (SIMD width, FMA, int8 dot products, bf16, AMX).
ISA_PATTERN = re.compile(r"^(avx.*|fma|f16c|.*vnni.*|amx.*|.*bf16.*|sse4_2)$")


def lscpu() -> dict[str, str]:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v}


def cpu_flags(info: dict[str, str] | None = None) -> list[str]:
    """The speed-relevant ISA flags, from lscpu, else /proc/cpuinfo."""
    flags = (info if info is not None else lscpu()).get("Flags", "")
    if not flags:
        try:
            with open("/proc/cpuinfo") as f:
                flags = next((line.partition(":")[2] for line in f if line.startswith("flags")), "")
        except OSError:
            flags = ""
    return sorted(f for f in flags.split() if ISA_PATTERN.match(f))


def int8_class(flags: list[str]) -> str:
    """Which of the issue's two machine classes this is: the int8 target differs between them."""
    if any("vnni" in f for f in flags):
        return "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX-VNNI"
    return "AVX-512 (no VNNI)" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "pre-AVX2")


def machine_info() -> dict:
    info = lscpu()
    flags = cpu_flags(info)
    return {
        "cpu_model": info.get("Model name", platform.processor() or "unknown"),
        # a hypervisor may show only "AMD EPYC": family/model tell the generation (25/17: Zen 4)
        "cpu_family_model_stepping": "/".join(info.get(k, "?") for k in ("CPU family", "Model", "Stepping")),
        "isa_flags": flags,
        "int8_class": int8_class(flags),
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
    }


def describe(info: dict) -> str:
    """One line for logs and tables: model, class, cores, load."""
    load = ", ".join(f"{x:.2f}" for x in info["load_average"])
    return (f"{info['cpu_model']} (family/model/stepping {info['cpu_family_model_stepping']}; {info['int8_class']}; "
            f"{info['cpus']} CPUs; load average {load})")


if __name__ == "__main__":
    import json

    print(json.dumps(machine_info(), indent=2))

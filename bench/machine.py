"""What the report says about the machine and the run: CPU count and model, RAM, kernel, tool
versions, git commit, date, the exact command, and signs of CPU contention (the 1-minute load
average, and compiler processes of other people's builds seen at the start or end of a run; both
read from /proc, nothing is touched).
"""

import os
import pathlib
import platform
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUSY = ("rustc", "cc1", "cargo", "ld", "cc", "clang", "cargo-nextest")


def load():
    return round(os.getloadavg()[0], 2)


def compilers():
    """Names of compiler/linker processes running now (other engineers' builds distort timings)."""
    seen = set()
    for d in pathlib.Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                comm = (d / "comm").read_text().strip()
            except OSError:
                continue
            if comm in BUSY:
                seen.add(comm)
    return sorted(seen)


def _run(cmd):
    try:
        return subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def describe(command, seconds):
    cpu = ""
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    versions = _run([str(ROOT / ".venv" / "bin" / "python"), "-c",
                     "import boto3, botocore, moto, sys; print(f'Python {sys.version.split()[0]}, "
                     "boto3 {boto3.__version__}, botocore {botocore.__version__}, moto {moto.__version__}')"])
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "rustc": _run(["rustc", "--version"]),
        "python": versions,
        "commit": commit(),
        "command": " ".join(command),
        "seconds": round(seconds),
    }


def commit():
    """The checked-out commit (`+` if the work tree has changes): what run.sh built the binaries from
    when it is read before the runs."""
    head = _run(["git", "rev-parse", "--short", "HEAD"])
    dirty = _run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src", "sim", "Cargo.lock"])
    return f"{head}+" if dirty else head

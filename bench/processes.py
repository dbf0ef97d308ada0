"""Where the CPU went: per-process CPU time read from /proc, for the benchmarks' breakdowns."""
from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")

# the platform's processes by the module they run (``python -m MODULE``), named as make dev names them
PLATFORM_MODULES = {
    "services.accounts": "accounts",
    "services.clicks": "clicks",
    "services.clicks.worker": "click-worker",
    "services.settlement": "settlement",
    "services.settlement.run_payouts": "payouts",
    "services.settlement.run_batch": "batch",
    "services.gateway": "gateway",
}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of one process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid in _pids():
        parent = _parent(pid)
        if parent is not None:
            children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            found.append(child)
            todo.append(child)
    return found


def label_of(pid: int) -> str | None:
    """A platform process's name from its command line (``-m services.accounts`` is accounts), the
    broker's and the database's by their executables; None for anything else."""
    argv = _cmdline(pid)
    if "-m" in argv and argv.index("-m") + 1 < len(argv):
        return PLATFORM_MODULES.get(argv[argv.index("-m") + 1])
    exe = os.path.basename(argv[0]) if argv else ""
    if exe == "beam.smp" or (argv and "beam.smp" in argv[0]):
        return "rabbitmq"
    if exe.startswith("postgres") or (argv and argv[0].startswith("postgres:")):
        return "postgresql"
    return None


def snapshot(root: int) -> dict[str, float]:
    """CPU seconds so far of the platform under ``root`` by process name, with RabbitMQ and
    PostgreSQL (every process of each: their worker processes are not our children)."""
    totals: dict[str, float] = {}
    for pid in descendants(root):
        label = label_of(pid)
        if label and label not in ("rabbitmq", "postgresql"):
            totals[label] = totals.get(label, 0.0) + cpu_seconds(pid)
    for pid in _pids():
        label = label_of(pid)
        if label in ("rabbitmq", "postgresql"):
            totals[label] = totals.get(label, 0.0) + cpu_seconds(pid)
    return totals


def breakdown(before: dict[str, float], after: dict[str, float], wall_seconds: float, extra: dict[str, float] | None = None) -> str:
    """``name 41% ...`` of the machine's CPU (all cores) over the interval, busiest first."""
    cores = os.cpu_count() or 1
    used = {name: after.get(name, 0.0) - before.get(name, 0.0) for name in set(before) | set(after)}
    used.update(extra or {})
    total = cores * wall_seconds
    parts = [f"{name} {100 * seconds / total:.0f}%" for name, seconds in sorted(used.items(), key=lambda kv: -kv[1]) if seconds > 0]
    idle = max(0.0, total - sum(used.values()))
    return ", ".join(parts + [f"other/idle {100 * idle / total:.0f}%"])

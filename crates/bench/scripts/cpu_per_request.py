#!/usr/bin/env python3
"""CPU time a running chatd spends per request, by thread, while wrk drives it.

    python3 cpu_per_request.py PID SECONDS WRK_ARGS...
    e.g. python3 cpu_per_request.py $(pgrep -n chatd) 10 -t1 -c64 -s post.lua http://127.0.0.1:8080

Reads utime + stime of every thread of PID from /proc before and after one wrk run of
SECONDS and divides by the requests wrk completed. Threads are grouped by name (trailing
digits dropped). Threads that ended during the run (tantivy starts a new indexing thread
at every index commit) are only in the process total: their share is printed as the
difference. CPU time, unlike throughput, barely moves with this machine's drift.
"""
import collections
import os
import re
import subprocess
import sys

pid, seconds = sys.argv[1], sys.argv[2]
tick = os.sysconf("SC_CLK_TCK")


def cpu_ticks(stat_path):
    fields = open(stat_path).read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def snapshot():
    threads = collections.Counter()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            threads[re.sub(r"\d+$", "", name)] += cpu_ticks(f"/proc/{pid}/task/{tid}/stat")
        except OSError:
            continue  # the thread ended meanwhile
    return cpu_ticks(f"/proc/{pid}/stat"), threads


process_before, before = snapshot()
out = subprocess.run(["wrk", "-d", f"{seconds}s", *sys.argv[3:]], capture_output=True, text=True).stdout
process_after, after = snapshot()
requests = int(re.search(r"(\d+) requests in", out).group(1))
print(f"{requests} requests, {requests / float(seconds):.0f} req/s")
live = 0.0
for name in sorted(after, key=lambda n: before[n] - after[n]):
    spent = (after[name] - before[name]) / tick
    live += spent
    if spent > 0:
        print(f"  {name:20s} {spent * 1e6 / requests:6.1f} us/request")
process = (process_after - process_before) / tick
print(f"  {'(ended threads)':20s} {(process - live) * 1e6 / requests:6.1f} us/request")
print(f"  {'whole process':20s} {process * 1e6 / requests:6.1f} us/request ({process / float(seconds):.2f} cores)")

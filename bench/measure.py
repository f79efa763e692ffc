"""Runs a command N times and prints the median wall and CPU (user+sys of the child)
milliseconds: `python3 measure.py LABEL RUNS CMD...`. Used by bench/startup.sh."""
import os
import statistics
import subprocess
import sys
import time

label, runs, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # warm-up
walls, cpus = [], []
for _ in range(runs):
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    walls.append((time.perf_counter() - start) * 1000)
    cpus.append((usage.ru_utime + usage.ru_stime) * 1000)
    err = child.stderr.read()
    if status != 0:
        sys.exit(f"{label}: exit status {status}: {err.decode(errors='replace')}")
print(f"{label:<34} wall {statistics.median(walls):7.1f} ms   cpu {statistics.median(cpus):7.1f} ms")

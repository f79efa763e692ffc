"""Gateway benchmark: Direct (load generator -> mock vendor), `arcllm serve` and LiteLLM
proxy, side by side in one run. Started by run.sh (which builds the tools and the venv);
method and settings in README.md beside this file, results in docs/benchmarks.md.

Every system runs at the same time, pinned: the gateways on one core, the mock vendor and
the load generator on the other. Scenarios are interleaved (each scenario runs against every
system before the next scenario starts), so a noisy minute hits all systems alike.
"""
import argparse
import datetime
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "bench" / "gateway"
RELEASE = ROOT / "target" / "release"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CHUNKS = 20  # words in the mock's answer, one streamed chunk each
CHUNK_DELAY_MS = 5
# Every process of the benchmark (mock, generator, gateways) runs at the same raised
# priority when the user may raise it (root), so that other work on the machine disturbs
# the systems less; all systems get the same. Set by main().
NICE = []


def log(message):
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes and /proc


def children_map():
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            parents.setdefault(int(fields[1]), []).append(int(entry))
    return parents


def tree(pid):
    """The process and all its live descendants (LiteLLM may run worker processes)."""
    parents, out, todo = children_map(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def cpu_seconds(pids):
    total = 0
    for p in pids:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def sched_seconds(pids):
    """(running, waiting on a run queue) seconds of every thread of `pids`
    (/proc/<pid>/task/<tid>/schedstat): how much of the core the gateway got when it wanted it."""
    run = wait = 0
    for p in pids:
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            try:
                # arcllm's background store thread runs at the lowest priority by design:
                # its waits are not the gateway waiting for the core.
                if Path(f"/proc/{p}/task/{t}/comm").read_text().strip() == "arcllm-stores":
                    continue
                fields = Path(f"/proc/{p}/task/{t}/schedstat").read_text().split()
            except OSError:
                continue
            run += int(fields[0])
            wait += int(fields[1])
    return run / 1e9, wait / 1e9


def raise_priority(pid):
    """The scheduler shares a core between autogroups (one per session) before it looks at
    nice values, so the process's autogroup gets the niceness too."""
    if NICE:
        try:
            Path(f"/proc/{pid}/autogroup").write_text(NICE[2])
        except OSError as e:
            log(f"cannot raise the priority of {pid}'s autogroup: {e}")


def status_kib(pid, key):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss(pids):
    """Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0)."""
    for p in pids:
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")
        except OSError:
            pass


def peak_rss_mib(pids):
    return sum(status_kib(p, "VmHWM") for p in pids) / 1024


class Server:
    def __init__(self, name, cmd, cpu, env=None, cwd=None, logdir=None):
        self.name = name
        self.log_path = logdir / f"{name}.log"
        self.log = open(self.log_path, "w")
        full_env = dict(os.environ)
        for key, value in (env or {}).items():
            if value is None:
                full_env.pop(key, None)
            else:
                full_env[key] = value
        self.proc = subprocess.Popen(
            NICE + ["taskset", "-c", str(cpu)] + cmd,
            stdout=subprocess.PIPE if name in ("mock", "floor") else self.log,
            stderr=self.log,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
        raise_priority(self.proc.pid)

    def pids(self):
        return tree(self.proc.pid)

    def check_alive(self):
        if self.proc.poll() is not None:
            sys.exit(f"{self.name} exited with {self.proc.returncode}; its log: {self.log_path}")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def wait_http(url, server, seconds, headers=None):
    deadline = time.time() + seconds
    while time.time() < deadline:
        server.check_alive()
        try:
            request = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    sys.exit(f"{server.name} did not answer {url} within {seconds} s; its log: {server.log_path}")


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- systems


def start_mock(cpu, logdir):
    mock = Server(
        "mock",
        [str(RELEASE / "arcllm-mock-vendor"), "--chunks", str(CHUNKS),
         "--chunk-delay-ms", str(CHUNK_DELAY_MS)],
        cpu,
        logdir=logdir,
    )
    address = mock.proc.stdout.readline().decode().strip()
    if not address:
        mock.check_alive()
        sys.exit("the mock vendor printed no address")
    return mock, address


def start_floor(mock_address, cpu, logdir):
    """`arcllm-floor-proxy`: forwards bytes to the mock with arcllm's HTTP stack and nothing
    else, so what it adds over direct is what any gateway adds here (src/bin/floor_proxy.rs)."""
    floor = Server("floor", [str(RELEASE / "arcllm-floor-proxy"), "--upstream", f"http://{mock_address}"],
                   cpu, logdir=logdir)
    address = floor.proc.stdout.readline().decode().strip()
    if not address:
        floor.check_alive()
        sys.exit("the floor proxy printed no address")
    return floor, int(address.rsplit(":", 1)[1])


# `arcllm serve` variants: the config of each is arcllm.toml with these changes.
ARCLLM_VARIANTS = {
    # The default: retry(fallback(adapter)), fresh module instances for every request.
    "arcllm": [],
    # The same chain with `share_state = true`: a request reuses an idle store of the chain.
    "arcllm-shared": [("[modules.retry]\nenabled = true\n", "[modules.retry]\nenabled = true\nshare_state = true\n"),
                      ("[modules.fallback]\nenabled = true\n", "[modules.fallback]\nenabled = true\nshare_state = true\n")],
    # No module: the bare adapter behind the gateway (no wasm on the path).
    "arcllm-bare": [("[modules.retry]\nenabled = true\n", "[modules.retry]\nenabled = false\n"),
                    ("[modules.fallback]\nenabled = true\n", "[modules.fallback]\nenabled = false\n")],
}
# `arcllm-baseline`: the default chain served by another `arcllm` binary (--baseline), to
# compare two builds in one run.
ARCLLM_VARIANTS["arcllm-baseline"] = []
SYSTEMS = ["direct", "floor", *ARCLLM_VARIANTS, "litellm"]
# The binary each variant runs (--baseline sets arcllm-baseline's).
BINARIES = {}


def arcllm_binary(variant):
    return BINARIES.get(variant, RELEASE / "arcllm")


def start_arcllm(variant, mock_address, cpu, logdir, api_key):
    """`arcllm serve`: the config in arcllm.toml (changed per variant), one provider file per
    mock variant (and one per fallback target)."""
    binary = arcllm_binary(variant)
    has_serve = subprocess.run([str(binary), "serve", "--help"], capture_output=True)
    if has_serve.returncode != 0:
        sys.exit("this arcllm has no `serve` command (build it from a branch that has the gateway, "
                 "or run with --systems direct,litellm)")
    work = logdir / variant
    (work / "providers").mkdir(parents=True, exist_ok=True)
    # The adapter appends /v1/chat/completions to the base URL.
    for name, path in [("mock0", ""), ("mock0b", ""), ("mock20", "/ms/20"), ("mock20b", "/ms/20")]:
        (work / "providers" / f"{name}.toml").write_text(
            "[provider]\n"
            'api_format = "openai-chat"\n'
            f'base_url = "http://{mock_address}{path}"\n'
            'api_key_env = "ARCLLM_BENCH_VENDOR_KEY"\n'
            'default_model = "mock-model"\n'
        )
    config = (HERE / "arcllm.toml").read_text()
    for old, new in ARCLLM_VARIANTS[variant]:
        if old not in config:
            sys.exit(f"arcllm.toml: the {variant} variant expects {old!r} in it")
        config = config.replace(old, new)
    (work / "arcllm.toml").write_text(config)
    port = free_port()
    server = Server(
        variant,
        [str(binary), "serve", "--config", str(work / "arcllm.toml"),
         "--listen", f"127.0.0.1:{port}"],
        cpu,
        # RUST_LOG unset: the default level (info), so the access log is written.
        env={"ARCLLM_BENCH_VENDOR_KEY": "sk-mock", "ARCLLM_BENCH_GATEWAY_KEYS": api_key,
             "RUST_LOG": None},
        cwd=work,
        logdir=logdir,
    )
    wait_http(f"http://127.0.0.1:{port}/readyz", server, 60)
    return server, port


def start_litellm(mock_address, cpu, logdir, api_key):
    config = (HERE / "litellm.yaml").read_text().replace("{MOCK}", mock_address)
    path = logdir / "litellm.yaml"
    path.write_text(config)
    port = free_port()
    env = {
        # Documented in README.md ("LiteLLM settings").
        "LITELLM_MASTER_KEY": api_key,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "DATABASE_URL": None,  # removed: no database
    }
    server = Server(
        "litellm",
        [str(HERE / ".venv" / "bin" / "litellm"), "--config", str(path), "--host",
         "127.0.0.1", "--port", str(port), "--num_workers", "1"],
        cpu,
        env=env,
        cwd=logdir,
        logdir=logdir,
    )
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", server, 120)
    return server, port


# ---------------------------------------------------------------- scenarios


def scenarios(quick):
    # Streams first: the peak RSS at 256 streams is then that of a process that has not been
    # through an overload (memory a process took stays mapped afterwards).
    out = [{"service_ms": 0, "stream": True, "concurrency": c} for c in ([256] if quick else [16, 256])]
    services = [0] if quick else [0, 20]
    concurrencies = [1, 64] if quick else [1, 16, 64, 256]
    rates = [1000] if quick else [500, 1000, 2000]
    for service in services:
        for c in concurrencies:
            out.append({"service_ms": service, "stream": False, "concurrency": c})
        for r in rates:
            out.append({"service_ms": service, "stream": False, "rate": r})
    return out


def target(system, scenario, ports, mock_address):
    service = scenario["service_ms"]
    if system in ("direct", "floor"):
        path = "/v1" if service == 0 else f"/ms/{service}/v1"
        host = mock_address if system == "direct" else f"127.0.0.1:{ports['floor']}"
        return f"http://{host}{path}/chat/completions", "mock-model"
    if system in ARCLLM_VARIANTS:
        return f"http://127.0.0.1:{ports[system]}/v1/chat/completions", f"mock{service}"
    return f"http://127.0.0.1:{ports['litellm']}/v1/chat/completions", f"mock-{service}ms"


def run_loadgen(url, model, scenario, duration, warmup, cpu, api_key):
    cmd = NICE + ["taskset", "-c", str(cpu), str(RELEASE / "arcllm-loadgen"), "--url", url,
           "--model", model, "--duration", str(duration), "--warmup", str(warmup),
           "--chunks", str(CHUNKS), "--api-key", api_key, "--timeout", "10"]
    if scenario["stream"]:
        cmd.append("--stream")
    if "rate" in scenario:
        cmd += ["--rate", str(scenario["rate"])]
    else:
        cmd += ["--concurrency", str(scenario["concurrency"])]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"loadgen failed ({done.returncode}): {done.stderr}")
    return json.loads(done.stdout)


def settle(server, seconds=30):
    """Waits until the gateway is idle (under 5% of a core for half a second): a gateway
    that fell behind keeps working through its backlog after the generator stopped, and
    that work must not land in the next run. False if it is still busy after `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        before = cpu_seconds(server.pids())
        time.sleep(0.5)
        if cpu_seconds(server.pids()) - before < 0.025:
            return True
    return False


def gateway_overhead(port, api_key):
    """(sum seconds, count) of arcllm's `arcllm_gateway_overhead_seconds` histogram: the
    time requests spent in the gateway outside the model's stack."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"authorization": f"Bearer {api_key}"})
    total = count = 0.0
    with urllib.request.urlopen(request, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("arcllm_gateway_overhead_seconds_sum"):
                total += float(line.rsplit(" ", 1)[1])
            elif line.startswith("arcllm_gateway_overhead_seconds_count"):
                count += float(line.rsplit(" ", 1)[1])
    return total, count


def measure(system, scenario, servers, ports, mock_address, args, api_key):
    url, model = target(system, scenario, ports, mock_address)
    overhead_before = gateway_overhead(ports[system], api_key) if system in ARCLLM_VARIANTS else None
    server = servers.get(system)
    pids = server.pids() if server else []
    reset_peak_rss(pids)
    cpu_before = cpu_seconds(pids)
    sched_before = sched_seconds(pids)
    mock_before = cpu_seconds(servers["mock"].pids())
    result = run_loadgen(url, model, scenario, args.duration, args.warmup, args.load_cpu, api_key)
    result["system"] = system
    result["service_ms"] = scenario["service_ms"]
    if server:
        server.check_alive()
        used = cpu_seconds(pids) - cpu_before
        result["gateway_cpu_s"] = used
        result["cpu_s_per_1k"] = used / result["total_ok"] * 1000 if result["total_ok"] else None
        result["peak_rss_mib"] = peak_rss_mib(pids)
        run, wait = (a - b for a, b in zip(sched_seconds(pids), sched_before))
        result["core_share"] = run / (run + wait) if run + wait > 0 else None
    result["mock_cpu_s"] = cpu_seconds(servers["mock"].pids()) - mock_before
    if overhead_before:
        total, count = gateway_overhead(ports[system], api_key)
        if count > overhead_before[1]:
            result["outside_stack_mean_us"] = (total - overhead_before[0]) / (count - overhead_before[1]) * 1e6
    return result


# ---------------------------------------------------------------- report


def fmt_ms(us):
    return "—" if us is None else f"{us / 1000:.3f}"


def fmt_added(us):
    return "—" if us is None else f"{us / 1000:+.3f}"


def fmt_rps(rps):
    return f"{rps:,.0f}" if rps >= 100 else f"{rps:.1f}"


def load_label(r):
    return f"c={r['concurrency']}" if r["mode"] == "concurrency" else f"{r['rate']:.0f} RPS"


def pct(r, key, q):
    block = r.get(key)
    return None if not block else block[q]


def tables(results):
    direct = {}
    for r in results:
        if r["system"] == "direct":
            direct[(r["service_ms"], r["stream"], load_label(r))] = r
    lines = [
        "| service | load | system | achieved RPS | success | p50 ms | p90 ms | p99 ms "
        "| added p50 ms | added p99 ms | gateway CPU s / 1k req | req per CPU-s | core share | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["stream"]:
            continue
        if r.get("skipped"):
            lines.append(f"| {r['service_ms']} ms | {load_label(r)} | {r['system']} | not run: "
                         f"{r['skipped']} |||||||||||")
            continue
        base = direct.get((r["service_ms"], False, load_label(r)))
        added = lambda q: (None if r["system"] == "direct" or not base or pct(r, "latency_us", q) is None
                           or pct(base, "latency_us", q) is None
                           else pct(r, "latency_us", q) - pct(base, "latency_us", q))
        lines.append(
            f"| {r['service_ms']} ms | {load_label(r)} | {r['system']} | {fmt_rps(r['rps'])} "
            f"| {100 * r['success_rate']:.2f}% | {fmt_ms(pct(r, 'latency_us', 'p50'))} "
            f"| {fmt_ms(pct(r, 'latency_us', 'p90'))} | {fmt_ms(pct(r, 'latency_us', 'p99'))} "
            f"| {fmt_added(added('p50'))} | {fmt_added(added('p99'))} "
            f"| {'—' if r.get('cpu_s_per_1k') is None else format(r['cpu_s_per_1k'], '.3f')} "
            f"| {'—' if not r.get('cpu_s_per_1k') else format(1000 / r['cpu_s_per_1k'], ',.0f')} "
            f"| {'—' if r.get('core_share') is None else format(100 * r['core_share'], '.0f') + '%'} "
            f"| {'—' if r.get('peak_rss_mib') is None else format(r['peak_rss_mib'], '.1f')} |"
        )
    lines += [
        "",
        "| streaming load | system | achieved RPS | success | TTFT p50 ms | TTFT p99 ms "
        "| added TTFT p50 ms | added TTFT p99 ms | content events / answer | gap p50 ms "
        "| gap p99 ms | gap stdev ms | gateway CPU s / 1k req | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if not r["stream"]:
            continue
        base = direct.get((r["service_ms"], True, load_label(r)))
        added = lambda q: (None if r["system"] == "direct" or not base or pct(r, "ttft_us", q) is None
                           or pct(base, "ttft_us", q) is None
                           else pct(r, "ttft_us", q) - pct(base, "ttft_us", q))
        gaps = r.get("gap_us") or {}
        events = (gaps.get("count", 0) / r["ok"] + 1) if r["ok"] else 0
        lines.append(
            f"| c={r['concurrency']} | {r['system']} | {fmt_rps(r['rps'])} "
            f"| {100 * r['success_rate']:.2f}% | {fmt_ms(pct(r, 'ttft_us', 'p50'))} "
            f"| {fmt_ms(pct(r, 'ttft_us', 'p99'))} | {fmt_added(added('p50'))} "
            f"| {fmt_added(added('p99'))} | {events:.1f} | {fmt_ms(gaps.get('p50'))} "
            f"| {fmt_ms(gaps.get('p99'))} | {fmt_ms(gaps.get('stdev'))} "
            f"| {'—' if r.get('cpu_s_per_1k') is None else format(r['cpu_s_per_1k'], '.3f')} "
            f"| {'—' if r.get('peak_rss_mib') is None else format(r['peak_rss_mib'], '.1f')} |"
        )
    return "\n".join(lines)


def verdicts(results, systems):
    def find(system, service, stream, label):
        for r in results:
            if r.get("skipped"):
                continue
            if (r["system"], r["service_ms"], r["stream"], load_label(r)) == (system, service, stream, label):
                return r
        return None

    def sustainable(system):
        ok = [r["rps"] for r in results
              if r["system"] == system and not r["stream"] and r["service_ms"] == 0
              and not r.get("skipped") and r["success_rate"] == 1.0]
        return max(ok) if ok else 0.0

    lines = ["| target | system | measured | verdict |", "|---|---|---|---|"]
    sus = {s: sustainable(s) for s in systems}
    chains = [v for v in ("arcllm", "arcllm-shared") if v in systems]
    for v in chains:
        if "litellm" in systems:
            ratio = sus[v] / sus["litellm"] if sus["litellm"] else float("inf")
            lines.append(
                f"| ≥ 10× LiteLLM's sustainable RPS at 100% success | {v} | {sus[v]:,.0f} against "
                f"LiteLLM's {sus['litellm']:,.0f} (direct, the generator's ceiling: "
                f"{sus.get('direct', 0):,.0f}): **{ratio:.1f}×** | {'met' if ratio >= 10 else 'missed'} |")
    for v in chains:
        for service in (0, 20):
            a, d = find(v, service, False, "1000 RPS"), find("direct", service, False, "1000 RPS")
            if a and d and a["latency_us"] and d["latency_us"]:
                added = (a["latency_us"]["p99"] - d["latency_us"]["p99"]) / 1000
                lines.append(
                    f"| added p99 ≤ 1 ms at 1,000 RPS, chain on ({service} ms vendor) | {v} "
                    f"| {added:+.3f} ms (success {100 * a['success_rate']:.2f}%) "
                    f"| {'met' if added <= 1 and a['success_rate'] == 1.0 else 'missed'} |")
    for v in chains + [x for x in ("arcllm-bare", "floor") if x in systems]:
        a, d = find(v, 0, False, "c=1"), find("direct", 0, False, "c=1")
        if a and d and a["latency_us"] and d["latency_us"]:
            added = a["latency_us"]["mean"] - d["latency_us"]["mean"]
            lines.append(f"| mean added ≤ 50 µs at concurrency 1 | {v} | {added:+.0f} µs "
                         f"| {'met' if added <= 50 else 'missed'} |")
    for v in chains + [x for x in ("arcllm-bare",) if x in systems]:
        r = find(v, 0, True, "c=256")
        if r and r.get("peak_rss_mib") is not None:
            lines.append(f"| RSS ≤ 64 MiB at 256 concurrent streaming requests | {v} "
                         f"| {r['peak_rss_mib']:.1f} MiB (success {100 * r['success_rate']:.2f}%) "
                         f"| {'met' if r['peak_rss_mib'] <= 64 else 'missed'} |")
    return "\n".join(lines)


def machine_info(arcllm_version, litellm_version):
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
        except OSError:
            return "?"

    cpu = sh("lscpu | sed -n 's/^Model name: *//p'") or platform.processor()
    mem = sh("free -g | awk '/Mem:/{print $2}'")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{os.cpu_count()} vCPU, {cpu}",
        "memory_gib": mem,
        "kernel": platform.release(),
        "rustc": sh("rustc --version"),
        "arcllm": arcllm_version,
        "litellm": litellm_version,
        "python": platform.python_version(),
        "commit": sh(f"git -C {ROOT} rev-parse --short HEAD"),
        "loadavg_start": os.getloadavg(),
    }


# ---------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (about 2 minutes)")
    parser.add_argument("--systems", default="direct,floor,arcllm,arcllm-shared,litellm",
                        help=f"comma-separated subset of {','.join(SYSTEMS)}")
    parser.add_argument("--gateway-cpu", type=int, default=1)
    parser.add_argument("--load-cpu", type=int, default=0)
    parser.add_argument("--nice", type=int, default=-20,
                        help="niceness of every benchmark process when run as root (0: unchanged)")
    parser.add_argument("--duration", type=float, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per run")
    parser.add_argument("--out", type=Path, help="results directory (default bench/gateway/results/<time>)")
    parser.add_argument("--baseline", type=Path,
                        help="another arcllm binary, run as system arcllm-baseline (added to --systems)")
    args = parser.parse_args()
    args.duration = args.duration or (3.0 if args.quick else 5.0)
    args.warmup = args.warmup or 1.0
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if args.baseline:
        if not args.baseline.is_file():
            sys.exit(f"--baseline: {args.baseline} is not a file")
        BINARIES["arcllm-baseline"] = args.baseline.resolve()
        if "arcllm-baseline" not in systems:
            systems.append("arcllm-baseline")
    elif "arcllm-baseline" in systems:
        sys.exit("--systems: arcllm-baseline needs --baseline PATH")
    for s in systems:
        if s not in SYSTEMS:
            sys.exit(f"--systems: unknown system {s!r} (known: {', '.join(SYSTEMS)})")
    if "direct" not in systems:
        systems.insert(0, "direct")  # the baseline every added figure is against
    global NICE
    if args.nice and os.geteuid() == 0:
        NICE = ["nice", "-n", str(args.nice)]
        raise_priority(os.getpid())  # the generator runs in this process's session
    if shutil.which("taskset") is None:
        sys.exit("taskset (util-linux) is needed to pin the processes")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or HERE / "results" / stamp
    out.mkdir(parents=True, exist_ok=True)
    api_key = "sk-bench-" + secrets.token_hex(16)

    servers, ports = {}, {}
    try:
        servers["mock"], mock_address = start_mock(args.load_cpu, out)
        log(f"mock vendor on {mock_address} (CPU {args.load_cpu})")
        arcllm_version = litellm_version = None
        for variant in ARCLLM_VARIANTS:
            if variant in systems:
                servers[variant], ports[variant] = start_arcllm(variant, mock_address, args.gateway_cpu,
                                                                out, api_key)
                arcllm_version = subprocess.run([str(RELEASE / "arcllm"), "--version"],
                                                capture_output=True, text=True).stdout.strip()
                log(f"{variant} serve on {ports[variant]} (CPU {args.gateway_cpu})")
        if "floor" in systems:
            servers["floor"], ports["floor"] = start_floor(mock_address, args.gateway_cpu, out)
            log(f"floor proxy on {ports['floor']} (CPU {args.gateway_cpu})")
        if "litellm" in systems:
            servers["litellm"], ports["litellm"] = start_litellm(mock_address, args.gateway_cpu, out, api_key)
            litellm_version = subprocess.run(
                [str(HERE / ".venv" / "bin" / "python"), "-c",
                 "import importlib.metadata as m; print(m.version('litellm'))"],
                capture_output=True, text=True).stdout.strip()
            log(f"litellm proxy {litellm_version} on {ports['litellm']} (CPU {args.gateway_cpu})")
        info = machine_info(arcllm_version, litellm_version)
        results = []
        plan = scenarios(args.quick)
        started = time.time()
        starters = {v: (lambda v=v: start_arcllm(v, mock_address, args.gateway_cpu, out, api_key))
                    for v in ARCLLM_VARIANTS}
        starters["litellm"] = lambda: start_litellm(mock_address, args.gateway_cpu, out, api_key)
        starters["floor"] = lambda: start_floor(mock_address, args.gateway_cpu, out)
        failed_rate = {}  # (system, service_ms) -> the lowest fixed rate it failed
        for i, scenario in enumerate(plan, 1):
            for system in systems:
                key = (system, scenario["service_ms"])
                if "rate" in scenario and key in failed_rate:
                    results.append({"system": system, "service_ms": scenario["service_ms"],
                                    "stream": False, "mode": "rate", "rate": scenario["rate"],
                                    "skipped": f"failed at {failed_rate[key]:,} RPS already"})
                    log(f"[{i}/{len(plan)}] {system:<8} {scenario['rate']} RPS skipped: "
                        f"{results[-1]['skipped']}")
                    continue
                r = measure(system, scenario, servers, ports, mock_address, args, api_key)
                results.append(r)
                if "rate" in scenario and r["success_rate"] < 0.99:
                    failed_rate[key] = scenario["rate"]
                if system in starters and not settle(servers[system]):
                    log(f"{system} still busy 30 s after the run: restarting it")
                    servers[system].stop()
                    servers[system], ports[system] = starters[system]()
                    r["restarted_after"] = True
                lat = r["latency_us"] or {}
                log(f"[{i}/{len(plan)}] {system:<8} {scenario['service_ms']:>2} ms "
                    f"{'stream ' if r['stream'] else ''}{load_label(r):<9} rps {r['rps']:9,.0f} "
                    f"ok {100 * r['success_rate']:6.2f}% p50 {fmt_ms(lat.get('p50'))} "
                    f"p99 {fmt_ms(lat.get('p99'))} errors {r['errors'] or '-'}")
        info["loadavg_end"] = os.getloadavg()
        info["wall_s"] = round(time.time() - started)
    finally:
        for server in servers.values():
            server.stop()
    report = {"machine": info, "settings": {"duration_s": args.duration, "warmup_s": args.warmup,
              "gateway_cpu": args.gateway_cpu, "load_cpu": args.load_cpu, "chunks": CHUNKS,
              "chunk_delay_ms": CHUNK_DELAY_MS, "nice": NICE}, "results": results}
    (out / "results.json").write_text(json.dumps(report, indent=1))
    text = (f"Machine: {json.dumps(info)}\n\n{tables(results)}\n\n{verdicts(results, systems)}\n")
    (out / "results.md").write_text(text)
    print(text)
    log(f"raw results: {out / 'results.json'}")


if __name__ == "__main__":
    main()

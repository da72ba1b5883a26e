#!/usr/bin/env python3
"""Benchmarks of `edgelm serve` for the closing note (not run by ctest).

usage: bench_serve.py CLI MODEL [N_TOKENS]

Prints: one stream through the server against `edgelm run` (tok/s), the
time to the first byte of a stream, throughput with 1, 2 and 4 slots, the
resident memory each extra slot adds, and the time to first token of a
second turn with and without the slot's prefix cache.
"""
import json
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import serve_client as sc  # noqa: E402

CLI, MODEL = sys.argv[1:3]
N = int(sys.argv[3]) if len(sys.argv) > 3 else 128
sc.CLI, sc.MODEL = CLI, MODEL
PROMPT = "Once upon a time"


def run_tps():
    out = subprocess.run([CLI, "run", "-m", MODEL, "-p", PROMPT, "-n", str(N), "--temp", "0",
                          "--ignore-eos"], capture_output=True, text=True)
    return float(re.search(r"gen ([\d.]+) tok/s", out.stderr).group(1))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def one_stream(s):
    body = {"prompt": PROMPT, "max_tokens": N, "temperature": 0, "stream": True}
    c = s.conn(120)
    t0 = time.time()
    c.request("POST", "/v1/completions", body=json.dumps(body),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    head = r.read(1)
    ttfb = time.time() - t0
    rest = (head + r.read()).decode()
    final = [json.loads(l[6:]) for l in rest.split("\n") if l.startswith("data: {")][-1]
    c.close()
    e = final["edgelm"]
    gen = final["usage"]["completion_tokens"]
    return ttfb, (gen - 1) / ((e["total_ms"] - e["ttft_ms"]) / 1e3), gen


def throughput(slots):
    s = sc.Server("--parallel", str(slots), "--max-tokens", str(N), life=600)
    try:
        sc.greedy(s, PROMPT, 4)  # warm
        t0 = time.time()
        counts = []

        def client(i):
            r = s.json("POST", "/v1/completions", {"prompt": f"{PROMPT} {i}", "max_tokens": N,
                                                   "temperature": 0})
            counts.append(r["usage"]["completion_tokens"])
        th = [threading.Thread(target=client, args=(i,)) for i in range(slots)]
        for t in th:
            t.start()
        for t in th:
            t.join()
        tps = sum(counts) / (time.time() - t0)
        return tps, rss_kib(s.proc.pid)
    finally:
        s.stop(60)


def prefix_ttft():
    system = "You are a storyteller. " * 40
    first = {"messages": [{"role": "system", "content": system},
                          {"role": "user", "content": "A story about a cat."}],
             "max_tokens": 16, "temperature": 0}
    second = json.loads(json.dumps(first))
    second["messages"] += [{"role": "assistant", "content": "Once there was a cat."},
                           {"role": "user", "content": "And a dog?"}]
    s = sc.Server("--parallel", "1", life=600)
    try:
        s.json("POST", "/v1/chat/completions", first)
        warm = s.json("POST", "/v1/chat/completions", second)["edgelm"]
    finally:
        s.stop(60)
    s = sc.Server("--parallel", "1", life=600)
    try:
        cold = s.json("POST", "/v1/chat/completions", second)["edgelm"]
    finally:
        s.stop(60)
    return cold, warm


def main():
    print(f"model {os.path.basename(MODEL)}, {N} tokens, {os.cpu_count()} CPUs")
    base = run_tps()
    s = sc.Server("--parallel", "1", "--max-tokens", str(N), life=600)
    try:
        one_stream(s)  # warm
        ttfb, tps, gen = one_stream(s)
    finally:
        s.stop(60)
    print(f"one stream: server {tps:.1f} tok/s, edgelm run {base:.1f} tok/s "
          f"({100 * tps / base:.0f}%, {gen} tokens); time to first byte {ttfb * 1e3:.1f} ms")
    rss = {}
    for k in (1, 2, 4):
        tps, rss[k] = throughput(k)
        print(f"{k} slot(s), {k} clients: {tps:.1f} tok/s in all; RSS {rss[k] / 1024:.1f} MiB")
    print(f"memory per extra slot: {(rss[4] - rss[1]) / 3 / 1024:.1f} MiB (RSS, 1 -> 4 slots)")
    cold, warm = prefix_ttft()
    print(f"second turn TTFT: {cold['ttft_ms']:.1f} ms without the prefix cache "
          f"({cold['prompt_tokens_reused']} reused), {warm['ttft_ms']:.1f} ms with it "
          f"({warm['prompt_tokens_reused']} reused)")


if __name__ == "__main__":
    main()

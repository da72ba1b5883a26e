#!/usr/bin/env python3
"""Drives `edgelm serve` for tests/test_server.c, one scenario per run.

usage: serve_client.py SCENARIO CLI MODEL

Each scenario starts its own server on loopback with --port 0 and a bounded
life (--max-seconds), talks to it with http.client (and curl where it is
installed), stops it with SIGTERM and checks that it exits 0 in time. Any
failed check raises, which exits 1 with the reason on stderr.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

CLI = MODEL = None


class Server:
    def __init__(self, *args, life=60, model_args=None):
        self.proc = subprocess.Popen(
            [CLI, "serve", *(model_args or ["-m", MODEL]), "--port", "0", "--max-seconds",
             str(life), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log = []
        deadline = time.time() + 30
        self.port = None
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if not self.port:
            self.proc.kill()
            raise AssertionError("the server did not start:\n" + "".join(self.log) +
                                 self.proc.stderr.read())
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def conn(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=30):
        c = self.conn(timeout)
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        payload = r.read()
        c.close()
        return r.status, dict(r.getheaders()), payload

    def json(self, method, path, body=None, headers=None, want=200):
        status, hdrs, payload = self.request(method, path, body, headers)
        assert status == want, f"{method} {path}: status {status}, want {want}: {payload[:400]!r}"
        return json.loads(payload) if payload and hdrs.get("Content-Type", "").startswith(
            "application/json") else payload

    def stop(self, bound=15):
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=bound)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the server did not exit within {bound} s of SIGTERM")
        self.reader.join(timeout=5)
        text = "".join(self.log)
        assert rc == 0, f"the server exited {rc}:\n{text}"
        assert "Sanitizer" not in text and "runtime error:" not in text, text
        return time.time() - t0, text


def stream(server, path, body, timeout=30):
    """The SSE events of a streaming request, as parsed JSON (and 'DONE')."""
    c = server.conn(timeout)
    c.request("POST", path, body=json.dumps(dict(body, stream=True)),
              headers={"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, f"stream: status {r.status}: {r.read()[:300]!r}"
    assert r.getheader("Content-Type", "").startswith("text/event-stream")
    events = []
    for block in r.read().decode().split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), f"not an SSE data event: {block!r}"
        data = block[6:]
        events.append("DONE" if data == "[DONE]" else json.loads(data))
    c.close()
    assert events and events[-1] == "DONE", "the stream does not end with data: [DONE]"
    return events[:-1]


def edgelm_run(prompt, n):
    out = subprocess.run([CLI, "run", "-m", MODEL, "-p", prompt, "-n", str(n), "--temp", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def greedy(server, prompt, n):
    r = server.json("POST", "/v1/completions",
                    {"prompt": prompt, "max_tokens": n, "temperature": 0})
    return r["choices"][0]["text"]


def chat_body(text, n=16, **kw):
    return dict({"messages": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": text}],
                 "max_tokens": n, "temperature": 0}, **kw)


# ----------------------------------------------------------------- scenarios

def scenario_endpoints():
    s = Server("--parallel", "2")
    try:
        assert any("using ChatML" in l for l in s.log), "no ChatML notice at startup"
        h = s.json("GET", "/health")
        assert h["status"] == "ok" and h["slots"] == 2, h
        models = s.json("GET", "/v1/models")
        assert models["object"] == "list" and len(models["data"]) == 1, models
        # Greedy output through the server equals `edgelm run`'s.
        prompt = "Once upon a time"
        want = edgelm_run(prompt, 40)
        got = greedy(s, prompt, 40)
        assert want.rstrip("\n") == prompt + got, f"server {got!r} != run {want!r}"
        r = s.json("POST", "/v1/completions", {"prompt": prompt, "max_tokens": 40,
                                                "temperature": 0, "logprobs": 2})
        lp = r["choices"][0]["logprobs"]
        assert len(lp["tokens"]) == 40 and all(v <= 0 for v in lp["token_logprobs"]), lp
        assert "".join(lp["tokens"]) == got, "the logprob tokens do not spell the text"
        assert r["usage"]["completion_tokens"] == 40 and r["choices"][0]["finish_reason"] == "length"
        conf = r["edgelm"]["confidence"]
        mean = sum(lp["token_logprobs"]) / 40
        assert abs(conf["mean_logprob"] - mean) < 1e-4, (conf, mean)
        assert conf["n_tokens"] == 40 and 0 <= conf["frac_below"] <= 1
        # A stop string cuts the text before it.
        cut = got[len(got) // 2:len(got) // 2 + 4]
        r = s.json("POST", "/v1/completions", {"prompt": prompt, "max_tokens": 40,
                                                "temperature": 0, "stop": [cut]})
        assert r["choices"][0]["text"] == got[:got.index(cut)], r
        assert r["choices"][0]["finish_reason"] == "stop"
        # Chat, non-streaming then streaming: the same greedy text.
        body = chat_body("Tell me a story.", 24, logprobs=True, top_logprobs=1)
        a = s.json("POST", "/v1/chat/completions", body)
        msg = a["choices"][0]["message"]
        assert msg["role"] == "assistant" and isinstance(msg["content"], str), a
        assert len(a["choices"][0]["logprobs"]["content"]) == a["usage"]["completion_tokens"]
        events = stream(s, "/v1/chat/completions", body)
        text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
        assert text == msg["content"], f"stream {text!r} != {msg['content']!r}"
        assert events[0]["choices"][0]["delta"].get("role") == "assistant"
        assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")
        assert "confidence" in events[-1]["edgelm"]
        # The second identical request reuses the slot's cached prefix.
        b = s.json("POST", "/v1/chat/completions", chat_body("Tell me a story.", 24))
        assert b["edgelm"]["prompt_tokens_reused"] >= b["usage"]["prompt_tokens"] - 1, b
        assert b["choices"][0]["message"]["content"] == msg["content"]
        # Streaming text completions equal the non-streaming ones.
        events = stream(s, "/v1/completions", {"prompt": prompt, "max_tokens": 40, "temperature": 0})
        assert "".join(e["choices"][0]["text"] for e in events) == got
        metrics = s.json("GET", "/metrics").decode()
        for name in ("edgelm_requests_total", "edgelm_generated_tokens_total",
                     "edgelm_queue_length", "edgelm_request_duration_seconds_bucket",
                     "edgelm_time_to_first_token_seconds_count"):
            assert name in metrics, f"/metrics lacks {name}"
        m = re.search(r'edgelm_requests_total\{code="2xx"\} (\d+)', metrics)
        assert m and int(m.group(1)) >= 8, metrics
        curl_checks(s, prompt, got)
    finally:
        elapsed, log = s.stop()
    assert prompt not in log, "a prompt was logged without --log-prompts"


def curl_checks(s, prompt, want):
    if not shutil.which("curl"):
        print("curl is not installed: its checks are skipped", file=sys.stderr)
        return
    base = f"http://127.0.0.1:{s.port}"

    def curl(*args):
        out = subprocess.run(["curl", "-sS", "--max-time", "30", *args], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout
    assert json.loads(curl(base + "/health"))["status"] == "ok"
    assert json.loads(curl(base + "/v1/models"))["data"]
    assert "edgelm_requests_total" in curl(base + "/metrics")
    body = json.dumps({"prompt": prompt, "max_tokens": 40, "temperature": 0})
    r = json.loads(curl("-H", "Content-Type: application/json", "-d", body, base + "/v1/completions"))
    assert r["choices"][0]["text"] == want
    r = json.loads(curl("-d", json.dumps(chat_body("Hi")), base + "/v1/chat/completions"))
    assert r["object"] == "chat.completion"
    sse = curl("-N", "-d", json.dumps(chat_body("Hi", stream=True)), base + "/v1/chat/completions")
    assert sse.rstrip().endswith("data: [DONE]") and sse.startswith("data: "), sse[-200:]


def scenario_concurrent():
    s = Server("--parallel", "4", "--queue", "16")
    try:
        prompts = [f"Once upon a time there was a {w}" for w in
                   ("cat", "dog", "girl", "boy", "tree", "bird", "king", "ball")]
        want = {p: greedy(s, p, 48) for p in prompts}
        results, errors = {}, []

        def client(p):
            try:
                results[p] = greedy(s, p, 48)
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(f"{p}: {e!r}")
        threads = [threading.Thread(target=client, args=(p,)) for p in prompts]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        assert len(results) == 8, f"{8 - len(results)} answers lost"
        for p in prompts:
            assert results[p] == want[p], f"{p}: concurrent {results[p]!r} != alone {want[p]!r}"
    finally:
        s.stop()


def scenario_sigterm():
    s = Server("--parallel", "4", "--queue", "16", "--drain", "2")
    statuses, errors = [], []

    def client(i):
        try:
            body = chat_body(f"story {i}", 400)
            if i % 2:
                try:
                    stream(s, "/v1/chat/completions", body)
                    statuses.append(200)
                except AssertionError as e:
                    # A request that reached the server only after SIGTERM
                    # (a slow machine) is refused with 503: answered, not lost.
                    if "status 503" not in str(e) or "shutting down" not in str(e):
                        raise
                    statuses.append(503)
            else:
                statuses.append(s.request("POST", "/v1/chat/completions", body)[0])
        except (OSError, http.client.HTTPException, AssertionError) as e:
            errors.append(repr(e))
    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    elapsed, _ = s.stop(bound=10)
    for t in threads:
        t.join(30)
    assert all(not t.is_alive() for t in threads), "a client hangs after the server stopped"
    assert elapsed < 10, f"SIGTERM took {elapsed:.1f} s"
    assert not errors and len(statuses) == 8, f"answers lost at shutdown: {errors}"
    assert all(st in (200, 503) for st in statuses), statuses
    print(f"sigterm: exit 0 after {elapsed:.2f} s; statuses {statuses}; cut {len(errors)}",
          file=sys.stderr)


def scenario_queue():
    s = Server("--parallel", "1", "--queue", "0")
    statuses, retry = [], []

    def client(i):
        status, hdrs, body = s.request("POST", "/v1/completions", {
            "prompt": f"Once upon a time {i}", "max_tokens": 400, "temperature": 0})
        statuses.append(status)
        if status == 503:
            retry.append("Retry-After" in hdrs and json.loads(body)["error"]["message"])
    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(statuses) == 8 and set(statuses) <= {200, 503}, statuses
        assert 200 in statuses and 503 in statuses, f"no full queue seen: {statuses}"
        assert all(retry), "a 503 without Retry-After or an error message"
        assert greedy(s, "Hello", 4)
    finally:
        s.stop()


def raw(s, data, timeout=10):
    """Sends bytes as they are and returns the status line's code."""
    with socket.create_connection(("127.0.0.1", s.port), timeout=timeout) as k:
        k.sendall(data)
        reply = b""
        while b"\r\n" not in reply:
            chunk = k.recv(4096)
            if not chunk:
                break
            reply += chunk
    m = re.match(rb"HTTP/1\.[01] (\d+)", reply)
    return int(m.group(1)) if m else None


def scenario_hostile():
    s = Server("--parallel", "1", "--max-body", "4096", "--max-tokens", "64")
    good = {"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0}
    chat = "/v1/chat/completions"
    cases = [
        ("POST", chat, b"{\"messages\": [", 400),
        ("POST", chat, b"not json", 400),
        ("POST", chat, b"[1, 2]", 400),
        ("POST", chat, b"", 400),
        ("POST", chat, {"messages": "hi"}, 400),
        ("POST", chat, {"messages": []}, 400),
        ("POST", chat, {"messages": [{"role": "wizard", "content": "hi"}]}, 400),
        ("POST", chat, {"messages": [{"role": "user", "content": 5}]}, 400),
        ("POST", chat, {"messages": [{"role": "user"}]}, 400),
        ("POST", chat, {"messages": [{"role": "user", "content": "a\u0000b"}]}, 400),
        ("POST", chat, {"messages": [{"role": "user", "content": "x" * 8000}]}, 413),
        ("POST", chat, dict(chat_body("hi"), max_tokens=10 ** 12), 400),
        ("POST", chat, dict(chat_body("hi"), max_tokens=-1), 400),
        ("POST", chat, dict(chat_body("hi"), max_tokens="9"), 400),
        ("POST", chat, dict(chat_body("hi"), temperature=-1), 400),
        ("POST", chat, dict(chat_body("hi"), temperature=1e308), 400),
        ("POST", chat, dict(chat_body("hi"), top_p=7), 400),
        ("POST", chat, dict(chat_body("hi"), stream="yes"), 400),
        ("POST", chat, dict(chat_body("hi"), logprobs=True, top_logprobs=1000), 400),
        ("POST", chat, dict(chat_body("hi"), n=5), 400),
        ("POST", chat, dict(chat_body("hi"), stop=["a"] * 10), 400),
        ("POST", chat, dict(chat_body("hi"), stop=[1]), 400),
        ("POST", chat, dict(chat_body("hi"), seed=0.5), 400),
        ("POST", "/v1/completions", {"prompt": 12}, 400),
        ("POST", "/v1/completions", {"prompt": ""}, 400),
        ("POST", "/v1/completions", {"prompt": "word " * 700}, 400),  # longer than the context
        ("GET", chat, None, 405),
        ("GET", "/v1/nothing", None, 404),
    ]
    try:
        for method, path, body, want in cases:
            status, _, payload = s.request(method, path, body)
            assert status == want, f"{method} {path} {str(body)[:80]}: {status}, want {want}"
            err = json.loads(payload)["error"]
            assert err["message"] and err["type"] and err["code"], err
            assert s.json("POST", "/v1/completions", good)["choices"][0]["text"]
        # Headers past the connection's memory limit.
        big = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n"
        status = raw(s, big)
        assert status is not None and 400 <= status < 500, status
        assert s.json("POST", "/v1/completions", good)["choices"][0]["text"]
        # A body that says it is bigger than the limit.
        status = raw(s, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n"
                     + b"{" * 5000)
        assert status == 413, status
        assert s.json("POST", "/v1/completions", good)["choices"][0]["text"]
    finally:
        s.stop()


def scenario_auth():
    bad = subprocess.run([CLI, "serve", "-m", MODEL, "--host", "0.0.0.0", "--port", "0",
                          "--max-seconds", "1"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "--api-key" in bad.stderr, (bad.returncode, bad.stderr)
    s = Server("--api-key", "s3cret")
    try:
        body = {"prompt": "Once", "max_tokens": 2}
        assert s.request("GET", "/health")[0] == 200
        for h in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer s3cre"},
                  {"Authorization": "Bearer s3cret2"}, {"Authorization": "s3cret"}):
            status, _, payload = s.request("POST", "/v1/completions", body, h)
            assert status == 401, (h, status)
            assert json.loads(payload)["error"]["type"] == "authentication_error"
        assert s.request("GET", "/v1/models")[0] == 401
        s.json("POST", "/v1/completions", body, {"Authorization": "Bearer s3cret"})
        s.json("GET", "/v1/models", None, {"Authorization": "Bearer s3cret"})
    finally:
        s.stop()


def scenario_log_prompts():
    s = Server("--log-prompts")
    try:
        greedy(s, "A very particular prompt", 2)
    finally:
        _, log = s.stop()
    assert "A very particular prompt" in log, log


def scenario_escalate():
    up = Server("--parallel", "2")
    base = f"http://127.0.0.1:{up.port}"
    body = chat_body("Tell me a story.", 12)
    try:
        # Confidence is exp(mean logprob), at most 1: below 1.01 always
        # escalates, below 0 never does.
        hi = Server("--escalate-url", base, "--escalate-below", "1.01", "--ctx", "128")
        try:
            a = hi.json("POST", "/v1/chat/completions", body)
            assert a["edgelm"]["answered_by"] == "upstream", a
            assert "below" in a["edgelm"]["escalation"], a
            events = stream(hi, "/v1/chat/completions", body)
            assert events[-1]["edgelm"]["answered_by"] == "upstream", events[-1]
            text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
            assert text == a["choices"][0]["message"]["content"]
            # A prompt longer than the local context goes upstream too.
            r = hi.json("POST", "/v1/completions", {"prompt": "word " * 200, "max_tokens": 4})
            assert r["edgelm"]["answered_by"] == "upstream" and "fit" in r["edgelm"]["escalation"], r
        finally:
            hi.stop()
        lo = Server("--escalate-url", base, "--escalate-below", "0")
        try:
            a = lo.json("POST", "/v1/chat/completions", body)
            assert a["edgelm"]["answered_by"] == "local" and "escalation" not in a["edgelm"], a
        finally:
            lo.stop()
        served_before = int(re.search(r'edgelm_requests_total\{code="2xx"\} (\d+)',
                                      up.json("GET", "/metrics").decode()).group(1))
    finally:
        up.stop()
    assert served_before >= 3, f"the upstream answered {served_before} requests"
    # A dead upstream (the one just stopped): the local answer, marked.
    dead = Server("--escalate-url", base, "--escalate-below", "1.01", "--escalate-timeout", "5")
    try:
        a = dead.json("POST", "/v1/chat/completions", body)
        assert a["edgelm"]["answered_by"] == "local", a
        assert "upstream failed" in a["edgelm"]["escalation"], a
        assert a["choices"][0]["message"]["content"] is not None
    finally:
        dead.stop()


def generated_total(s):
    m = re.search(r"edgelm_generated_tokens_total (\d+)", s.json("GET", "/metrics").decode())
    return int(m.group(1))


def wait_idle(s):
    deadline = time.time() + 10
    while time.time() < deadline and s.json("GET", "/health")["slots_busy"]:
        time.sleep(0.02)
    assert s.json("GET", "/health")["slots_busy"] == 0, "the slot stays busy"


def scenario_disconnect():
    s = Server("--parallel", "1", "--max-tokens", "2000")
    long = {"prompt": "Once upon a time", "max_tokens": 2000, "temperature": 0}
    try:
        # A streaming client that goes away after the first event.
        c = s.conn()
        c.request("POST", "/v1/completions", body=json.dumps(dict(long, stream=True)),
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 200
        r.fp.readline()
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()
        wait_idle(s)
        first = generated_total(s)
        assert first < 1000, f"a disconnected stream generated {first} of 2000 tokens"
        # A non-streaming client that goes away right after its request.
        body = json.dumps(long).encode()
        with socket.create_connection(("127.0.0.1", s.port)) as k:
            k.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            time.sleep(0.05)
        wait_idle(s)
        second = generated_total(s) - first
        assert second < 1000, f"a disconnected request generated {second} of 2000 tokens"
        # The slot serves the next request in full.
        r = s.json("POST", "/v1/completions", dict(long, max_tokens=50))
        assert r["usage"]["completion_tokens"] == 50
    finally:
        _, log = s.stop()
    assert log.count("cancelled") >= 2, log


# ------------------------------------------------------------- hot swap

def gguf_fill_nan(path, tensor):
    """Overwrites an F32 tensor of a GGUF file with NaNs (a minimal reader of
    the GGUF v2/v3 layout: header, key/values, tensor infos, aligned data)."""
    import struct
    data = bytearray(open(path, "rb").read())
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def string():
        nonlocal pos
        n = take("Q")
        pos += n
        return bytes(data[pos - n:pos]).decode("utf-8", "replace")

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q",
              12: "d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(scalar[t])

    assert bytes(data[:4]) == b"GGUF", path
    pos = 4
    take("I")
    n_tensors, n_kv = take("Q"), take("Q")
    align = 32
    for _ in range(n_kv):
        key = string()
        v = value(take("I"))
        if key == "general.alignment":
            align = v
    infos = {}
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        ttype, off = take("I"), take("Q")
        infos[name] = (dims, ttype, off)
    start = (pos + align - 1) // align * align
    dims, ttype, off = infos[tensor]
    assert ttype == 0, f"{tensor} is not F32 (type {ttype})"
    n = 1
    for d in dims:
        n *= d
    data[start + off:start + off + 4 * n] = struct.pack("<f", float("nan")) * n
    open(path, "wb").write(bytes(data))


def cli(*args):
    out = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"edgelm {' '.join(args)}: {out.stderr}"
    return out.stdout


class ModelDir:
    """A temporary directory with two key pairs (good, other), a staging
    directory for models and the directory the server watches."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.stage, self.models = os.path.join(tmp, "stage"), os.path.join(tmp, "models")
        os.mkdir(self.stage)
        os.mkdir(self.models)
        cli("keygen", "--out", os.path.join(tmp, "good"))
        cli("keygen", "--out", os.path.join(tmp, "other"))
        self.good_key, self.other_key = os.path.join(tmp, "good.key"), os.path.join(tmp, "other.key")
        self.good_pub = os.path.join(tmp, "good.pub")
        self.t_base = time.time() - 1000

    def make(self, name, seed):
        path = os.path.join(self.stage, name)
        cli("make-model", "--shape", "tiny-qwen3", "--type", "F32", "--seed", str(seed), "-o", path)
        return path

    def sign(self, path, key=None):
        cli("sign", "--key", key or self.good_key, path)

    def deploy(self, path, order):
        """Into models/ as a whole (signature first, then a rename), with an
        mtime that orders it."""
        name = os.path.basename(path)
        shutil.copy(path + ".sig", os.path.join(self.models, name + ".sig"))
        part = os.path.join(self.models, name + ".part")
        shutil.copy(path, part)
        os.utime(part, (self.t_base + order, self.t_base + order))
        os.rename(part, os.path.join(self.models, name))

    def args(self):
        return ["--models", self.models, "--trusted-key", self.good_pub]


def tamper(path):
    """Changes one byte in the middle of a file."""
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x55]))


def scenario_hotswap_start():
    """At startup the newest good file wins; none good, or no --trusted-key,
    fails with a clear message."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        md = ModelDir(tmp)
        serve = [CLI, "serve", "--port", "0", "--max-seconds", "5"]
        out = subprocess.run(serve + ["--models", md.models], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 2 and "--trusted-key" in out.stderr, out
        out = subprocess.run(serve + md.args(), capture_output=True, text=True, timeout=30)
        assert out.returncode == 1 and "no model there" in out.stderr, out
        a, z = md.make("a.gguf", 1), md.make("z.gguf", 2)
        md.sign(a)
        md.sign(z)
        tamper(z)
        md.deploy(z, 2)
        out = subprocess.run(serve + md.args(), capture_output=True, text=True, timeout=30)
        assert out.returncode == 1 and "rejected" in out.stderr, out
        md.deploy(a, 1)
        s = Server("--models-poll-ms", "600000", model_args=md.args())
        try:
            assert s.json("GET", "/health")["model_file"] == "a.gguf"
            r = s.json("POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 4})
            assert r["model"] == "a.gguf", r
            # With a 10-minute poll, SIGHUP rescans now.
            b = md.make("b.gguf", 3)
            md.sign(b)
            md.deploy(b, 3)
            time.sleep(0.3)
            assert s.json("GET", "/health")["model_file"] == "a.gguf"
            s.proc.send_signal(signal.SIGHUP)
            t0 = time.time()
            while s.json("GET", "/health")["model_file"] != "b.gguf":
                assert time.time() - t0 < 10, "SIGHUP did not swap to b.gguf"
                time.sleep(0.05)
        finally:
            _, log = s.stop()
        assert "rejected " + os.path.join(md.models, "z.gguf") in log, log


def scenario_hotswap():
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        md = ModelDir(tmp)
        models, other_key = md.models, md.other_key
        make, sign, deploy = md.make, md.sign, md.deploy
        prompt, n = "Once upon a time", 8
        a, b = make("a.gguf", 11), make("b.gguf", 22)
        sign(a)
        sign(b)

        def reference(path):
            out = subprocess.run([CLI, "run", "-m", path, "-p", prompt, "-n", str(n), "--temp",
                                  "0"], capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stderr
            return out.stdout.rstrip("\n")

        want = {"a.gguf": reference(a), "b.gguf": reference(b)}
        assert want["a.gguf"] != want["b.gguf"], "seeds 11 and 22 give the same answer"
        deploy(a, 1)
        s = Server("--models-poll-ms", "100", "--parallel", "2", life=120, model_args=md.args())
        answers, failures, stop = [], [], threading.Event()

        body = {"prompt": prompt, "max_tokens": n, "temperature": 0}

        def client(streaming):
            while not stop.is_set():
                t0 = time.time()
                try:
                    if streaming:
                        events = stream(s, "/v1/completions", body)
                        models = {e["model"] for e in events}
                        assert len(models) == 1, f"one stream, several models: {models}"
                        text = "".join(e["choices"][0].get("text") or "" for e in events)
                        answers.append((t0, time.time(), models.pop(), text))
                        continue
                    st, _, payload = s.request("POST", "/v1/completions", body)
                    if st != 200:
                        failures.append(f"status {st}: {payload[:200]!r}")
                        continue
                    r = json.loads(payload)
                    answers.append((t0, time.time(), r["model"], r["choices"][0]["text"]))
                except Exception as e:  # noqa: BLE001 (any failure counts)
                    failures.append(repr(e))

        def live_file():
            # Two requests cannot see one instant: a swap may land between
            # them. /health before and after /v1/models bracket it; when both
            # name one file, /v1/models must name it too.
            for _ in range(50):
                h1 = s.json("GET", "/health")
                m = s.json("GET", "/v1/models")["data"][0]
                h2 = s.json("GET", "/health")
                if h1["model_file"] == h2["model_file"]:
                    assert m["id"] == h1["model_file"] == m["model_file"], (h1, m, h2)
                    return h1["model_file"]
            raise AssertionError("the live model kept changing")

        def wait_for_log(text, bound=15):
            t0 = time.time()
            while text not in "".join(s.log):
                assert time.time() - t0 < bound, f"no {text!r} in the log:\n" + "".join(s.log)
                time.sleep(0.05)

        threads = [threading.Thread(target=client, args=(k == 2,)) for k in range(3)]
        try:
            assert live_file() == "a.gguf"
            for th in threads:
                th.start()
            time.sleep(1.0)
            t_swap = time.time()
            deploy(b, 2)
            t0 = time.time()
            while live_file() != "b.gguf":
                assert time.time() - t0 < 15, "b.gguf did not go live"
                time.sleep(0.02)
            t_live = time.time()
            time.sleep(1.0)
            # c: signed, then one byte changed: its signature fails.
            c = make("c.gguf", 33)
            sign(c)
            tamper(c)
            deploy(c, 3)
            wait_for_log("rejected " + os.path.join(models, "c.gguf"))
            assert live_file() == "b.gguf"
            # d: signed by a key the server does not trust.
            d = make("d.gguf", 44)
            sign(d, other_key)
            deploy(d, 4)
            wait_for_log("rejected " + os.path.join(models, "d.gguf"))
            assert live_file() == "b.gguf"
            # e: signed by the trusted key, but NaN weights fail the self-test.
            e = make("e.gguf", 55)
            gguf_fill_nan(e, "output_norm.weight")
            sign(e)
            deploy(e, 5)
            wait_for_log("rejected " + os.path.join(models, "e.gguf"))
            assert "self-test" in "".join(s.log), "".join(s.log)
            assert live_file() == "b.gguf"
            n_before = len(answers)
            time.sleep(0.5)
            assert len(answers) > n_before, "requests stopped being answered"
            # rejected files are not retried while their mtime stays
            log = "".join(s.log)
            for name in ("c.gguf", "d.gguf", "e.gguf"):
                assert log.count("rejected " + os.path.join(models, name)) == 1, log
        finally:
            stop.set()
            for th in threads:
                if th.is_alive() or th.ident:
                    th.join(timeout=30)
            _, log = s.stop()
        assert not failures, f"{len(failures)} requests failed: {failures[:5]}\n{log}"
        for t0, t1, model, text in answers:
            assert model in want and prompt + text.rstrip("\n") == want[model], (model, text, want)
            if t1 < t_swap:
                assert model == "a.gguf", f"a request answered before the swap came from {model}"
            if t0 > t_live:
                assert model == "b.gguf", f"a request sent after the swap came from {model}"
        assert any(m == "a.gguf" for _, _, m, _ in answers), "no answer from a"
        assert any(m == "b.gguf" for _, _, m, _ in answers), "no answer from b"


def main():
    global CLI, MODEL
    name, CLI, MODEL = sys.argv[1:4]
    globals()["scenario_" + name]()
    print(f"{name}: ok", file=sys.stderr)


if __name__ == "__main__":
    main()

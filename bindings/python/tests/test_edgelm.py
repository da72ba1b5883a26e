"""Tests of the Python package edgelm (bindings/python/edgelm).

Run by ctest as test_python (CMakeLists.txt): python3 -m unittest with
EDGELM_LIB = the built libedgelm.so, ELM_CLI = the built edgelm command,
ELM_SHARED_DIR = the shared references and ELM_BUILD_DIR = the build tree.
By hand, from the repository root:

    EDGELM_LIB=build/libedgelm.so ELM_CLI=build/edgelm ELM_SHARED_DIR=../shared \
        PYTHONPATH=bindings/python python3 -m unittest discover -s bindings/python/tests -v

The expectations come from elsewhere than the package: the edgelm CLI's
output for the same model and options (generation, chat templates,
tokenization), the C compiler's layout of include/edgelm.h, and the
definitions (log-softmax of the logits, a fresh context's logits).
"""

import ctypes
import gc
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))

import edgelm  # noqa: E402
from edgelm import _lib  # noqa: E402

CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
MESSAGES = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Tell me a story about a cat."}]

TMP = None
MODEL_PATH = None
CLI = None
SYNTHETIC = False  # the synthetic vocabulary lacks "\u2581" (SentencePiece's space) as a
                   # piece: it is byte-encoded and comes back as itself, not as a space


def plain(text):
    return text.replace("\u2581", " ").strip() if SYNTHETIC else text.strip()


def cli(*args, stdin=b""):
    """Runs the edgelm command; returns (rc, stdout bytes, stderr text)."""
    r = subprocess.run([CLI, *args], input=stdin, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=300)
    return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace")


def setUpModule():
    global TMP, MODEL_PATH, CLI, SYNTHETIC
    TMP = tempfile.mkdtemp(prefix="edgelm-py-")
    CLI = os.environ.get("ELM_CLI") or os.path.join(ROOT, "build", "edgelm")
    if not os.access(CLI, os.X_OK):
        raise unittest.SkipTest("the edgelm command is missing (%s): set ELM_CLI" % CLI)
    shared = os.environ.get("ELM_SHARED_DIR") or os.path.join(ROOT, "..", "shared")
    stories = os.path.join(shared, "models", "stories260K.gguf")
    if os.path.exists(stories):
        MODEL_PATH = stories
        return
    sys.stderr.write("note: %s is absent: the tests use a synthetic model\n" % stories)
    MODEL_PATH = os.path.join(TMP, "tiny.gguf")
    SYNTHETIC = True
    rc, _, err = cli("make-model", "--shape", "tinyllama-1.1b", "--type", "Q8_0",
                     "--vocab-size", "1000", "--layers", "1", "-o", MODEL_PATH)
    if rc != 0:
        raise unittest.SkipTest("cannot make a synthetic model: " + err)


def tearDownModule():
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


def write(name, data):
    path = os.path.join(TMP, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(data)
    return path


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = edgelm.Model(MODEL_PATH)

    @classmethod
    def tearDownClass(cls):
        cls.model.close()


class TestLayout(unittest.TestCase):
    """Every ctypes struct has the C compiler's size and field offsets."""

    def test_structs_match_the_header(self):
        cc = shutil.which("cc") or shutil.which("gcc")
        if not cc:
            self.skipTest("no C compiler")
        structs = [c for c in vars(_lib).values()
                   if isinstance(c, type) and issubclass(c, ctypes.Structure)
                   and c.__name__.startswith("elm_")]
        self.assertGreaterEqual(len(structs), 12)
        lines = ["#include <stddef.h>", "#include <stdio.h>", "#include \"edgelm.h\"",
                 "int main(void) {"]
        for s in structs:
            lines.append('printf("%s %%zu\\n", sizeof(%s));' % (s.__name__, s.__name__))
            for name, _ in s._fields_:
                lines.append('printf("%s.%s %%zu\\n", offsetof(%s, %s));'
                             % (s.__name__, name, s.__name__, name))
        lines.append("return 0; }")
        src = write("layout.c", "\n".join(lines))
        exe = os.path.join(TMP, "layout")
        r = subprocess.run([cc, "-std=c11", "-I", os.path.join(ROOT, "include"), src, "-o",
                            exe], stderr=subprocess.PIPE)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        want = dict(line.split() for line in
                    subprocess.check_output([exe]).decode().splitlines())
        for s in structs:
            self.assertEqual(int(want[s.__name__]), ctypes.sizeof(s), s.__name__)
            for name, _ in s._fields_:
                self.assertEqual(int(want["%s.%s" % (s.__name__, name)]),
                                 getattr(s, name).offset, "%s.%s" % (s.__name__, name))


class TestErrors(unittest.TestCase):
    def test_missing_file(self):
        path = os.path.join(TMP, "no-such-model.gguf")
        with self.assertRaises(edgelm.Error) as cm:
            edgelm.Model(path)
        e = cm.exception
        self.assertIsInstance(e, edgelm.IOFailure)
        self.assertEqual(e.status, 2)  # ELM_ERR_IO, the enum's third member
        self.assertEqual(e.reason, edgelm.strerror(2))
        self.assertIn(path, e.message)  # the library's message names the file
        self.assertIn(path, str(e))

    def test_not_a_model(self):
        path = write("garbage.gguf", "this is not a GGUF file at all" * 10)
        with self.assertRaises(edgelm.FormatError) as cm:
            edgelm.Model(path)
        self.assertIn(path, cm.exception.message)

    def test_bad_device(self):
        with self.assertRaises(edgelm.Error) as cm:
            edgelm.Model(MODEL_PATH, device="no-such-device")
        self.assertTrue(cm.exception.message)

    def test_trusted_key_needs_a_library_that_checks_it(self):
        if _lib.has("elm_sign_verify"):
            self.skipTest("this libedgelm checks signatures (TestSigning)")
        with self.assertRaises(edgelm.Unsupported):
            edgelm.Model(MODEL_PATH, trusted_key=os.path.join(TMP, "k.pub"))

    def test_bad_mode(self):
        with edgelm.Model(MODEL_PATH) as m:
            with self.assertRaises(edgelm.InvalidArgument):
                edgelm.Context(m, mode="quick")


class TestTokenizer(Base):
    TEXT = "Once upon a time, there was a little cat named Tom."

    def test_matches_the_cli(self):
        for special, flags in ((True, ()), (False, ("--no-special",))):
            rc, out, err = cli("tokenize", "-m", MODEL_PATH, *flags, stdin=self.TEXT.encode())
            self.assertEqual(rc, 0, err)
            want = [int(t) for t in out.split()]
            self.assertEqual(self.model.tokenize(self.TEXT, add_special=special), want)

    def test_round_trip(self):
        ids = self.model.tokenize(self.TEXT, add_special=False)
        self.assertTrue(ids)
        self.assertEqual(plain(self.model.detokenize(ids)), self.TEXT)
        pieces = b"".join(self.model.token_to_piece(t) for t in ids)
        self.assertEqual(plain(pieces.decode()), self.TEXT)

    def test_bos(self):
        info = self.model.info
        with_bos = self.model.tokenize(self.TEXT, add_special=True)
        without = self.model.tokenize(self.TEXT, add_special=False)
        if info.add_bos and info.bos >= 0:
            self.assertEqual(with_bos, [info.bos] + without)
        else:
            self.assertEqual(with_bos, without)

    def test_long_text(self):  # more ids than the first buffer holds
        text = "a b c d e f g " * 300
        ids = self.model.tokenize(text, add_special=False)
        self.assertGreater(len(ids), 300)
        self.assertEqual(plain(self.model.detokenize(ids)), text.strip())

    def test_bad_token_id(self):
        n = self.model.info.n_vocab
        for bad in (n, n + 5, -1):
            with self.assertRaises(edgelm.Error) as cm:
                self.model.detokenize([1, bad])
            self.assertEqual(cm.exception.status, 1)  # ELM_ERR_INVALID_ARG
            with self.assertRaises(edgelm.InvalidArgument):
                self.model.token_to_piece(bad)

    def test_devices_match_the_cli(self):
        rc, out, err = cli("devices")
        self.assertEqual(rc, 0, err)
        devs = edgelm.devices()
        self.assertEqual(devs[0]["id"], "cpu")
        for d in devs:
            self.assertIn(d["id"], out.decode())
            self.assertEqual(len(d["heaps"]), d["n_heaps"])

    def test_info(self):
        info = self.model.info
        self.assertEqual(info.path, MODEL_PATH)
        self.assertEqual(info["n_vocab"], info.n_vocab)
        self.assertGreater(info.n_vocab, 0)
        self.assertEqual(info.file_size, os.path.getsize(MODEL_PATH))
        self.assertIsInstance(info.arch, str)


class TestContext(Base):
    PROMPT = "Once upon a time, there was a little"

    def test_decode_errors(self):
        with edgelm.Context(self.model, n_ctx=32) as ctx:
            n = self.model.info.n_vocab
            with self.assertRaises(edgelm.InvalidArgument) as cm:
                ctx.decode([1, n])
            self.assertNotEqual(cm.exception.message, cm.exception.reason,
                                "the context's own message is carried")
            self.assertEqual(ctx.n_past, 0)
            with self.assertRaises(edgelm.ContextFull):
                ctx.decode([1] * 33)
            with self.assertRaises(edgelm.InvalidArgument):
                ctx.truncate(5)

    def test_logits_are_a_log_softmax(self):
        ids = self.model.tokenize(self.PROMPT)
        with edgelm.Context(self.model) as ctx:
            ctx.decode(ids)
            self.assertEqual(ctx.n_past, len(ids))
            self.assertEqual(ctx.tokens, ids)
            logits = ctx.logits()
            self.assertEqual(len(logits), self.model.info.n_vocab)
            self.assertTrue(all(math.isfinite(x) for x in logits))
            # The first greedy token's fields, from their definitions.
            top = max(range(len(logits)), key=lambda i: (logits[i], -i))
            lse = max(logits) + math.log(sum(math.exp(x - max(logits)) for x in logits))
            second = sorted(logits)[-2]
        with edgelm.Context(self.model) as ctx:
            tok = next(iter(ctx.generate(self.PROMPT, max_tokens=1, temperature=0)))
        self.assertEqual(tok.id, top)
        self.assertAlmostEqual(tok.logprob, logits[top] - lse, places=3)
        self.assertAlmostEqual(tok.margin, logits[top] - second, places=3)
        self.assertEqual(tok.index, 0)

    def test_truncate_then_decode_equals_a_fresh_context(self):
        ids = self.model.tokenize(self.PROMPT)
        k = len(ids) - 3
        self.assertGreater(k, 1)
        with edgelm.Context(self.model, mode="exact") as a, \
                edgelm.Context(self.model, mode="exact") as b:
            a.decode(ids[:k])
            a.decode([ids[1], ids[2]])
            a.decode([ids[3]])
            a.truncate(k)
            self.assertEqual(a.n_past, k)
            self.assertEqual(a.tokens, ids[:k])
            a.decode(ids[k:k + 1])
            b.decode(ids[:k])
            b.decode(ids[k:k + 1])
            self.assertEqual(a.logits(), b.logits())

    def test_reuse_prefix(self):
        ids = self.model.tokenize(self.PROMPT)
        with edgelm.Context(self.model) as ctx:
            ctx.decode(ids)
            other = ids[:4] + [ids[5], ids[4]]
            self.assertEqual(ctx.reuse_prefix(other), 4)
            self.assertEqual(ctx.tokens, ids[:4])
            self.assertEqual(ctx.reuse_prefix(ids[:4]), 3)  # one token left to evaluate

    def test_closed(self):
        ctx = edgelm.Context(self.model)
        ctx.close()
        ctx.close()
        with self.assertRaises(edgelm.Error):
            ctx.decode([1])


def greedy_cli(prompt, n, *extra):
    rc, out, err = cli("run", "-m", MODEL_PATH, "-p", prompt, "-n", str(n), "--temp", "0",
                       *extra)
    assert rc == 0, err
    return out.decode()


class TestGenerate(Base):
    PROMPT = "Once upon a time"

    def test_greedy_equals_the_cli(self):
        want = greedy_cli(self.PROMPT, 20)
        with edgelm.Context(self.model) as ctx:
            gen = ctx.generate(self.PROMPT, max_tokens=20, temperature=0)
            text = gen.text()
        self.assertEqual(self.PROMPT + text + "\n", want)
        self.assertEqual(gen.stats.n_gen, len(gen.tokens))
        self.assertIn(gen.stop, ("n_predict", "eog"))
        self.assertEqual([t.index for t in gen.tokens], list(range(len(gen.tokens))))

    def test_sampled_equals_the_cli(self):
        rc, out, err = cli("run", "-m", MODEL_PATH, "-p", self.PROMPT, "-n", "16",
                           "--temp", "0.9", "--top-p", "0.9", "--seed", "7")
        self.assertEqual(rc, 0, err)
        with edgelm.Context(self.model) as ctx:
            text = ctx.generate(self.PROMPT, max_tokens=16, temperature=0.9, top_p=0.9,
                                seed=7).text()
        self.assertEqual(self.PROMPT + text + "\n", out.decode())

    def test_on_a_vulkan_device(self):
        if not any(d["backend"] == "vulkan" for d in edgelm.devices()):
            self.skipTest("no Vulkan device")
        with edgelm.Model(MODEL_PATH, device="vulkan") as m, m.context(n_ctx=64) as ctx:
            self.assertTrue(ctx.device.startswith("vulkan:"), ctx.device)
            text = ctx.generate(self.PROMPT, max_tokens=8, temperature=0).text()
        want = greedy_cli(self.PROMPT, 8, "--device", "vulkan", "-c", "64")
        self.assertEqual(self.PROMPT + text + "\n", want)

    def test_token_ids_as_prompt(self):
        ids = self.model.tokenize(self.PROMPT)
        with edgelm.Context(self.model) as a, edgelm.Context(self.model) as b:
            self.assertEqual(a.generate(ids, max_tokens=10, temperature=0).ids(),
                             b.generate(self.PROMPT, max_tokens=10, temperature=0).ids())

    def test_break_stops_early(self):
        threads = threading.active_count()
        ids = self.model.tokenize(self.PROMPT)
        with edgelm.Context(self.model) as ctx:
            gen = ctx.generate(self.PROMPT, max_tokens=50, temperature=0, ignore_eos=True)
            got = []
            for tok in gen:
                got.append(tok)
                if len(got) == 3:
                    break
            gen.close()
            self.assertEqual(threading.active_count(), threads, "the worker thread ended")
            self.assertEqual(len(gen.tokens), 3)
            self.assertEqual(gen.stop, "callback")
            self.assertEqual(gen.stats.n_gen, 3)
            # The last token was not evaluated: generation stopped at once.
            self.assertEqual(ctx.n_past, len(ids) + 2)
            # The context is usable again.
            more = ctx.generate([got[-1].id], max_tokens=2, temperature=0).ids()
            self.assertEqual(len(more), 2)

    def test_abandoned_generation_ends_its_thread(self):
        threads = threading.active_count()
        with edgelm.Context(self.model) as ctx:
            gen = ctx.generate(self.PROMPT, max_tokens=50, temperature=0, ignore_eos=True)
            next(gen)
            del gen
            gc.collect()
            self.assertEqual(threading.active_count(), threads)
            self.assertEqual(len(ctx.generate(self.PROMPT, max_tokens=2).ids()), 2)

    def test_closing_the_context_stops_its_generation(self):
        threads = threading.active_count()
        ctx = edgelm.Context(self.model)
        gen = ctx.generate(self.PROMPT, max_tokens=50, temperature=0, ignore_eos=True)
        next(gen)
        ctx.close()
        self.assertEqual(threading.active_count(), threads)
        self.assertEqual(gen.stop, "callback")
        with self.assertRaises(StopIteration):
            next(gen)

    def test_one_generation_at_a_time(self):
        with edgelm.Context(self.model) as ctx:
            gen = ctx.generate(self.PROMPT, max_tokens=5, temperature=0)
            next(gen)
            with self.assertRaises(edgelm.Error):
                ctx.decode([1])
            with self.assertRaises(edgelm.Error):
                next(ctx.generate(self.PROMPT, max_tokens=5))
            gen.close()
            ctx.decode([1])

    def test_context_full_is_an_error(self):
        with edgelm.Context(self.model, n_ctx=4) as ctx:
            with self.assertRaises(edgelm.ContextFull) as cm:
                ctx.generate("a b c d e f g h i j", max_tokens=2).text()
            self.assertTrue(cm.exception.message)

    def test_confidence(self):
        with edgelm.Context(self.model) as ctx:
            gen = ctx.generate(self.PROMPT, max_tokens=12, temperature=0.8, seed=3,
                               margin_threshold=0.5)
            toks = list(gen)
        c = gen.confidence
        self.assertEqual(c.n_tokens, len(toks))
        self.assertAlmostEqual(c.mean_logprob, sum(t.logprob for t in toks) / len(toks),
                               places=4)
        self.assertAlmostEqual(c.min_margin, min(t.margin for t in toks), places=5)
        self.assertAlmostEqual(c.frac_below, sum(t.margin < 0.5 for t in toks) / len(toks),
                               places=5)
        self.assertTrue(all(t.logprob <= 0 and t.margin >= 0 for t in toks))


class TestChat(Base):
    def cli_template(self, *extra, messages=MESSAGES, template=CHATML):
        tmpl = write("template.jinja", template)
        msgs = write("chat.json", json.dumps(messages))
        rc, out, err = cli("template", "--template", tmpl, "--messages", msgs, *extra)
        self.assertEqual(rc, 0, err)
        return out.decode()

    def test_template_equals_the_c_api(self):
        self.assertEqual(edgelm.chat_template(MESSAGES, template=CHATML),
                         self.cli_template())
        self.assertEqual(edgelm.chat_template(MESSAGES, template=CHATML,
                                              add_generation_prompt=False),
                         self.cli_template("--no-generation-prompt"))
        tmpl = "{{ bos_token }}" + CHATML + "{{ eos_token }}"
        self.assertEqual(self.model.chat_template(MESSAGES, template=tmpl, bos_token="<B>",
                                                  eos_token="<E>"),
                         self.cli_template("--bos", "<B>", "--eos", "<E>", template=tmpl))

    def test_template_errors(self):
        with self.assertRaises(edgelm.TemplateError) as cm:
            edgelm.chat_template(MESSAGES, template="{{ raise_exception('no, thanks') }}")
        self.assertEqual(cm.exception.message, "no, thanks")
        with self.assertRaises(edgelm.TemplateError):
            edgelm.chat_template(MESSAGES, template="{% for %}")
        if not self.model.info.vocab_only:
            try:
                self.model.chat_template(MESSAGES)
            except edgelm.Unsupported as e:
                self.assertIn("chat template", e.message)

    def test_chat_equals_the_cli(self):
        tmpl = write("chatml.jinja", CHATML)
        question = "Tell me a story about a cat."
        rc, out, err = cli("run", "--chat", "-m", MODEL_PATH, "--template", tmpl,
                           "-p", question, "-n", "12", "--temp", "0")
        self.assertEqual(rc, 0, err)
        with edgelm.Context(self.model) as ctx:
            gen = ctx.chat([{"role": "user", "content": question}], template=CHATML,
                           max_tokens=12, temperature=0)
            reply = gen.text()
            self.assertEqual(reply + "\n", out.decode())
            eot = set(self.model.end_of_turn(CHATML))
            self.assertFalse(eot & {t.id for t in gen.tokens})
            # A second turn evaluates only its new tokens.
            before = ctx.n_evaluated
            history = [("user", question), ("assistant", reply), ("user", "And then?")]
            ctx.chat(history, template=CHATML, max_tokens=4, temperature=0).text()
            full = len(self.model.tokenize(edgelm.chat_template(history, self.model,
                                                                template=CHATML)))
            self.assertLess(ctx.n_evaluated - before, full)


class TestState(Base):
    def setUp(self):
        if not _lib.has("elm_state_save_buffer"):
            self.skipTest("this libedgelm has no elm_state_* functions yet")

    def test_bytes_round_trip(self):
        ids = self.model.tokenize("Once upon a time, there was")
        with edgelm.Context(self.model, n_ctx=64) as a, edgelm.Context(self.model,
                                                                       n_ctx=64) as b:
            a.decode(ids)
            data = a.state_bytes()
            self.assertIsInstance(data, bytes)
            b.load_state_bytes(data)
            self.assertEqual(b.tokens, ids)
            a.decode([ids[1]])
            b.decode([ids[1]])
            self.assertEqual(a.logits(), b.logits())

    def test_file_round_trip_and_mismatch(self):
        path = os.path.join(TMP, "state.bin")
        ids = self.model.tokenize("Once upon a time")
        with edgelm.Context(self.model, n_ctx=64) as a:
            a.decode(ids)
            a.save_state(path)
        with edgelm.Context(self.model, n_ctx=64) as b:
            b.load_state(path)
            self.assertEqual(b.tokens, ids)
        with edgelm.Context(self.model, n_ctx=32) as c:
            with self.assertRaises(edgelm.StateMismatch):
                c.load_state(path)
            self.assertEqual(c.n_past, 0)
        with edgelm.Context(self.model, n_ctx=64) as d:
            with self.assertRaises(edgelm.Error):
                d.load_state_bytes(b"not a state")


class TestSigning(unittest.TestCase):
    """Signed model files: the package's keygen/sign/verify and trusted_key,
    checked against the edgelm command's keygen/sign/verify."""

    def setUp(self):
        if not _lib.has("elm_sign_verify"):
            self.skipTest("this libedgelm has no signed models yet")
        self.dir = tempfile.mkdtemp(dir=TMP)
        self.model = os.path.join(self.dir, "m.gguf")
        shutil.copyfile(MODEL_PATH, self.model)

    def test_python_signs_the_cli_verifies(self):
        pub, key = edgelm.keygen(os.path.join(self.dir, "k"))
        self.assertEqual(edgelm.sign(self.model, key), self.model + ".sig")
        rc, out, err = cli("verify", "--pub", pub, self.model)
        self.assertEqual(rc, 0, err)
        got = edgelm.verify(self.model, pub)
        self.assertIn(got["key_id"], out.decode())
        with edgelm.Model(self.model, trusted_key=pub) as m:
            self.assertGreater(m.info.n_vocab, 0)

    def test_refusals(self):
        rc, _, err = cli("keygen", "--out", os.path.join(self.dir, "a"))
        self.assertEqual(rc, 0, err)
        rc, _, err = cli("keygen", "--out", os.path.join(self.dir, "b"))
        self.assertEqual(rc, 0, err)
        a_pub, b_pub = (os.path.join(self.dir, n + ".pub") for n in "ab")
        # Missing .sig.
        with self.assertRaises(edgelm.SignatureError) as cm:
            edgelm.Model(self.model, trusted_key=a_pub)
        self.assertTrue(cm.exception.message)
        with self.assertRaises(edgelm.SignatureError):
            edgelm.verify(self.model, a_pub)
        rc, _, err = cli("sign", "--key", os.path.join(self.dir, "a.key"), self.model)
        self.assertEqual(rc, 0, err)
        edgelm.verify(self.model, a_pub)
        # Another key.
        with self.assertRaises(edgelm.SignatureError):
            edgelm.Model(self.model, trusted_key=b_pub)
        # One flipped byte.
        with open(self.model, "r+b") as f:
            f.seek(os.path.getsize(self.model) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 1]))
        with self.assertRaises(edgelm.SignatureError):
            edgelm.Model(self.model, trusted_key=a_pub)
        with self.assertRaises(edgelm.SignatureError):
            edgelm.verify(self.model, a_pub)


class TestReadme(unittest.TestCase):
    def test_the_example_runs(self):
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        section = readme[readme.index("### Python"):]
        code = section[section.index("```python\n") + 10:]
        code = code[:code.index("```")]
        self.assertLessEqual(len(code.strip().splitlines()), 10)
        code = code.replace('"stories260K.gguf"', repr(MODEL_PATH))
        r = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        want = greedy_cli("Once upon a time", 32)[len("Once upon a time"):-1]
        self.assertIn(want, r.stdout.decode())


class TestInstall(unittest.TestCase):
    """`cmake --install` puts the package where Python finds it and the
    package finds the installed library without EDGELM_LIB."""

    def test_installed_package(self):
        build = os.environ.get("ELM_BUILD_DIR")
        if not build or not shutil.which("cmake"):
            self.skipTest("ELM_BUILD_DIR is not set (run through ctest)")
        prefix = os.path.join(TMP, "prefix")
        subprocess.run(["cmake", "--install", build, "--prefix", prefix], check=True,
                       stdout=subprocess.DEVNULL)
        site = os.path.join(prefix, "lib", "python3", "dist-packages")
        self.assertTrue(os.path.exists(os.path.join(site, "edgelm", "__init__.py")))
        env = {k: v for k, v in os.environ.items() if k not in ("EDGELM_LIB", "PYTHONPATH")}
        env["PYTHONPATH"] = site
        code = ("import edgelm; print(edgelm.library_path); "
                "m = edgelm.Model(%r); print(len(m.tokenize('hello')) > 0)" % MODEL_PATH)
        out = subprocess.check_output([sys.executable, "-c", code], env=env, cwd=TMP).decode()
        lib_path, ok = out.split()
        self.assertTrue(os.path.realpath(lib_path).startswith(os.path.realpath(prefix)),
                        lib_path)
        self.assertEqual(ok, "True")


if __name__ == "__main__":
    unittest.main()

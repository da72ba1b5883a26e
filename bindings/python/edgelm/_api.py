"""Model, Context and Generation: the Python face of include/edgelm.h."""

import ctypes
import math
import queue
import threading
import weakref
from ctypes import byref, c_size_t, c_uint32, sizeof
from dataclasses import dataclass, field

from . import _lib
from ._errors import ERR_BUFFER_TOO_SMALL, Error, check, error, InvalidArgument
from ._lib import lib

_ERR_SIZE = 1024
_MODES = {"fast": 0, "exact": 1}
_STOP_REASONS = {0: "n_predict", 1: "eog", 2: "callback", 3: "context_full"}


def _b(s):
    return s.encode() if isinstance(s, str) else s


def _s(b):
    return b.decode("utf-8", "replace") if b is not None else None


def _errbuf():
    return ctypes.create_string_buffer(_ERR_SIZE)


def _ids(tokens):
    """A C array of elm_token from a sequence of ints."""
    tokens = list(tokens)
    return (_lib.elm_token * len(tokens))(*tokens), len(tokens)


def _sized_bytes(call):
    """Runs call(buf, cap, byref(len)) twice when the first buffer is too
    small (the library's buffer rule); returns the bytes."""
    cap = 256
    for _ in range(3):
        buf = ctypes.create_string_buffer(cap)
        n = c_size_t(0)
        st = call(buf, cap, byref(n))
        if st == ERR_BUFFER_TOO_SMALL and n.value + 1 > cap:
            cap = n.value + 1
            continue
        return st, buf.raw[:n.value]
    return st, b""


def version():
    """The library's version, "MAJOR.MINOR.PATCH" (elm_version)."""
    return lib.elm_version().decode()


def devices():
    """The devices edgelm can run on (elm_devices), as dicts."""
    n = c_size_t(0)
    check(lib.elm_devices(None, 0, byref(n)))
    cap = max(n.value, 1)
    arr = (_lib.elm_device_info * cap)()
    arr[0].struct_size = sizeof(_lib.elm_device_info)  # the array's stride
    check(lib.elm_devices(arr, cap, byref(n)))
    out = []
    heap_fields = ("heap_size", "heap_budget", "heap_device_local")
    for d in arr[:min(n.value, cap)]:
        info = {name: (_s(getattr(d, name)) if isinstance(getattr(d, name), bytes)
                       else getattr(d, name))
                for name, _ in _lib.elm_device_info._fields_
                if name != "struct_size" and name not in heap_fields}
        info["heaps"] = [{"size": d.heap_size[i], "budget": d.heap_budget[i],
                          "device_local": d.heap_device_local[i]}
                         for i in range(min(d.n_heaps, _lib.ELM_MAX_HEAPS))]
        out.append(info)
    return out


def _need_symbol(name):
    if not _lib.has(name):
        raise error(4, "this libedgelm has no %s" % name)


def keygen(prefix):
    """Writes a new Ed25519 key pair, PREFIX.pub and PREFIX.key (as `edgelm
    keygen --out PREFIX`); never overwrites. Needs a libedgelm with signing."""
    _need_symbol("elm_sign_keygen")
    err = _errbuf()
    check(lib.elm_sign_keygen(_b(str(prefix)), err, _ERR_SIZE), lambda: _s(err.value))
    return str(prefix) + ".pub", str(prefix) + ".key"


def sign(model_path, secret_key):
    """Signs the file: writes MODEL.sig with the secret key file (as `edgelm
    sign`). Returns the .sig path."""
    _need_symbol("elm_sign_file")
    err = _errbuf()
    check(lib.elm_sign_file(_b(str(model_path)), _b(str(secret_key)), err, _ERR_SIZE),
          lambda: _s(err.value))
    return str(model_path) + ".sig"


def verify(model_path, public_key):
    """Checks MODEL.sig against the public key file over the whole file (as
    `edgelm verify`). Returns {"key_id": hex str, "signed_at": UTC seconds}
    raises SignatureError when it does not verify."""
    _need_symbol("elm_sign_verify")
    err = _errbuf()
    key_id = ctypes.create_string_buffer(17)
    when = ctypes.c_int64(0)
    st = lib.elm_sign_verify(_b(str(model_path)), _b(str(public_key)), key_id, byref(when),
                             err, _ERR_SIZE)
    check(st, lambda: _s(err.value))
    return {"key_id": _s(key_id.value), "signed_at": when.value}


@dataclass(frozen=True)
class ModelInfo:
    """elm_model_get_info, with strings as str."""
    path: str
    name: str
    arch: str
    tokenizer_model: str
    tokenizer_pre: str
    file_size: int
    weights_bytes: int
    gguf_version: int
    n_tensors: int
    n_vocab: int
    n_ctx_train: int
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    head_dim: int
    n_rot: int
    rope_theta: float
    rope_freq_scale: float
    rope_scaling: str
    rope_neox: bool
    has_rope_freqs: bool
    rms_eps: float
    tied_embeddings: bool
    add_bos: bool
    bos: int
    eos: int
    vocab_only: bool
    features: str

    def __getitem__(self, key):  # dict-like access too: info["n_vocab"]
        return getattr(self, key)


class _Handle:
    """An owned library handle in self._h, freed by close() (idempotent),
    also on `with` exit and garbage collection."""

    _what = "handle"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def handle(self):
        if self._h is None:
            raise InvalidArgument(1, f"the {self._what} is closed")
        return self._h


class Model(_Handle):
    """A loaded GGUF model (elm_model_load). Use as a context manager or call
    close(); contexts created on it keep it alive until they are closed.

    device: "cpu" (default), "auto", "vulkan", "vulkan:N".
    trusted_key: the path of an Ed25519 public key; the model must then carry
    a valid signature by it (PATH.sig), else edgelm.SignatureError.
    vocab_only: load the tokenizer and metadata only.
    """

    _what = "model"

    def __init__(self, path, device="cpu", trusted_key=None, vocab_only=False):
        self._h = None
        self.path = str(path)
        p = _lib.elm_model_params()
        lib.elm_model_params_init(byref(p), sizeof(p))
        p.device = _b(device)
        p.vocab_only = bool(vocab_only)
        if trusted_key is not None:
            # A library from before signed models would ignore the field:
            # refuse rather than load an unchecked file.
            _need_symbol("elm_sign_verify")
            p.trusted_key = _b(str(trusted_key))
        h = ctypes.c_void_p()
        err = _errbuf()
        st = lib.elm_model_load(_b(self.path), byref(p), byref(h), err, _ERR_SIZE)
        check(st, lambda: _s(err.value))
        self._h = h
        self._eot = {}
        self._contexts = weakref.WeakSet()
        self._info = None

    # -- lifetime
    def close(self):
        """Frees the model (elm_model_free); idempotent."""
        if self._h is not None:
            for c in list(self._contexts):  # a model outlives its contexts
                c.close()
            lib.elm_model_free(self._h)
            self._h = None


    # -- facts
    @property
    def info(self):
        """The model's hyperparameters and provenance (a ModelInfo)."""
        if self._info is not None:
            return self._info
        i = _lib.out_struct(_lib.elm_model_info)
        check(lib.elm_model_get_info(self.handle, byref(i)))
        vals = {}
        for name, _ in _lib.elm_model_info._fields_:
            if name == "struct_size":
                continue
            v = getattr(i, name)
            vals[name] = _s(v) if isinstance(v, bytes) else ("" if v is None and
                                                             name in _STR_FIELDS else v)
        self._info = ModelInfo(**vals)
        return self._info

    @property
    def n_vocab(self):
        return self.info.n_vocab

    # -- tokenizer
    def tokenize(self, text, add_special=True, parse_special=None):
        """The token ids of `text` (str or bytes). add_special: prepend BOS
        where the vocabulary asks for it. parse_special (default: as
        add_special): recognize the text of control tokens."""
        if parse_special is None:
            parse_special = add_special
        data = _b(text)
        cap = len(data) + 8
        for _ in range(2):
            arr = (_lib.elm_token * cap)()
            n = c_size_t(0)
            st = lib.elm_tokenize(self.handle, data, len(data), bool(add_special),
                                  bool(parse_special), arr, cap, byref(n))
            if st == ERR_BUFFER_TOO_SMALL:
                cap = n.value
                continue
            check(st, "cannot tokenize the text")
            return list(arr[:n.value])
        raise error(st)

    def detokenize(self, ids, errors="replace"):
        """The text of token ids (invalid UTF-8 becomes U+FFFD)."""
        arr, n = _ids(ids)
        st, raw = _sized_bytes(lambda buf, cap, ln: lib.elm_detokenize(self.handle, arr, n,
                                                                      buf, cap, ln))
        check(st, lambda: "cannot detokenize: a token id is outside the vocabulary "
                          "of %d tokens?" % self.n_vocab)
        return raw.decode("utf-8", errors)

    def token_to_piece(self, token):
        """The bytes of one token as they appear in text."""
        st, raw = _sized_bytes(lambda buf, cap, ln: lib.elm_token_to_piece(self.handle,
                                                                          int(token), buf,
                                                                          cap, ln))
        check(st, lambda: "token id %d: no such token (vocabulary %d)" % (token, self.n_vocab))
        return raw

    def is_eog(self, token):
        """True for end-of-generation ids (EOS, EOT, ...)."""
        return bool(lib.elm_token_is_eog(self.handle, int(token)))

    # -- chat
    def chat_template(self, messages, add_generation_prompt=True, template=None,
                      bos_token=None, eos_token=None, now=0):
        """Renders a conversation (a list of {"role", "content"} dicts or
        (role, content) pairs) with the model's chat template or `template`
        (Jinja source), as elm_chat_apply_template."""
        return chat_template(messages, self, add_generation_prompt, template, bos_token,
                             eos_token, now)

    def end_of_turn(self, template=None):
        """The ids that end an assistant turn (elm_chat_end_of_turn)."""
        key = template
        if key not in self._eot:
            tmpl = _b(template)
            err = _errbuf()
            n = c_size_t(0)
            st = lib.elm_chat_end_of_turn(self.handle, tmpl, None, 0, byref(n), err, _ERR_SIZE)
            cap = max(n.value, 1)
            arr = (_lib.elm_token * cap)()
            if st in (0, ERR_BUFFER_TOO_SMALL):
                st = lib.elm_chat_end_of_turn(self.handle, tmpl, arr, cap, byref(n), err,
                                              _ERR_SIZE)
            check(st, lambda: _s(err.value))
            self._eot[key] = list(arr[:n.value])
        return list(self._eot[key])

    def context(self, **kwargs):
        """A new Context on this model (see Context)."""
        return Context(self, **kwargs)


_STR_FIELDS = {"path", "name", "arch", "tokenizer_model", "tokenizer_pre", "rope_scaling",
               "features"}


def chat_template(messages, model=None, add_generation_prompt=True, template=None,
                  bos_token=None, eos_token=None, now=0):
    """elm_chat_apply_template: `model` may be None when `template` is given."""
    pairs = []
    for m in messages:
        role, content = (m["role"], m["content"]) if isinstance(m, dict) else m
        pairs.append((_b(role), _b(content)))
    msgs = (_lib.elm_chat_message * max(len(pairs), 1))()
    for i, (role, content) in enumerate(pairs):
        msgs[i].role, msgs[i].content = role, content
    p = _lib.elm_chat_params()
    lib.elm_chat_params_init(byref(p), sizeof(p))
    p.add_generation_prompt = bool(add_generation_prompt)
    p.bos_token, p.eos_token = _b(bos_token), _b(eos_token)
    p.now = int(now)
    err = _errbuf()
    h = model.handle if model is not None else None
    st, raw = _sized_bytes(lambda buf, cap, ln: lib.elm_chat_apply_template(
        h, _b(template), msgs, len(pairs), byref(p), buf, cap, ln, err, _ERR_SIZE))
    check(st, lambda: _s(err.value))
    return raw.decode("utf-8", "replace")


@dataclass(frozen=True)
class Token:
    """One generated token, as elm_token_info reports it."""
    id: int
    text: str        # the complete UTF-8 this token produced (may be "")
    logprob: float   # log-probability under the raw logits
    margin: float    # highest minus second-highest raw logit
    top1_logit: float
    index: int       # 0 for the first generated token
    raw: bytes = b""  # text's bytes

    @property
    def token(self):
        return self.id


@dataclass
class Confidence:
    """A confidence summary of generated tokens (elm_confidence): the mean
    log-probability, the smallest margin and the fraction of tokens whose
    margin is below `margin_threshold` (default 1.0)."""
    margin_threshold: float = 1.0
    n_tokens: int = 0
    mean_logprob: float = 0.0
    min_margin: float = math.inf
    frac_below: float = 0.0
    _c: object = field(default=None, repr=False, compare=False)
    _sum: float = field(default=0.0, repr=False, compare=False)
    _below: int = field(default=0, repr=False, compare=False)

    def add(self, tok, info=None):
        """Folds one token in: through elm_confidence_add when the library
        has it (given the elm_token_info), else from the token's fields."""
        if info is not None and _lib.has("elm_confidence_add"):
            if self._c is None:
                self._c = _lib.out_struct(_lib.elm_confidence)
                self._c.margin_threshold = self.margin_threshold
            check(lib.elm_confidence_add(byref(self._c), info))
            c = self._c
            self.n_tokens, self.mean_logprob = c.n_tokens, c.mean_logprob
            self.min_margin, self.frac_below = c.min_margin, c.frac_below
            return
        self.n_tokens += 1
        self._sum += tok.logprob
        self._below += tok.margin < self.margin_threshold
        self.mean_logprob = self._sum / self.n_tokens
        self.min_margin = min(self.min_margin, tok.margin)
        self.frac_below = self._below / self.n_tokens


@dataclass(frozen=True)
class Stats:
    """elm_stats of one generation."""
    load_ms: float
    prompt_ms: float
    ttft_ms: float
    gen_ms: float
    n_prompt: int
    n_gen: int
    prompt_tps: float
    gen_tps: float
    peak_rss_bytes: int
    stop: str  # "n_predict", "eog", "callback", "context_full"
    device: str
    n_fallback_nodes: int


class Context(_Handle):
    """One stream over a model (elm_context_new): its KV cache and sampler
    state. Use from one thread at a time; a context manager, or close().

    n_ctx: tokens of context (0: the model's, at most 4096); n_batch: most
    tokens per forward pass; n_threads (0: physical cores); mode: "fast" or
    "exact"; logits_all: keep the logits of every token of a decode.
    """

    _what = "context"

    def __init__(self, model, n_ctx=0, mode="fast", n_batch=0, n_threads=0, logits_all=False,
                 pin_threads=False):
        self._h = None
        if mode not in _MODES:
            raise InvalidArgument(1, "mode must be one of %s, not %r" % (sorted(_MODES), mode))
        self.model = model  # kept alive while the context is
        p = _lib.elm_context_params()
        lib.elm_context_params_init(byref(p), sizeof(p))
        p.n_ctx, p.n_batch, p.n_threads = int(n_ctx), int(n_batch), int(n_threads)
        p.mode = _MODES[mode]
        p.logits_all, p.pin_threads = bool(logits_all), bool(pin_threads)
        h = ctypes.c_void_p()
        err = _errbuf()
        st = lib.elm_context_new(model.handle, byref(p), byref(h), err, _ERR_SIZE)
        check(st, lambda: _s(err.value))
        self._h = h
        model._contexts.add(self)
        self.mode = mode
        self._busy = threading.Lock()
        self._generations = weakref.WeakSet()  # their _consume generators

    def close(self):
        """Frees the context (elm_context_free), after stopping a generation
        that is still running on it; idempotent."""
        if self._h is not None:
            for g in list(self._generations):
                try:
                    g.close()
                except ValueError:  # running in another thread: a misuse
                    pass
            lib.elm_context_free(self._h)
            self._h = None


    def _check(self, st):
        check(st, lambda: _s(lib.elm_context_last_error(self._h)))

    def _use(self):
        if not self._busy.acquire(blocking=False):
            raise InvalidArgument(1, "the context is generating: finish or close that "
                                     "generation first (a context is one stream)")
        self._busy.release()

    # -- facts
    @property
    def n_ctx(self):
        return lib.elm_context_n_ctx(self.handle)

    @property
    def n_past(self):
        """Tokens in the KV cache."""
        return lib.elm_context_n_past(self.handle)

    @property
    def n_evaluated(self):
        """Tokens run through the model since creation, re-evaluations included."""
        return lib.elm_context_n_evaluated(self.handle)

    @property
    def tokens(self):
        """The token ids in the context, in order (a list)."""
        n = self.n_past
        ptr = lib.elm_context_tokens(self.handle)
        return list(ptr[:n]) if n and ptr else []

    @property
    def device(self):
        return _s(lib.elm_context_device(self.handle))

    @property
    def notice(self):
        return _s(lib.elm_context_notice(self.handle))

    @property
    def memory(self):
        m = _lib.out_struct(_lib.elm_memory_usage)
        self._check(lib.elm_context_memory(self.handle, byref(m)))
        return {n: getattr(m, n) for n, _ in m._fields_ if n != "struct_size"}

    # -- evaluation
    def decode(self, ids):
        """Runs the model on `ids` after the context's tokens (elm_decode)."""
        self._use()
        arr, n = _ids(ids)
        self._check(lib.elm_decode(self.handle, arr, n))

    def logits(self, i=-1):
        """The n_vocab logits of token i of the last decode (-1: the last),
        as a list of floats (a copy)."""
        ptr = lib.elm_get_logits(self.handle, int(i))
        if not ptr:
            raise InvalidArgument(1, "no logits: nothing was decoded since the context was "
                                     "created, reset or truncated, or i is out of range")
        return list(ptr[:self.model.n_vocab])

    def reset(self):
        """Forgets every token."""
        self._use()
        self._check(lib.elm_context_reset(self.handle))

    def truncate(self, n):
        """Rolls the context back to its first n tokens."""
        self._use()
        if n < 0:
            raise InvalidArgument(1, "truncate(%d): n must be >= 0" % n)
        self._check(lib.elm_context_truncate(self.handle, int(n)))

    def reuse_prefix(self, ids):
        """Keeps the longest common prefix of the context and `ids` (at most
        len(ids) - 1 tokens); returns how many were kept. The caller then
        decodes ids[kept:]."""
        self._use()
        ids = list(ids)
        if _lib.has("elm_context_reuse_prefix"):
            arr, n = _ids(ids)
            kept = c_uint32(0)
            self._check(lib.elm_context_reuse_prefix(self.handle, arr, n, byref(kept)))
            return kept.value
        have, kept = self.tokens, 0
        while kept < min(len(have), len(ids) - 1) and have[kept] == ids[kept]:
            kept += 1
        self.truncate(kept)
        return kept

    # -- saved states (elm_state_*: present in newer libraries)
    def _need(self, name):
        if not _lib.has(name):
            raise Error(4, "this libedgelm has no %s" % name)

    def save_state(self, path):
        """Writes the context's state (tokens, KV cache) to a file."""
        self._use()
        self._need("elm_state_save")
        self._check(lib.elm_state_save(self.handle, _b(str(path))))

    def load_state(self, path):
        """Restores a state written by save_state (same model, mode, n_ctx)."""
        self._use()
        self._need("elm_state_load")
        self._check(lib.elm_state_load(self.handle, _b(str(path))))

    def state_bytes(self):
        """The context's state as bytes."""
        self._use()
        self._need("elm_state_save_buffer")
        n = c_size_t(0)
        st = lib.elm_state_save_buffer(self.handle, None, 0, byref(n))
        if st != ERR_BUFFER_TOO_SMALL:
            self._check(st)
        buf = ctypes.create_string_buffer(max(n.value, 1))
        self._check(lib.elm_state_save_buffer(self.handle, buf, n.value, byref(n)))
        return buf.raw[:n.value]

    def load_state_bytes(self, data):
        """Restores a state from state_bytes()."""
        self._use()
        self._need("elm_state_load_buffer")
        data = bytes(data)
        buf = ctypes.create_string_buffer(data, len(data))
        self._check(lib.elm_state_load_buffer(self.handle, buf, len(data)))

    # -- generation
    def generate(self, prompt, max_tokens=128, temperature=None, top_k=None, top_p=None,
                 min_p=None, repeat_penalty=None, repeat_last_n=None, seed=None,
                 add_special=None, parse_special=None, ignore_eos=False, stop_tokens=(),
                 margin_threshold=1.0):
        """Generates after `prompt` (str, or a list of token ids evaluated
        after the context's tokens) and returns a Generation: iterate it for
        the Tokens as they are produced (`break` stops generation), or call
        .text() for the whole text. Sampling options left as None keep the
        library's defaults (elm_sampler_params_init); temperature=0 is
        greedy. stop_tokens: ids that end generation (the token is neither
        yielded nor kept), like a chat's end of turn. max_tokens < 0: until
        an end-of-generation token or the end of the context."""
        return Generation(self, prompt, max_tokens, dict(
            temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
            repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n, seed=seed),
            add_special, parse_special, ignore_eos, stop_tokens, margin_threshold)

    def chat(self, messages, max_tokens=-1, template=None, **kwargs):
        """One assistant reply to a conversation: renders `messages` with the
        chat template (the model's or `template`), keeps the longest prefix
        the context already holds, evaluates the rest and generates until an
        end-of-turn token (elm_chat_end_of_turn). Returns a Generation; the
        reply's text is .text(). Keyword options: as generate()."""
        text = chat_template(messages, self.model, True, template)
        ids = self.model.tokenize(text, add_special=True, parse_special=True)
        bos = self.model.info.bos
        if len(ids) >= 2 and bos >= 0 and ids[0] == bos and ids[1] == bos:
            ids = ids[1:]  # the template wrote BOS and the vocabulary added one
        if not ids:
            raise InvalidArgument(1, "the conversation renders to no tokens")
        if len(ids) > self.n_ctx:
            raise error(6, "the conversation is %d tokens long but the context holds %d"
                        % (len(ids), self.n_ctx))
        kept = self.reuse_prefix(ids)
        stop = set(kwargs.pop("stop_tokens", ())) | set(self.model.end_of_turn(template))
        return self.generate(ids[kept:], max_tokens=max_tokens, stop_tokens=stop, **kwargs)


_DONE = object()


class _Run:
    """What one elm_generate needs and reports: shared by the worker thread
    and the consumer. It holds no reference to the Generation, so that an
    abandoned Generation is freed (and stops its thread) at once."""

    def __init__(self, ctx, prompt, max_tokens, sampling, add_special, parse_special,
                 ignore_eos, stop_tokens, margin_threshold):
        self.ctx = ctx
        self.tokens = []
        self.stats = None
        self.stop = None
        self.stopped_by_token = False
        self.confidence = Confidence(margin_threshold=margin_threshold)
        self.stop_tokens = frozenset(int(t) for t in stop_tokens)
        self.items = queue.Queue()
        self.resume = threading.Semaphore(0)
        self.cancel = False
        self.thread = None
        sp = _lib.elm_sampler_params()
        lib.elm_sampler_params_init(byref(sp), sizeof(sp))
        for name, value in sampling.items():
            if value is not None:
                setattr(sp, name, value)
        gp = _lib.elm_generate_params()
        lib.elm_generate_params_init(byref(gp), sizeof(gp))
        gp.n_predict = int(max_tokens)
        if add_special is not None:
            gp.add_bos = bool(add_special)
        if parse_special is not None:
            gp.parse_special = bool(parse_special)
        gp.ignore_eos = bool(ignore_eos)
        self.sp = sp  # the pointers below borrow these: keep them alive
        gp.sampler = ctypes.pointer(sp)
        self.cb = _lib.elm_token_callback(self.on_token)
        gp.callback = self.cb
        self.prompt = b""
        if isinstance(prompt, (str, bytes)):
            self.prompt = _b(prompt)
        else:
            self.ids, n = _ids(prompt)
            gp.prompt_tokens = ctypes.cast(self.ids, ctypes.POINTER(_lib.elm_token))
            gp.n_prompt_tokens = n
        self.gp = gp

    # -- in the worker thread
    def on_token(self, info_p, user):
        try:
            tok = _token(info_p.contents)
            if tok.id in self.stop_tokens:
                self.items.put(("stop", None))
                return False
            self.confidence.add(tok, info_p)
            self.items.put(("token", tok))
            self.resume.acquire()  # until the consumer asks for the next token
            return not self.cancel
        except BaseException as e:  # an exception must not cross into C
            self.items.put(("error", e))
            return False

    def work(self):
        stats = _lib.out_struct(_lib.elm_stats)
        try:
            st = lib.elm_generate(self.ctx._h, self.prompt, len(self.prompt), byref(self.gp),
                                  byref(stats))
            msg = _s(lib.elm_context_last_error(self.ctx._h)) if st else ""
            self.items.put(("done", (st, msg, stats)))
        except BaseException as e:
            self.items.put(("error", e))
        finally:
            self.items.put((_DONE, None))

    # -- in the consumer
    def finish(self, value, raise_errors):
        st, msg, stats = value
        if st != 0:
            if raise_errors:
                check(st, msg)
            return
        self.stats = _stats(stats)
        self.stop = "stop_token" if self.stopped_by_token else self.stats.stop

    def drain(self):
        """After an early exit: the figures of the generation that stopped."""
        while True:
            try:
                kind, value = self.items.get_nowait()
            except queue.Empty:
                return
            self.stopped_by_token |= kind == "stop"
            if kind == "done":
                self.finish(value, raise_errors=False)


def _consume(run):
    """The generator behind Generation: starts the worker, yields its tokens,
    and on any exit cancels it and joins the thread."""
    ctx = run.ctx
    if not ctx._busy.acquire(blocking=False):
        raise InvalidArgument(1, "the context is already generating (one stream at a time)")
    try:
        ctx.handle  # raises when closed
        run.thread = threading.Thread(target=run.work, name="edgelm-generate", daemon=True)
        run.thread.start()
        while True:
            kind, value = run.items.get()
            if kind == "token":
                run.tokens.append(value)
                yield value
                run.resume.release()
            elif kind == "stop":
                run.stopped_by_token = True
            elif kind == "error":
                raise value
            elif kind == "done":
                run.finish(value, raise_errors=True)
            elif kind is _DONE:
                return
    finally:
        run.cancel = True
        run.resume.release()  # wakes a callback waiting for the consumer
        if run.thread is not None:
            run.thread.join()
            run.drain()
        ctx._busy.release()


class Generation:
    """A running elm_generate, iterated token by token.

    elm_generate calls back for each token; it runs in a worker thread that
    hands each token over and waits until the consumer asks for the next one,
    so generation never runs ahead of the iterator. Leaving the loop early
    (break, an exception, close(), or dropping the Generation) makes the
    waiting callback return false, which stops elm_generate, and joins the
    thread. Nothing runs until the first next().

    Once it ends: .stats (Stats), .stop ("n_predict", "eog", "callback",
    "context_full", or "stop_token"), .confidence (Confidence), and all along
    .tokens (the Tokens so far).
    """

    def __init__(self, ctx, prompt, max_tokens, sampling, add_special, parse_special,
                 ignore_eos, stop_tokens, margin_threshold):
        self._run = _Run(ctx, prompt, max_tokens, sampling, add_special, parse_special,
                         ignore_eos, stop_tokens, margin_threshold)
        self._iter = _consume(self._run)
        ctx._generations.add(self._iter)

    tokens = property(lambda self: self._run.tokens)
    stats = property(lambda self: self._run.stats)
    stop = property(lambda self: self._run.stop)
    confidence = property(lambda self: self._run.confidence)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._iter)

    def close(self):
        """Stops the generation (if running) and waits for it to end."""
        self._iter.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self._iter.close()
        except Exception:
            pass

    def text(self):
        """Runs the generation to its end; returns the whole generated text."""
        for _ in self:
            pass
        return "".join(t.text for t in self.tokens)

    def ids(self):
        """Runs the generation to its end; returns the generated ids."""
        for _ in self:
            pass
        return [t.id for t in self.tokens]


def _field_present(info, name):
    """Whether the library's elm_token_info (info.struct_size bytes) has `name`."""
    f = getattr(_lib.elm_token_info, name)
    return f.offset + f.size <= info.struct_size


def _token(info):
    raw = ctypes.string_at(info.text, info.text_len) if info.text and info.text_len else b""

    def get(name, default):
        return getattr(info, name) if _field_present(info, name) else default
    return Token(id=info.token, text=raw.decode("utf-8", "replace"),
                 logprob=get("logprob", math.nan), margin=get("margin", math.nan),
                 top1_logit=get("top1_logit", math.nan), index=get("index", 0), raw=raw)


def _stats(s):
    return Stats(load_ms=s.load_ms, prompt_ms=s.prompt_ms, ttft_ms=s.ttft_ms, gen_ms=s.gen_ms,
                 n_prompt=s.n_prompt, n_gen=s.n_gen, prompt_tps=s.prompt_tps,
                 gen_tps=s.gen_tps, peak_rss_bytes=s.peak_rss_bytes,
                 stop=_STOP_REASONS.get(s.stop, str(s.stop)), device=_s(s.device),
                 n_fallback_nodes=s.n_fallback_nodes)

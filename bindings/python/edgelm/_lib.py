"""ctypes declarations of libedgelm.so: the structs of include/edgelm.h with
their exact C layout, and the prototypes of the functions the package uses.

The ABI rule (README, "The ABI rule"): every struct that crosses the library
boundary starts with `size_t struct_size`, the caller's size. Parameter
structs are filled by their *_params_init function (which also sets
struct_size); output structs get struct_size set here before each call.
Fields are only ever appended in edgelm.h, so they are only appended here.

Finding the library, in order: $EDGELM_LIB (a file), next to this package
(an installed layout: PREFIX/lib/python3/dist-packages/edgelm ->
PREFIX/lib/libedgelm.so, or the multiarch directory), the build tree of a
source checkout (build/libedgelm.so), then ctypes.util.find_library.
"""

import ctypes
import ctypes.util
import os
import sysconfig
from ctypes import (
    CFUNCTYPE, POINTER, Structure, c_bool, c_char, c_char_p, c_double, c_float,
    c_int, c_int32, c_int64, c_size_t, c_uint32, c_uint64, c_void_p,
)

elm_token = c_int32
elm_status = c_int   # enum
elm_mode = c_int     # enum
elm_stop_reason = c_int  # enum
ELM_MAX_HEAPS = 8


class elm_device_info(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("name", c_char * 256),
        ("backend", c_char * 16),
        ("type", c_char * 16),
        ("driver", c_char * 256),
        ("id", c_char * 32),
        ("api_version", c_uint32),
        ("n_heaps", c_uint32),
        ("heap_size", c_uint64 * ELM_MAX_HEAPS),
        ("heap_budget", c_uint64 * ELM_MAX_HEAPS),
        ("heap_device_local", c_bool * ELM_MAX_HEAPS),
        ("subgroup_size", c_uint32),
        ("shared_memory_bytes", c_uint32),
        ("max_storage_buffer_range", c_uint64),
        ("max_memory_allocation_size", c_uint64),
        ("fp16", c_bool),
        ("storage16", c_bool),
        ("storage8", c_bool),
        ("int_dot", c_bool),
        ("subgroup_arithmetic", c_bool),
        ("uma", c_bool),
        ("n_threads", c_uint32),
    ]


class elm_model_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("device", c_char_p),
        ("vocab_only", c_bool),
        ("trusted_key", c_char_p),
    ]


class elm_model_info(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("path", c_char_p),
        ("name", c_char_p),
        ("arch", c_char_p),
        ("tokenizer_model", c_char_p),
        ("tokenizer_pre", c_char_p),
        ("file_size", c_uint64),
        ("weights_bytes", c_uint64),
        ("gguf_version", c_uint32),
        ("n_tensors", c_uint32),
        ("n_vocab", c_uint32),
        ("n_ctx_train", c_uint32),
        ("n_embd", c_uint32),
        ("n_layer", c_uint32),
        ("n_head", c_uint32),
        ("n_head_kv", c_uint32),
        ("n_ff", c_uint32),
        ("head_dim", c_uint32),
        ("n_rot", c_uint32),
        ("rope_theta", c_float),
        ("rope_freq_scale", c_float),
        ("rope_scaling", c_char_p),
        ("rope_neox", c_bool),
        ("has_rope_freqs", c_bool),
        ("rms_eps", c_float),
        ("tied_embeddings", c_bool),
        ("add_bos", c_bool),
        ("bos", elm_token),
        ("eos", elm_token),
        ("vocab_only", c_bool),
        ("features", c_char_p),
    ]


class elm_context_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("n_ctx", c_uint32),
        ("n_batch", c_uint32),
        ("n_threads", c_int),
        ("mode", elm_mode),
        ("logits_all", c_bool),
        ("pin_threads", c_bool),
    ]


class elm_memory_usage(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("weights_bytes", c_uint64),
        ("kv_bytes", c_uint64),
        ("scratch_bytes", c_uint64),
        ("device_bytes", c_uint64),
    ]


class elm_sampler_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("temperature", c_float),
        ("top_k", c_int32),
        ("top_p", c_float),
        ("min_p", c_float),
        ("repeat_penalty", c_float),
        ("repeat_last_n", c_int32),
        ("seed", c_uint64),
    ]


class elm_token_info(Structure):
    _fields_ = [
        ("struct_size", c_size_t),  # the library's size: fields past it do not exist
        ("token", elm_token),
        ("text", c_void_p),         # not NUL-terminated: text_len bytes
        ("text_len", c_size_t),
        ("logprob", c_float),
        ("top1_logit", c_float),
        ("margin", c_float),
        ("index", c_uint32),
    ]


class elm_confidence(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("n_tokens", c_uint32),
        ("mean_logprob", c_double),
        ("min_margin", c_float),
        ("margin_threshold", c_float),
        ("frac_below", c_float),
        ("sum_logprob", c_double),
        ("n_below", c_uint32),
    ]


elm_token_callback = CFUNCTYPE(c_bool, POINTER(elm_token_info), c_void_p)


class elm_generate_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("n_predict", c_int32),
        ("add_bos", c_bool),
        ("parse_special", c_bool),
        ("ignore_eos", c_bool),
        ("sampler", POINTER(elm_sampler_params)),
        ("callback", elm_token_callback),
        ("user_data", c_void_p),
        ("prompt_tokens", POINTER(elm_token)),
        ("n_prompt_tokens", c_size_t),
    ]


class elm_stats(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("load_ms", c_double),
        ("prompt_ms", c_double),
        ("ttft_ms", c_double),
        ("gen_ms", c_double),
        ("n_prompt", c_uint32),
        ("n_gen", c_uint32),
        ("prompt_tps", c_double),
        ("gen_tps", c_double),
        ("peak_rss_bytes", c_uint64),
        ("stop", elm_stop_reason),
        ("device", c_char * 32),
        ("n_fallback_nodes", c_uint64),
    ]


class elm_chat_message(Structure):  # fixed: no struct_size (edgelm.h)
    _fields_ = [("role", c_char_p), ("content", c_char_p)]


class elm_chat_params(Structure):
    _fields_ = [
        ("struct_size", c_size_t),
        ("add_generation_prompt", c_bool),
        ("bos_token", c_char_p),
        ("eos_token", c_char_p),
        ("now", c_int64),
    ]


def out_struct(cls):
    """An output struct with struct_size set (ELM_INIT)."""
    s = cls()
    s.struct_size = ctypes.sizeof(cls)
    return s


P = POINTER
_c = P(c_void_p)  # opaque handle out-parameter (elm_model **, elm_context **)

# name: (restype, argtypes). Functions marked optional may be absent from an
# older library; the package checks hasattr(lib, name) before using them.
_PROTOTYPES = {
    "elm_strerror": (c_char_p, [elm_status]),
    "elm_version": (c_char_p, []),
    "elm_devices": (elm_status, [P(elm_device_info), c_size_t, P(c_size_t)]),
    "elm_model_params_init": (None, [P(elm_model_params), c_size_t]),
    "elm_model_load": (elm_status, [c_char_p, P(elm_model_params), _c, c_char_p, c_size_t]),
    "elm_model_free": (None, [c_void_p]),
    "elm_model_get_info": (elm_status, [c_void_p, P(elm_model_info)]),
    "elm_tokenize": (elm_status, [c_void_p, c_char_p, c_size_t, c_bool, c_bool,
                                  P(elm_token), c_size_t, P(c_size_t)]),
    "elm_token_to_piece": (elm_status, [c_void_p, elm_token, c_char_p, c_size_t, P(c_size_t)]),
    "elm_detokenize": (elm_status, [c_void_p, P(elm_token), c_size_t, c_char_p, c_size_t,
                                    P(c_size_t)]),
    "elm_token_is_eog": (c_bool, [c_void_p, elm_token]),
    "elm_context_params_init": (None, [P(elm_context_params), c_size_t]),
    "elm_context_new": (elm_status, [c_void_p, P(elm_context_params), _c, c_char_p, c_size_t]),
    "elm_context_free": (None, [c_void_p]),
    "elm_context_last_error": (c_char_p, [c_void_p]),
    "elm_context_reset": (elm_status, [c_void_p]),
    "elm_context_n_ctx": (c_uint32, [c_void_p]),
    "elm_context_memory": (elm_status, [c_void_p, P(elm_memory_usage)]),
    "elm_context_device": (c_char_p, [c_void_p]),
    "elm_context_notice": (c_char_p, [c_void_p]),
    "elm_context_n_past": (c_uint32, [c_void_p]),
    "elm_context_truncate": (elm_status, [c_void_p, c_uint32]),
    "elm_context_tokens": (P(elm_token), [c_void_p]),
    "elm_context_n_evaluated": (c_uint64, [c_void_p]),
    "elm_context_reuse_prefix": (elm_status, [c_void_p, P(elm_token), c_size_t, P(c_uint32)]),
    "elm_state_save": (elm_status, [c_void_p, c_char_p]),
    "elm_state_load": (elm_status, [c_void_p, c_char_p]),
    "elm_state_save_buffer": (elm_status, [c_void_p, c_void_p, c_size_t, P(c_size_t)]),
    "elm_state_load_buffer": (elm_status, [c_void_p, c_void_p, c_size_t]),
    "elm_decode": (elm_status, [c_void_p, P(elm_token), c_size_t]),
    "elm_get_logits": (P(c_float), [c_void_p, c_int32]),
    "elm_sampler_params_init": (None, [P(elm_sampler_params), c_size_t]),
    "elm_confidence_add": (elm_status, [P(elm_confidence), P(elm_token_info)]),
    "elm_generate_params_init": (None, [P(elm_generate_params), c_size_t]),
    "elm_generate": (elm_status, [c_void_p, c_char_p, c_size_t, P(elm_generate_params),
                                  P(elm_stats)]),
    "elm_chat_params_init": (None, [P(elm_chat_params), c_size_t]),
    "elm_chat_apply_template": (elm_status, [c_void_p, c_char_p, P(elm_chat_message), c_size_t,
                                             P(elm_chat_params), c_char_p, c_size_t, P(c_size_t),
                                             c_char_p, c_size_t]),
    "elm_chat_end_of_turn": (elm_status, [c_void_p, c_char_p, P(elm_token), c_size_t,
                                          P(c_size_t), c_char_p, c_size_t]),
    # edgelm_tools.h (outside the ABI promise): signed model files.
    "elm_sign_keygen": (elm_status, [c_char_p, c_char_p, c_size_t]),
    "elm_sign_file": (elm_status, [c_char_p, c_char_p, c_char_p, c_size_t]),
    "elm_sign_verify": (elm_status, [c_char_p, c_char_p, c_char_p, P(c_int64), c_char_p,
                                     c_size_t]),
}


def _candidates():
    env = os.environ.get("EDGELM_LIB")
    if env:
        yield env
        return  # an explicit choice is not second-guessed
    here = os.path.dirname(os.path.abspath(__file__))
    # Installed: PREFIX/lib[/MULTIARCH]/python3/dist-packages/edgelm.
    libdir = os.path.normpath(os.path.join(here, "..", "..", ".."))
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    for d in (libdir, os.path.join(libdir, multiarch), os.path.dirname(libdir)):
        yield os.path.join(d, "libedgelm.so.0")
        yield os.path.join(d, "libedgelm.so")
    # A source checkout: bindings/python/edgelm -> build/.
    root = os.path.normpath(os.path.join(here, "..", "..", ".."))
    yield os.path.join(root, "build", "libedgelm.so")
    found = ctypes.util.find_library("edgelm")
    if found:
        yield found


def _load():
    tried = []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            tried.append(path)
            continue
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            tried.append("%s (%s)" % (path, e))
    raise OSError("edgelm: cannot find libedgelm.so (set EDGELM_LIB to its path); tried: "
                  + ", ".join(tried))


lib, lib_path = _load()

for _name, (_res, _args) in _PROTOTYPES.items():
    if hasattr(lib, _name):
        _f = getattr(lib, _name)
        _f.restype = _res
        _f.argtypes = _args


def has(name):
    """Whether the loaded library exports `name` (functions added later)."""
    return hasattr(lib, name)

#!/usr/bin/env python3
"""pretok_split.py: an independent implementation of the pre-tokenizer
splitting rule, on Python's `regex` module, for tests/test_tokenizer_pre.c.

stdin: lines "R <regex> <regex> ...", hex-encoded regexes in PCRE2 syntax
that apply to the texts after them, and "T <text>", hex-encoded UTF-8 texts.
stdout: for each text, the byte offsets at which its words end, separated by
spaces, one line per text.

The rule (llama.cpp's unicode_regex_split, Hugging Face's Sequence of
Split(behavior="Isolated")): the first regex cuts the text into its matches
and the gaps between them; every later regex cuts each piece the same way, as
if the piece were the whole text.

Exit status 3 when the `regex` module is missing (the test then skips).
"""
import re
import sys

try:
    import regex
except ImportError:
    sys.exit(3)


def pcre_to_python(pattern):
    # PCRE2's \x{HHHH} is spelled \UHHHHHHHH in Python; nothing else changes.
    return re.sub(r"\\x\{([0-9A-Fa-f]+)\}", lambda m: "\\U%08X" % int(m.group(1), 16), pattern)


def split(text, compiled):
    pieces = [text]
    for rx in compiled:
        out = []
        for piece in pieces:
            pos = 0
            for m in rx.finditer(piece):
                if m.start() > pos:
                    out.append(piece[pos:m.start()])
                if m.end() > m.start():
                    out.append(m.group())
                pos = m.end()
            if pos < len(piece):
                out.append(piece[pos:])
        pieces = out
    return pieces


def main():
    compiled = []
    for line in sys.stdin.read().split("\n"):
        kind, _, rest = line.partition(" ")
        if kind == "R":
            compiled = [regex.compile(pcre_to_python(bytes.fromhex(h).decode("utf-8")))
                        for h in rest.split()]
        elif kind == "T":
            text = bytes.fromhex(rest).decode("utf-8")
            ends, k = [], 0
            for piece in split(text, compiled):
                k += len(piece.encode("utf-8"))
                ends.append(str(k))
            print(" ".join(ends))


if __name__ == "__main__":
    main()

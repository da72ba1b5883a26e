#!/usr/bin/env python3
"""Reads an abidiff report (run with --harmless --no-added-syms) on stdin and
exits 0 when every change it lists is allowed by the ABI rule of
include/edgelm.h: fields appended at the end of a struct (at or past its old
size), seen through the functions that take those structs, and enumerators
appended to an enum (insertions that change no existing value). Anything else,
or any line this script does not recognise, is a break (exit 1), so that an
unfamiliar report fails closed."""
import re
import sys

ALLOWED = [
    r"Functions changes summary: 0 Removed, \d+ Changed( \(\d+ filtered out\))?, \d+ Added( \(\d+ filtered out\))? functions?",
    r"Variables changes summary: 0 Removed, \d+ Changed( \(\d+ filtered out\))?, \d+ Added variables?",
    r"\d+ functions? with some indirect sub-type change:?",
    r"\[C\] 'function .*' at \S+ has some indirect sub-type changes:",
    r"parameter \d+ of type '.*' has sub-type changes:",
    r"return type changed:",
    r"in pointed to type '.*'( at \S+)? ?:?",
    r"in referenced type '.*'( at \S+)? ?:?",
    r"in unqualified underlying type '.*'( at \S+)? ?:?",
    r"underlying type '(struct|union) \w+' at \S+ changed:",
    r"type of '.*' changed:",
    r"underlying type 'enum \w+' at \S+ changed:",
    r"underlying type 'enum \w+' changed at \S+, as reported earlier",
    # A struct whose (appended) change was listed, and checked, in full before.
    r"pointed to type 'typedef \w+' changed at \S+, as reported earlier",
    r"type size hasn't changed",
]
ENUM_INSERTIONS = re.compile(r"\d+ enumerator insertions?:")
ENUMERATOR = re.compile(r"'\w+::\w+' value '\d+'")
SIZE = re.compile(r"type size changed from (\d+) to (\d+) \(in bits\)")
INSERTIONS = re.compile(r"\d+ data member insertions?:")
MEMBER = re.compile(r"'.*',? at offset (\d+) \(in bits\)( at \S+)?")

def main():
    old_size = None
    in_insertions = False
    in_enum = False
    bad = []
    for raw in sys.stdin:
        line = raw.strip()
        if not line:
            continue
        m = SIZE.fullmatch(line)
        if m:
            old_size, new_size = int(m.group(1)), int(m.group(2))
            if new_size < old_size:
                bad.append(raw.rstrip())
            in_insertions = False
            continue
        if INSERTIONS.fullmatch(line):
            in_insertions = old_size is not None
            if not in_insertions:
                bad.append(raw.rstrip())
            continue
        if ENUM_INSERTIONS.fullmatch(line):
            in_enum = True
            continue
        if in_enum and ENUMERATOR.fullmatch(line):
            continue
        in_enum = False
        m = MEMBER.fullmatch(line)
        if m and in_insertions:
            if int(m.group(1)) < old_size:
                bad.append(raw.rstrip() + "   <- inserted before the old end")
            continue
        in_insertions = False
        if any(re.fullmatch(p, line) for p in ALLOWED):
            if line.startswith("underlying type"):
                old_size = None
            continue
        bad.append(raw.rstrip())
    if bad:
        print("abi-check: changes the ABI rule does not allow:", file=sys.stderr)
        for b in bad:
            print("  " + b, file=sys.stderr)
        return 1
    return 0

if __name__ == "__main__":
    sys.exit(main())

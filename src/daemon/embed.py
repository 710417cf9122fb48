#!/usr/bin/env python3
"""Embed a JSON file into C as `const char NAME[]` (NUL-terminated) and `NAME_len`.

The file is parsed first, so an invalid document fails the build."""
import json
import sys


def main():
    src, out, name = sys.argv[1:4]
    data = open(src, "rb").read()
    json.loads(data)  # fail the build on invalid JSON
    with open(out, "w") as f:
        f.write(f"/* Generated from {src.split('/')[-1]} by embed.py: do not edit. */\n")
        f.write("#include <stddef.h>\n\n")
        f.write(f"const char {name}[] = {{\n")
        for i in range(0, len(data), 16):
            f.write("\t" + ", ".join(f"0x{b:02x}" for b in data[i:i + 16]) + ",\n")
        f.write("\t0x00,\n};\n")
        f.write(f"const size_t {name}_len = {len(data)};\n")


if __name__ == "__main__":
    main()

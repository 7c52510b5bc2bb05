#!/usr/bin/env python3
"""tests/readme_examples.py - writes the README's tested examples to files, for the tests that run them.

Usage: readme_examples.py README TAG OUTDIR. Every fenced ```python or ```sh block that follows a
line "<!-- tested: TAG -->" (blank lines between allowed) becomes OUTDIR/NN.py or OUTDIR/NN.sh.
Exit 1 when there is none.
"""
import os
import re
import sys

readme, tag, outdir = sys.argv[1:4]
text = open(readme, encoding="utf-8").read()
blocks = re.findall(r"<!-- tested: " + re.escape(tag) + r" -->\s*\n```(python|sh)\n(.*?)```", text, re.S)
if not blocks:
    print(f"{readme}: no example marked <!-- tested: {tag} -->", file=sys.stderr)
    sys.exit(1)
os.makedirs(outdir, exist_ok=True)
for i, (lang, code) in enumerate(blocks):
    with open(os.path.join(outdir, f"{i:02d}.{'py' if lang == 'python' else 'sh'}"), "w") as f:
        f.write(code)

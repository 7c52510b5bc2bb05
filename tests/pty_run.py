#!/usr/bin/env python3
"""tests/pty_run.py REGEX PROGRAM ARGS...: runs PROGRAM under a pseudo-terminal (stdout and
stderr a terminal, as a user's shell gives them) and prints one line about what it drew:
"EXIT FOUND CLEARED SECONDS GROUP": its exit status; True when REGEX matched the output; True
when the last line clear (ESC [K) came before the last newline (a progress line cleared before
the answer); the wall seconds; REGEX's first group, or - (for the shell tests' progress checks)."""
import os
import pty
import re
import sys
import time

t = time.time()
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
out = b''
while True:
    try:
        b = os.read(fd, 4096)
    except OSError:
        break
    if not b:
        break
    out += b
_, st = os.waitpid(pid, 0)
text = out.decode(errors='replace')
m = re.search(sys.argv[1], text)
group = m.group(1) if m and m.groups() else '-'
print(os.waitstatus_to_exitcode(st), m is not None, text.rfind('\x1b[K') < text.rfind('\n'),
      '%.1f' % (time.time() - t), group)

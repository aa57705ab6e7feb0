"""gdb script (bench/walk/walk.sh): a breakpoint on every function of src/worker,
src/http and src/router; each hit writes its file and function to $HITS."""
import os
import re

import gdb

out = open(os.environ["HITS"], "w")


class Hit(gdb.Breakpoint):
    def stop(self):
        try:
            frame = gdb.selected_frame()
            sal = frame.find_sal()
            f = sal.symtab.filename if sal.symtab else "?"
            out.write(f"{f}\t{frame.name()}\n")
            out.flush()
        except Exception as e:
            out.write(f"?\t{e}\n")
        return False


gdb.execute("set pagination off")
gdb.execute("set confirm off")
places = set()
current = None
for line in gdb.execute("info functions ^proxyd::", to_string=True).splitlines():
    m = re.match(r"File (.*):$", line)
    if m:
        current = m.group(1)
        continue
    if current and current.startswith(("src/worker", "src/http", "src/router")):
        m = re.match(r"(\d+):", line.strip())
        if m:
            places.add((current, m.group(1)))
n = 0
for f, ln in sorted(places):
    try:
        Hit(f"{f}:{ln}", internal=False)
        n += 1
    except Exception:
        pass
out.write(f"# {n} breakpoints\n")
out.flush()
gdb.execute("continue")

#!/usr/bin/env python3
"""Times `updraft up` from process start to the first 200 from /hello, five times with an
empty compile cache and five times with a warm one, and prints the medians.

Usage: scripts/startup.py BIN APP_DIR   (build the app first, e.g. with `updraft build`)
"""
import subprocess, time, urllib.request, shutil, statistics, sys, os
bin, app = sys.argv[1], sys.argv[2]
def once(clear):
    if clear: shutil.rmtree(os.path.join(app, ".updraft/cache"), ignore_errors=True)
    t0 = time.perf_counter()
    p = subprocess.Popen([bin, "up", app, "--no-build", "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    base = None; compile_line = ""
    for line in p.stdout:
        if "function `hello`" in line: compile_line = line.strip()
        if line.startswith("listening on "): base = line.split()[-1]; break
    while True:
        try:
            urllib.request.urlopen(base + "/hello").read(); break
        except Exception: time.sleep(0.001)
    t = (time.perf_counter() - t0) * 1000
    p.terminate(); p.wait()
    return t, compile_line
for clear in (True, False):
    runs = [once(clear) for _ in range(5)]
    ts = [r[0] for r in runs]
    print(("cold cache" if clear else "warm cache"), "up->first 200 median %.0f ms" % statistics.median(ts), "| runs:", ["%.0f" % t for t in ts], "|", runs[-1][1])

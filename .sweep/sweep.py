import json, os, subprocess, sys, time
jobs = json.loads(open(sys.argv[1]).read())
out = "/tmp"; final = os.environ.get("OUT", "/tmp")
procs = []
for i, (name, size, steps, over, threads) in enumerate(jobs):
    cmd = [sys.executable, ".sweep/one.py", name, size, str(steps), json.dumps(over), str(threads)]
    procs.append((i, subprocess.Popen(cmd, stdout=open(f"{out}/job{i}.log", "w"), stderr=subprocess.STDOUT)))
deadline = time.time() + float(sys.argv[2])
while time.time() < deadline and any(p.poll() is None for _, p in procs):
    time.sleep(5)
for i, p in procs:
    if p.poll() is None: p.kill()
res = []
for i, _ in procs:
    lines = open(f"{out}/job{i}.log").read().strip().splitlines()
    res.append(f"{jobs[i]} -> {lines[-1] if lines else 'nothing'}")
open(f"{final}/summary.txt", "w").write("\n".join(res) + "\n")
print("\n".join(res))

import json, sys, time, torch
name, size, steps, over, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
from snmfm.tasks import get_task
t = get_task(name)
ctx = over.pop("context", None)
if ctx: t.context = ctx
if over: t.train_config = t.train_config.replace(**over)
m, met = t.train(size=size, steps=steps, progress=False)
print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in met.items() if k not in ("task", "split")}), flush=True)

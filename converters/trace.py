"""ActivityTrace: what the SNN did, per site and per time step, as counts (not tensors).

Sites are named by module path in the QANN:
* neuron sites (a former quantizer, e.g. ``trunk.blocks.0.attn.qkv.quant``): events with positive
  and with negative payload (binary: +1 and -1 spikes), the sum of |payload|, the bits of one
  event's payload (`payload_bits`, per site), active rows (vectors over the last dim with at least
  one event), neuron updates (neurons whose input changed or that sent an event this step);
* non-spiking units (``trunk.blocks.0.ln1``, ``...attn.softmax``, ``...mlp.act``): calls, the rows
  whose input changed this step and so were re-evaluated by the digital unit;
* embeddings (``embed.tok``): lookups (at step 1 only: tokens are presented once).
All counts are summed over the `n_samples` inputs of the run.  `trace.coding` names the coding
(converters.codings) that produced it.  Schema ``snmfm.activity_trace/2``; ``/1`` files (binary
spikes only) still load, as coding "binary" with payload_abs = pos + neg.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from converters import _kernels, _triton

SITE_KINDS = ("neuron", "nonspiking", "embed")
SCHEMA = "snmfm.activity_trace/2"
SCHEMAS_READ = ("snmfm.activity_trace/1", SCHEMA)
_COUNTERS = ("pos", "neg", "active_rows", "updates", "payload_abs")  # recorder columns, in order


@dataclass
class SiteActivity:
    kind: str
    shape: tuple  # per-sample shape of the site's tensor
    pos: np.ndarray = None          # events with positive payload per step (binary: +1 spikes)
    neg: np.ndarray = None          # events with negative payload per step (binary: -1 spikes)
    active_rows: np.ndarray = None  # rows with >= 1 event (neurons) / re-evaluated rows (units)
    updates: np.ndarray = None      # neuron updates (neurons) / element evaluations (units)
    extra: dict = field(default_factory=dict)
    payload_abs: np.ndarray = None  # sum of |payload| per step (binary: pos + neg)
    payload_bits: int = 0           # bits of one event's payload (binary: 0, a bare ±1 spike)

    def __post_init__(self):
        if self.payload_abs is None and self.pos is not None and self.neg is not None:
            self.payload_abs = np.asarray(self.pos, dtype=np.int64) + np.asarray(self.neg, dtype=np.int64)

    @property
    def events(self) -> np.ndarray:
        """Messages sent per step (events of either payload sign)."""
        return self.pos + self.neg

    @property
    def spikes(self) -> np.ndarray:
        """Alias of `events` (the name from when every event was a ±1 spike)."""
        return self.events

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "shape": list(self.shape)}
        for k in _COUNTERS:
            d[k] = getattr(self, k).tolist()
        d["payload_bits"] = int(self.payload_bits)
        d["extra"] = self.extra
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SiteActivity":
        arrs = {k: np.asarray(d[k], dtype=np.int64) for k in _COUNTERS if k in d}
        return cls(kind=d["kind"], shape=tuple(d["shape"]), **arrs, extra=d.get("extra", {}),
                   payload_bits=int(d.get("payload_bits", 0)))


@dataclass
class ActivityTrace:
    n_samples: int
    steps: int
    t_settle: int | None  # last step with any spike (None: not settled within `steps`)
    sites: dict[str, SiteActivity] = field(default_factory=dict)
    t_settle_per_sample: list[int] = field(default_factory=list)
    coding: str = "binary"  # the coding that produced the trace (converters.codings)

    def total_events(self) -> int:
        """Messages sent by all neuron sites over the run (binary: spikes)."""
        return int(sum(s.events.sum() for s in self.sites.values() if s.kind == "neuron"))

    def total_spikes(self) -> int:
        """Alias of `total_events`."""
        return self.total_events()

    def total_payload(self) -> int:
        """Sum of |payload| over all events (binary: equals total_events)."""
        return int(sum(s.payload_abs.sum() for s in self.sites.values() if s.kind == "neuron"))

    def events_per_step(self) -> np.ndarray:
        out = np.zeros(self.steps, dtype=np.int64)
        for s in self.sites.values():
            if s.kind == "neuron":
                out += s.events
        return out

    def spikes_per_step(self) -> np.ndarray:
        """Alias of `events_per_step`."""
        return self.events_per_step()

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "coding": self.coding, "n_samples": self.n_samples, "steps": self.steps,
                "t_settle": self.t_settle, "t_settle_per_sample": list(self.t_settle_per_sample),
                "sites": {k: v.to_dict() for k, v in self.sites.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "ActivityTrace":
        if d.get("schema") not in SCHEMAS_READ:
            raise ValueError(f"not an snmfm activity trace (schema {d.get('schema')!r}; "
                             f"readable: {', '.join(SCHEMAS_READ)})")
        return cls(n_samples=d["n_samples"], steps=d["steps"], t_settle=d["t_settle"],
                   sites={k: SiteActivity.from_dict(v) for k, v in d["sites"].items()},
                   t_settle_per_sample=list(d.get("t_settle_per_sample", [])),
                   coding=d.get("coding", "binary"))

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path) -> "ActivityTrace":
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"activity trace {p} not found")
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except (json.JSONDecodeError, KeyError) as e:
            raise ValueError(f"activity trace {p} is corrupt: {e}") from e


def _array_fields(site: SiteActivity) -> list[str]:
    """Names of a site's per-step count arrays (every field holding a numpy array)."""
    return [f.name for f in fields(site) if isinstance(getattr(site, f.name), np.ndarray)]


def merge_traces(traces) -> ActivityTrace:
    """One ActivityTrace from the traces of disjoint batches of one network: per-step counts summed
    per site (shorter runs padded with quiet steps), n_samples summed, t_settle the latest (None
    when any batch did not settle), per-sample settle steps concatenated."""
    traces = list(traces)
    if not traces:
        raise ValueError("merge_traces needs at least one trace")
    if len(traces) == 1:
        return traces[0]
    codings = sorted({getattr(t, "coding", "binary") for t in traces})
    if len(codings) > 1:
        raise ValueError(f"cannot merge traces of different codings ({', '.join(codings)})")
    steps = max(t.steps for t in traces)
    sites: dict[str, SiteActivity] = {}
    for t in traces:
        for name, s in t.sites.items():
            arrays = _array_fields(s)
            if name not in sites:
                sites[name] = replace(s, extra=dict(s.extra),
                                      **{k: np.zeros(steps, dtype=np.int64) for k in arrays})
            m = sites[name]
            for k in arrays:
                a = getattr(s, k)
                getattr(m, k)[:len(a)] += a
    settles = [t.t_settle for t in traces]
    return replace(traces[0], n_samples=sum(t.n_samples for t in traces), steps=steps,
                   t_settle=None if any(v is None for v in settles) else max(settles), sites=sites,
                   t_settle_per_sample=[v for t in traces for v in t.t_settle_per_sample])


def trim_trace(trace: ActivityTrace, steps: int) -> ActivityTrace:
    """The trace cut to its first `steps` time steps (the run continued in chunks after the network
    went quiet; those quiet steps would not run on a chip that stops at T_settle, and a chip run
    for a fixed T below T_settle sees only the first T)."""
    if steps >= trace.steps:
        return trace
    if steps < 1:
        raise ValueError(f"cannot trim a trace to {steps} steps (at least 1)")
    sites = {n: replace(s, **{k: getattr(s, k)[:steps] for k in _array_fields(s)})
             for n, s in trace.sites.items()}
    return replace(trace, steps=steps, sites=sites, t_settle_per_sample=list(trace.t_settle_per_sample))


class TraceRecorder:
    """Collects counts while a SpikingModel runs chunk after chunk.

    Per site the counters live in one int64 array [steps, 5] (events with positive / negative
    payload, active rows, updates, sum of |payload|) that grows by doubling, and a unit's previous input in one buffer overwritten in
    place.  Why not a list of small arrays per chunk: small objects that outlive a chunk get carved
    out of the chunk's freed large tensors, so those cannot be reused by the next chunk and the
    heap grew by about 4 MB per time step (multimodal small, batch 32: 0.4 -> 1.6 GB over 258 steps;
    measured with VmRSS after each chunk)."""

    def __init__(self, n_samples: int, coding: str = "binary"):
        self.n_samples = n_samples
        self.coding = coding
        self.payload_bits: dict[str, int] = {}
        self.rows: dict[str, list] = {}  # name -> [counts int64 [capacity, 4], steps filled]
        self.kinds: dict[str, str] = {}
        self.shapes: dict[str, tuple] = {}
        self.last_spike_step = np.full(n_samples, -1, dtype=np.int64)
        self.step0 = 0  # global index of the chunk's first step
        self.prev_inputs: dict[str, torch.Tensor] = {}
        self.active: np.ndarray | None = None  # samples still running, after `compact`
        # Off the CPU (a GPU run) the counters stay on the device until `finish`: per site a list
        # of [T, 5] int64 tensors, one per chunk, and the per-sample last step with an event; so
        # recording adds no host synchronisation to a chunk.
        self.dev_rows: dict[str, list[torch.Tensor]] = {}
        self.dev_last: torch.Tensor | None = None

    def _append_device(self, name: str, kind: str, shape: tuple, counts: torch.Tensor) -> None:
        if name not in self.dev_rows:
            self.dev_rows[name] = []
            self.kinds[name] = kind
            self.shapes[name] = shape
        self.dev_rows[name].append(counts)

    def _append(self, name: str, kind: str, shape: tuple, counts: np.ndarray) -> None:
        """Add a chunk's counters, counts [T, 5] (pos, neg, active_rows, updates, payload_abs) per
        step; [T, 4] (a ±1 coding's counters) gets payload_abs = pos + neg."""
        if counts.shape[1] == 4:
            counts = np.concatenate([counts, counts[:, :1] + counts[:, 1:2]], 1)
        r = self.rows.get(name)
        if r is None:
            r = self.rows[name] = [np.zeros((max(64, 2 * len(counts)), 5), dtype=np.int64), 0]
            self.kinds[name] = kind
            self.shapes[name] = shape
        buf, n = r
        T = len(counts)
        if n + T > len(buf):
            grown = np.zeros((max(2 * len(buf), n + T), 5), dtype=np.int64)
            grown[:n] = buf[:n]
            r[0] = buf = grown
        buf[n:n + T] = counts
        r[1] = n + T

    def neuron_counts(self, name: str, shape: tuple, stats: np.ndarray, last: np.ndarray,
                      payload_bits: int = 0) -> None:
        """A neuron site's counters for one chunk: stats int64 [T, 5] per step (events with
        positive / negative payload, active rows, neuron updates, sum of |payload|; [T, 4] for ±1
        spikes); last int64 [B], per sample the last step of the chunk (0-based, -1 none) with an
        event.  Called once per layer and chunk: numpy only."""
        self.payload_bits[name] = int(payload_bits)
        last = np.asarray(last, dtype=np.int64)
        vals = np.where(last >= 0, last + self.step0, -1)
        if self.active is None:
            np.maximum(self.last_spike_step, vals, out=self.last_spike_step)
        else:  # a compacted run: last is per sample still running
            self.last_spike_step[self.active] = np.maximum(self.last_spike_step[self.active], vals)
        self._append(name, "neuron", shape, stats)

    def compact(self, keep: np.ndarray, B: int) -> None:
        """The run goes on with the samples `keep` (sorted indices into its current batch of B;
        converters.snn._compact): per-sample state follows them, counts stay summed over all."""
        self.active = keep if self.active is None else self.active[keep]
        idx = torch.from_numpy(np.asarray(keep, dtype=np.int64))
        for name, p in list(self.prev_inputs.items()):
            q = p.reshape(B, -1).index_select(0, idx.to(p.device))
            self.prev_inputs[name] = q.reshape(-1) if p.dim() == 1 else q.reshape(len(keep), *p.shape[1:])

    def neuron(self, name: str, n: torch.Tensor, n0: torch.Tensor, r: torch.Tensor,
               payload_bits: int = 0) -> None:
        """The same counters from tensors (the torch path): n [T, B, ...] integer counts after
        each step, n0 [B, ...] count before the chunk, r [T, B, ...] the targets (QANN codes of
        the accumulated input)."""
        T, B = n.shape[:2]
        o = torch.diff(n.to(torch.int64), dim=0, prepend=n0[None].to(torch.int64))  # payloads
        spk = o.ne(0)
        pos = o.gt(0).reshape(T, -1).sum(1)
        neg = o.lt(0).reshape(T, -1).sum(1)
        pabs = o.abs().reshape(T, -1).sum(1)
        if o.dim() > 2:
            rows = spk.reshape(T, -1, o.shape[-1]).any(-1).reshape(T, -1).sum(1)
        else:
            rows = spk.reshape(T, -1).sum(1)
        # a neuron is updated when its input changed or it spiked (event-driven update)
        rprev = self.prev_inputs.get(name)
        r0 = rprev if rprev is not None else torch.zeros_like(r[0])
        changed = torch.diff(r, dim=0, prepend=r0[None].to(r.dtype)).ne_(0)
        upd = changed.logical_or_(spk).reshape(T, -1).sum(1)
        self.prev_inputs[name] = r[-1].clone()
        per_sample = spk.reshape(T, B, -1).any(-1)  # [T, B]
        steps = torch.arange(T, device=n.device)[:, None].expand(T, B)
        last = torch.where(per_sample, steps, torch.full_like(steps, -1)).amax(0)
        stats = torch.stack([pos, neg, rows, upd, pabs], 1).to(torch.int64)
        if stats.device.type == "cpu":
            self.neuron_counts(name, tuple(o.shape[2:]), stats.numpy(), last.numpy(), payload_bits)
        else:
            self.neuron_device(name, tuple(o.shape[2:]), stats, last, payload_bits)

    def neuron_device(self, name: str, shape: tuple, stats: torch.Tensor, last: torch.Tensor,
                      payload_bits: int = 0) -> None:
        """A neuron site's counters for one chunk as device tensors (the GPU kernel path): stats
        int64 [T, 5] as in `neuron_counts`, last [B] per sample the chunk's last step with an event
        (-1: none).  Stays on the device until `finish`."""
        self.payload_bits[name] = int(payload_bits)
        last = torch.where(last >= 0, last.to(torch.int64) + self.step0, -1)
        self.dev_last = last if self.dev_last is None else torch.maximum(self.dev_last, last)
        self._append_device(name, "neuron", tuple(shape), stats)

    def unit(self, name: str, kind: str, x: torch.Tensor, T: int) -> None:
        """Non-spiking unit input x [T*B, ..., D]: rows whose input changed are re-evaluated."""
        x = x.detach()
        D = x.shape[-1]
        prev = self.prev_inputs.get(name)
        if prev is not None and prev.numel() * T != x.numel():
            prev = None  # the unit's input changed shape since the previous input of a stream
        if _triton.available(x) and x.dtype in (torch.float32, torch.float64) and D <= _triton.MAX_ROW:
            xs = x.reshape(T, -1)
            xs = xs if xs.is_contiguous() else xs.contiguous()
            first = torch.full_like(xs[0], float("nan")) if prev is None else prev.reshape(-1).to(xs.dtype)
            n_rows = _triton.changed_rows(xs, first.contiguous(), D)
            last = xs[-1]
            shape = tuple(x.shape[1:])
        elif _kernels.available() and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
            xs = x.reshape(T, -1).contiguous()
            first = torch.full_like(xs[0], float("nan")) if prev is None else prev.reshape(-1).to(xs.dtype)
            n_rows = np.zeros(T, dtype=np.int64)
            _kernels.changed_rows(xs.numpy(), first.contiguous().numpy(), D, n_rows)
            last = xs[-1]
            shape = tuple(x.shape[1:])
        else:
            x = x.reshape(T, x.shape[0] // T, *x.shape[1:])
            first = torch.full_like(x[0], float("nan")) if prev is None else prev.reshape(x[0].shape)
            prevs = torch.cat([first[None], x[:-1]], 0)
            changed = ~((x == prevs) | (torch.isnan(x) & torch.isnan(prevs)))
            n_rows = changed.reshape(T, -1, D).any(-1).sum(1)
            if n_rows.device.type == "cpu":
                n_rows = n_rows.numpy()
            last = x[-1]
            shape = tuple(x.shape[2:])
        if prev is None or prev.shape != last.shape or prev.dtype != last.dtype:
            self.prev_inputs[name] = last.clone()
        else:
            prev.copy_(last)  # in place: no new long-lived allocation per chunk (class docstring)
        if torch.is_tensor(n_rows):  # on the device: no synchronisation (see __init__)
            counts = torch.zeros((T, 5), dtype=torch.int64, device=n_rows.device)
            counts[:, 2] = n_rows
            counts[:, 3] = n_rows * D
            self._append_device(name, kind, shape, counts)
            return
        counts = np.zeros((T, 5), dtype=np.int64)
        counts[:, 2] = n_rows
        counts[:, 3] = np.asarray(n_rows, dtype=np.int64) * D
        self._append(name, kind, shape, counts)

    def embed(self, name: str, ids: torch.Tensor, T: int) -> None:
        B = ids.shape[0] // T
        counts = np.zeros((T, 5), dtype=np.int64)
        if self.step0 == 0:
            counts[0, 2:] = ids[:B].numel()
        self._append(name, "embed", tuple(ids.shape[1:]), counts)

    def finish(self, steps: int, settled: bool = False) -> ActivityTrace:
        """The trace of a run of `steps` steps; settled: the run is known to be quiet after its last
        step (a one-step coding), so an event at the last step still gives a T_settle."""
        for name, chunks in self.dev_rows.items():  # one transfer per site, at the end
            self._append(name, self.kinds[name], self.shapes[name], torch.cat(chunks).cpu().numpy())
        self.dev_rows = {}
        if self.dev_last is not None:
            np.maximum(self.last_spike_step, self.dev_last.cpu().numpy(), out=self.last_spike_step)
            self.dev_last = None
        sites = {}
        for name, (buf, n) in self.rows.items():
            arrs = {k: buf[:n, i].copy() for i, k in enumerate(_COUNTERS)}
            sites[name] = SiteActivity(kind=self.kinds[name], shape=self.shapes[name], **arrs,
                                       payload_bits=self.payload_bits.get(name, 0))
        last = self.last_spike_step + 1  # steps are 1-based: t_settle = last step with a spike
        t_settle = int(last.max()) if steps > int(last.max()) or settled else None
        return ActivityTrace(n_samples=self.n_samples, steps=steps, t_settle=t_settle, sites=sites,
                             t_settle_per_sample=[int(v) for v in last], coding=self.coding)

"""Spike-packet faults in a SpikingModel run: what the network on chip does to a coding's events.

A spiking site sends events (binary: a +-1 spike; graded / sigma-delta: one event whose integer
payload is the change of the site's code).  Its consumers read the *received* accumulated count:
the sum of the payloads that arrived.  A packet dropped on the network leaves that count short by
its payload from then on (the sender does not know and never resends); a duplicated packet adds
it twice; a payload bit flipped in transit adds the difference of the corrupted and the true
payload.  So the faults act on the counts a site hands its consumers, per step:

    received_t = n_t + sum over faulted events up to t of (payload' - payload)

with n_t the fault-free count.  The faults are drawn per chunk of steps from the events the site
actually sent (`sample_positions`: Binomial(events, rate) of them, uniformly), seeded by the fault's
seed, the site, the batch and the chunk.  Guard (`Mitigation.guard`): the receiving core keeps the
received count as a saturating counter inside the site's [qmin, qmax] (the range every fault-free
count stays in), which bounds duplicates and corrupted payloads; it cannot restore a drop.

The faults are applied through each unit's `fault` hook (converters.neurons.IFNeuron.fault), which
sees the counts the coding computed for a chunk and returns what the consumers receive.

Accumulator, stuck-unit and dead-core faults act on the integer layers and are the same hooks as
for the QANN (snmfm.faults.Injector); `FaultyRun` drives both on a SpikingModel.
"""
from __future__ import annotations

import numpy as np
import torch

from snmfm.faults import FaultError, FaultSpec, Injector, Mitigation, check_fault, flip_bits, rng_for, sample_positions

EVENT_KINDS = ("spike-drop", "spike-duplicate", "payload-bitflip")


def coding_of(snn) -> str:
    return snn.coding


def sites(snn) -> list:
    """(name, unit) of the spiking sites of a SpikingModel."""
    return list(snn.neurons())


class EventFaults:
    """Installs event faults of `spec` on every spiking site of `snn` for a `with` block; call
    `batch(B)` before each batch.  `log`: events (or payload bits) seen and faults injected."""

    def __init__(self, snn, spec: FaultSpec, *, mitigation: Mitigation = Mitigation()):
        if spec.kind not in EVENT_KINDS:
            raise FaultError(f"fault kind {spec.kind!r} is not a spike-packet fault ({', '.join(EVENT_KINDS)})")
        check_fault(spec.kind, spec.rate, "neuromorphic", coding_of(snn))
        self.snn, self.spec, self.mit = snn, spec, mitigation
        self.B, self.batch_index = None, -1
        self._state: dict = {}
        self._patched: list = []
        self.log = {"trials": 0, "faults": 0, "events": 0}
        # events per chunk, per site, of each batch: {batch index: {site: [events, ...]}} (what
        # `events_of_run` records from a fault-free run for `predict_event_faults`)
        self.chunks: dict = {}

    def batch(self, B: int, index: int | None = None) -> None:
        """Start a batch of B inputs; `index` (default: the next one) keys its draws."""
        self.B = int(B)
        self.batch_index = self.batch_index + 1 if index is None else int(index)
        self._state = {}

    def __enter__(self):
        for name, unit in sites(self.snn):
            if unit.fault is not None:
                self.__exit__()
                raise FaultError(f"site {name!r} already has a fault hook installed")
            unit.fault = self._hook(name, unit)
            self._patched.append(unit)
        return self

    def __exit__(self, *exc):
        for unit in self._patched:
            unit.fault = None
        self._patched = []
        return False

    def _hook(self, name, unit):
        pb = unit.payload_bits
        kind = self.spec.kind

        @torch.no_grad()
        def fault(unit, c):
            # torch throughout, in the counts' own dtype (small integers: exact); only the faulted
            # events go through numpy.  received_t = n_t + off + cumsum(d) (no guard), or the
            # saturating counter (guard); `off` / `recv` stay None while nothing was lost.
            if self.B is None:
                raise RuntimeError("call EventFaults.batch(B) before running a batch")
            steps = c.shape[0] // self.B
            cv = c.detach().reshape(steps, -1)
            st = self._state.get(name)
            if st is None:
                st = self._state[name] = {"prev": torch.zeros_like(cv[0]), "off": None, "recv": None, "chunk": 0}
            prev0 = st["prev"]
            e = torch.diff(cv, dim=0, prepend=prev0[None])  # one event per nonzero entry
            e_np = e.numpy() if e.device.type == "cpu" else None   # numpy counts faster on one CPU thread
            n_ev = int(np.count_nonzero(e_np)) if e_np is not None else int(torch.count_nonzero(e))
            st["prev"] = cv[-1].clone()
            st["chunk"] += 1
            self.log["events"] += n_ev
            self.chunks.setdefault(self.batch_index, {}).setdefault(name, []).append(n_ev)
            trials = n_ev * (pb if kind == "payload-bitflip" else 1)
            rng = rng_for(self.spec.seed, "events", name, self.batch_index, st["chunk"])
            pos = sample_positions(trials, self.spec.rate, rng)
            self.log["trials"] += int(trials)
            self.log["faults"] += int(pos.size)
            d = None
            if pos.size:
                ef = e.reshape(-1)
                nz = (np.flatnonzero(e_np) if e_np is not None    # flat event positions, in order
                      else torch.nonzero(ef).squeeze(1).cpu().numpy())
                if kind == "payload-bitflip":
                    ev, inv = np.unique(pos // pb, return_inverse=True)
                    old = ef[torch.as_tensor(nz[ev])].cpu().numpy().astype(np.int64)
                    where, delta = nz[ev], flip_bits(old, inv, pos % pb, pb) - old
                else:
                    where = nz[pos]
                    old = ef[torch.as_tensor(where)].cpu().numpy().astype(np.int64)
                    delta = -old if kind == "spike-drop" else old
                d = (where // e.shape[1], where % e.shape[1], delta.astype(np.float64))   # (step, element, delta)
            if self.mit.guard:  # a saturating received counter
                if d is None and st["recv"] is None:
                    return c                                # nothing lost or corrupted so far
                r = (st["recv"] if st["recv"] is not None else prev0).to(torch.float64)
                e64 = e.to(torch.float64)
                if d is not None:  # the faulted events' deltas added to their events
                    e64.view(-1).index_add_(0, torch.as_tensor(d[0] * e.shape[1] + d[1]).to(c.device),
                                            torch.from_numpy(d[2]).to(c.device))
                recv = torch.empty_like(e64)
                for t in range(steps):
                    r = (r + e64[t]).clamp_(unit.qmin, unit.qmax)
                    recv[t] = r
                last = cv[-1].to(torch.float64)
                st["recv"] = None if torch.equal(r, last) else r.clone()
            else:
                if d is None and st["off"] is None:
                    return c                                # nothing lost or corrupted so far
                recv = cv.to(torch.float64)
                off = st["off"] if st["off"] is not None else torch.zeros_like(recv[0])
                if st["off"] is not None:
                    recv += off[None]
                if d is not None:  # a fault at step t shifts the received count from t on
                    off = off.clone()
                    for t in np.unique(d[0]):
                        sel = d[0] == t
                        cols = torch.as_tensor(d[1][sel]).to(c.device)
                        dv = torch.from_numpy(d[2][sel]).to(c.device)
                        recv[int(t):].index_add_(1, cols, dv.expand(steps - int(t), -1).contiguous())
                        off.index_add_(0, cols, dv)
                st["off"] = off if bool(off.any()) else None
            return recv.to(c.dtype).view(c.shape)
        return fault


def events_of_run(snn, *inputs, index: int = 0, **kw) -> tuple:
    """(SNNResult, {site: [events per chunk]}) of a fault-free run of `snn` on one batch: the
    record `predict_event_faults` replays.  The counts pass through unchanged (rate 0)."""
    ev = EventFaults(snn, FaultSpec("spike-drop", 0.0))
    B = next(x for x in inputs if isinstance(x, torch.Tensor)).shape[0]
    ev.batch(B, index)
    with ev:
        res = snn.run(*inputs, **kw)
    return res, ev.chunks.get(index, {})


def predict_event_faults(chunks: dict, spec: FaultSpec, index: int, payload_bits: dict | None = None) -> dict:
    """{"trials", "faults"} that `EventFaults` draws on batch `index` of a run whose events per
    chunk are `chunks` ({site: [events, ...]}, from `events_of_run`).  Exact while no fault has
    been drawn: until its first fault a faulty run is the fault-free run (same events, same
    chunks, the same seeded draw per site and chunk), so faults == 0 here means the faulty run
    IS the fault-free run, bit for bit, and need not be simulated.  faults > 0 counts only the
    chunks' first draws (the run itself diverges after a fault)."""
    trials = faults = 0
    for name, per_chunk in chunks.items():
        pb = int((payload_bits or {}).get(name, 1)) if spec.kind == "payload-bitflip" else 1
        for k, n in enumerate(per_chunk, start=1):
            t = n * pb
            trials += t
            if t > 0 and spec.rate > 0:
                faults += int(rng_for(spec.seed, "events", name, index, k).binomial(t, spec.rate))
    return {"trials": trials, "faults": faults}


class FaultyRun:
    """One fault scenario on a SpikingModel: `run(*inputs, n_steps=...)` is `snn.run(...)` with the
    faults of `spec` injected (layer hooks or event faults by kind).  Weight faults are not a run
    property: make a faulty QANN (snmfm.faults.flip_weights on a copy) and convert it."""

    def __init__(self, snn, spec: FaultSpec, *, mitigation: Mitigation = Mitigation(), acc_bits: int = 32,
                 dead_outputs: dict | None = None):
        check_fault(spec.kind, spec.rate, "neuromorphic", coding_of(snn))
        if spec.kind == "weight-bitflip":
            raise FaultError("weight bit flips are stored in the weights: apply snmfm.faults.flip_weights "
                             "to a copy of the QANN and convert that")
        self.snn = snn
        if spec.kind in EVENT_KINDS:
            self.inj = EventFaults(snn, spec, mitigation=mitigation)
        else:
            self.inj = Injector(snn.net, spec, mitigation=mitigation, acc_bits=acc_bits, dead_outputs=dead_outputs)

    @property
    def log(self) -> dict:
        return self.inj.log

    def run(self, *inputs, n_steps: int = 1, index: int | None = None, **kw):
        """`snn.run(*inputs, **kw)` with the faults; n_steps: steps of the fault-free run of this
        batch (accumulator flips are drawn among them); index: the batch's index (its draws)."""
        B = next(x for x in inputs if isinstance(x, torch.Tensor)).shape[0]
        if isinstance(self.inj, EventFaults):
            self.inj.batch(B, index)
        else:
            self.inj.batch(B, n_steps, index)
        with self.inj:
            return self.snn.run(*inputs, **kw)

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

    def batch(self, B: int) -> None:
        self.B = int(B)
        self.batch_index += 1
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

        def fault(unit, c):
            if self.B is None:
                raise RuntimeError("call EventFaults.batch(B) before running a batch")
            steps = c.shape[0] // self.B
            cv = c.detach().reshape(steps, -1).cpu().numpy().astype(np.int64)
            st = self._state.get(name)
            if st is None:
                z = np.zeros(cv.shape[1], np.int64)
                st = self._state[name] = {"prev": z, "recv": z.copy(), "chunk": 0}
            prev = np.vstack([st["prev"][None, :], cv[:-1]])
            e = cv - prev                                   # one event per nonzero entry
            nz = np.flatnonzero(e)
            st["prev"] = cv[-1].copy()
            st["chunk"] += 1
            self.log["events"] += int(nz.size)
            trials = nz.size * (pb if self.spec.kind == "payload-bitflip" else 1)
            rng = rng_for(self.spec.seed, "events", name, self.batch_index, st["chunk"])
            pos = sample_positions(trials, self.spec.rate, rng)
            self.log["trials"] += int(trials)
            self.log["faults"] += int(pos.size)
            d = np.zeros(e.size, np.int64)
            ef = e.reshape(-1)
            if pos.size and self.spec.kind == "spike-drop":
                d[nz[pos]] = -ef[nz[pos]]
            elif pos.size and self.spec.kind == "spike-duplicate":
                d[nz[pos]] = ef[nz[pos]]
            elif pos.size:
                ev, inv = np.unique(pos // pb, return_inverse=True)
                old = ef[nz[ev]]
                d[nz[ev]] = flip_bits(old, inv, pos % pb, pb) - old
            d = d.reshape(e.shape)
            if not d.any() and np.array_equal(st["recv"], prev[0]):
                st["recv"] = cv[-1].copy()
                return c                                    # nothing lost or corrupted so far
            if self.mit.guard:  # a saturating received counter
                recv = np.empty_like(cv)
                r = st["recv"]
                for t in range(steps):
                    r = np.clip(r + e[t] + d[t], unit.qmin, unit.qmax)
                    recv[t] = r
            else:
                recv = st["recv"][None, :] + np.cumsum(e + d, axis=0)
            st["recv"] = recv[-1].copy()
            return torch.from_numpy(recv.astype(np.float64)).to(c.dtype).view(c.shape)
        return fault


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

    def run(self, *inputs, n_steps: int = 1, **kw):
        B = next(x for x in inputs if isinstance(x, torch.Tensor)).shape[0]
        if isinstance(self.inj, EventFaults):
            self.inj.batch(B)
        else:
            self.inj.batch(B, n_steps)
        with self.inj:
            return self.snn.run(*inputs, **kw)

"""Save and load QANNs and SpikingModels: safetensors (integers stored as integers) + JSON.

A QANN is rebuilt from its ModelConfig, its quantizer settings (bits, signedness, scale) and its
integer weights; a SpikingModel file is the QANN it was converted from (conversion is
deterministic), marked as spiking.  Writes go to a temporary file renamed into place, so a failure
leaves no partial file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from snmfm.compress.quant import quant_layers
from snmfm.models import ModelConfig, model_from_config
from snmfm.nn import QuantMatMul, quantizers

FORMAT = "snmfm.qann/1"


def _paths(path) -> tuple[Path, Path]:
    p = Path(path)
    base = p.with_suffix("") if p.suffix in (".safetensors", ".json") else p
    return base.with_suffix(".safetensors"), base.with_suffix(".json")


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_qann(qann: nn.Module, path, *, spiking: bool = False, meta: dict | None = None) -> Path:
    """Write `<path>.safetensors` and `<path>.json`; returns the JSON path."""
    from converters.snn import SpikingModel
    if isinstance(qann, SpikingModel):
        raise TypeError("save_qann takes the QANN; use save_spiking for a SpikingModel")
    cfg = getattr(qann, "config", None)
    if not isinstance(cfg, ModelConfig):
        raise TypeError("only snmfm models (with a ModelConfig in .config) can be saved; "
                        "got " + type(qann).__name__)
    tensors = {}
    for k, v in qann.state_dict().items():
        v = v.detach().contiguous()
        if k.endswith(".w_int"):
            v = v.to(torch.int32)  # integers stay integers on disk
        tensors[k] = v.clone()
    st_path, js_path = _paths(path)
    _atomic_write(st_path, lambda tmp: save_file(tensors, tmp))
    digest = hashlib.sha256(st_path.read_bytes()).hexdigest()
    layers = {}
    for name, layer in quant_layers(qann).items():
        layers[name] = {"w_bits": getattr(layer, "w_bits", None)}
    doc = {"format": FORMAT, "spiking": spiking, "config": cfg.to_dict(),
           "quantizers": {n: {"bits": q.bits, "signed": q.signed, "qmin": q.qmin, "qmax": q.qmax}
                          for n, q in quantizers(qann)},
           "layers": layers, "quant": dict(getattr(qann, "snmfm_quant", {})),
           "tensors_sha256": digest, "meta": meta or {}}
    _atomic_write(js_path, lambda tmp: Path(tmp).write_text(json.dumps(doc, indent=1)))
    return js_path


def load_qann(path) -> nn.Module:
    st_path, js_path = _paths(path)
    for p in (js_path, st_path):
        if not p.exists():
            raise FileNotFoundError(f"QANN file {p} not found (a QANN is saved as .json + .safetensors)")
    try:
        doc = json.loads(js_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"QANN file {js_path} is corrupt (not JSON: {e})") from e
    if doc.get("format") != FORMAT:
        raise ValueError(f"{js_path} is not a QANN file (format {doc.get('format')!r}, expected {FORMAT!r})")
    try:
        tensors = load_file(str(st_path))
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"QANN tensors {st_path} are corrupt: {e}") from e
    model = model_from_config(ModelConfig.from_dict(doc["config"])).double().eval()
    qs = dict(quantizers(model))
    if set(qs) != set(doc["quantizers"]):
        missing = sorted(set(doc["quantizers"]) ^ set(qs))
        raise ValueError(f"QANN file {js_path} does not match its model config: quantizer sites differ ({missing[:5]})")
    for name, q in qs.items():
        d = doc["quantizers"][name]
        q.set_bits(d["bits"])
        if "qmin" in d:  # the integer window (snmfm.compress.fit_window may shift it); older files: symmetric
            q.qmin, q.qmax = int(d["qmin"]), int(d["qmax"])
        q.mode = "int"
    for name, layer in quant_layers(model).items():
        if isinstance(layer, QuantMatMul):
            continue
        wb = doc["layers"].get(name, {}).get("w_bits")
        key = name + ".w_int"
        if key not in tensors:
            raise ValueError(f"QANN file {st_path} lacks integer weights {key!r}")
        layer.set_int_weight(tensors[key], tensors[name + ".w_scale"], wb)
    for k, v in tensors.items():  # per-input-channel activation scales (snmfm.compress.smooth)
        if k.endswith(".in_div"):
            model.get_submodule(k[:-len(".in_div")]).set_in_div(v)
    expected = model.state_dict()
    for k, v in tensors.items():
        if k not in expected:
            raise ValueError(f"QANN file {st_path} has tensor {k!r} that the model config does not have "
                             "(mismatched checkpoint)")
        if tuple(expected[k].shape) != tuple(v.shape):
            raise ValueError(f"QANN file {st_path}: tensor {k!r} has shape {tuple(v.shape)}, the model "
                             f"config expects {tuple(expected[k].shape)} (mismatched checkpoint)")
    missing = set(expected) - set(tensors)
    if missing:
        raise ValueError(f"QANN file {st_path} lacks tensors {sorted(missing)[:5]} (mismatched checkpoint)")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})
    model.snmfm_quant = doc.get("quant", {})
    model.snmfm_meta = doc.get("meta", {})
    return model


def save_spiking(snn, path, meta: dict | None = None) -> Path:
    qann = getattr(snn, "source_qann", None)
    if qann is None:
        raise TypeError("this SpikingModel does not keep the QANN it came from; save the QANN instead")
    return save_qann(qann, path, spiking=True, meta=meta)


def load_spiking(path):
    from converters.snn import convert
    return convert(load_qann(path))

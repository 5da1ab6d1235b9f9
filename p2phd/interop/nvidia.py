"""NVIDIA pix2pixHD checkpoints -> p2phd: options, architecture inference, parameter mapping.

- ``read_opt_txt``: NVIDIA's ``opt.txt`` (``------------ Options -------------``, one
  ``name: value`` line per option, sorted) -> p2phd option values. NVIDIA's spellings
  (``loadSize``, ``fineSize``, ``batchSize``) are renamed; options p2phd does not have, or spells
  with another meaning (``load_features`` is a flag there, a path here), are ignored.
- ``infer_architecture``: the options that the tensor names and shapes determine.
- ``map_state_dict``: NVIDIA tensor names -> p2phd parameter names, checked one to one by shape.

Names (NVIDIA models/networks.py vs p2phd/nets): G and E are the same (``model.<i>``,
``model<n>_1``/``model<n>_2``); D's ``scale<i>_layer<j>.<k>`` (intermediate features) and
``layer<i>.<k>`` (one Sequential) are p2phd's ``scale<i>.model<j>.<k>`` and
``scale<i>.model.<k>``, and in both ``scale0`` is the coarsest scale. Conv and transposed-conv
weights have the same layouts ((out,in,kh,kw) and (in,out,kh,kw)). BatchNorm's
``weight/bias/running_mean/running_var`` are MindSpore's ``gamma/beta/moving_mean/
moving_variance``; ``num_batches_tracked`` and InstanceNorm running statistics (old torch wrote
them; affine-free InstanceNorm never uses them) are not parameters and are dropped.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p2phd.core.cli import UsageError

OPT_HEADER = "------------ Options -------------"
OPT_FOOTER = "-------------- End ----------------"
# NVIDIA spelling -> p2phd spelling
RENAMED = {"loadSize": "load_size", "fineSize": "fine_size", "batchSize": "batch_size"}
# same name, other meaning in p2phd: never taken from opt.txt
NOT_TAKEN = {"load_features", "load_pretrain", "checkpoints_dir", "name", "verbose", "dry_run"}

# NVIDIA parameter leaf -> p2phd leaves it may be (conv first, then BatchNorm's MindSpore name)
LEAVES = {
    "weight": ("weight", "gamma"),
    "bias": ("bias", "beta"),
    "running_mean": ("moving_mean",),
    "running_var": ("moving_variance",),
}
STATS = ("running_mean", "running_var", "num_batches_tracked")


def read_opt_txt(path: Path, types: dict[str, type]) -> dict[str, Any]:
    """p2phd option name -> value from NVIDIA's opt.txt; `types` gives the known options."""
    lines = Path(path).read_text().splitlines()
    if not lines or lines[0].strip() != OPT_HEADER:
        raise UsageError(f"{path}: not an NVIDIA opt.txt (first line is not {OPT_HEADER!r})")
    out: dict[str, Any] = {}
    for n, line in enumerate(lines[1:], start=2):
        if line.strip() == OPT_FOOTER:
            break
        name, sep, raw = line.partition(": ")
        if not sep:
            name, sep, raw = line.partition(":")  # 'load_pretrain: ' loses its space to strip()
        name = RENAMED.get(name.strip(), name.strip())
        if not sep or name not in types or name in NOT_TAKEN:
            continue
        out[name] = _value(raw.strip(), types[name], path, n, name)
    return out


def _value(raw: str, kind: type, path: Path, line: int, name: str) -> Any:
    try:
        if kind is bool:
            if raw not in ("True", "False"):
                raise ValueError(raw)
            return raw == "True"
        return kind(raw)
    except ValueError:
        raise UsageError(f"{path}:{line}: {name}: {raw!r} is not a {kind.__name__}") from None


# -- architecture inference ---------------------------------------------------------------------
def _convs(sd: dict[str, np.ndarray], prefix: str) -> list[str]:
    """4-D weights directly under `prefix` (``model.<i>.weight``), in index order."""
    pat = re.compile(re.escape(prefix) + r"(\d+)\.weight$")
    hits = [(int(m.group(1)), n) for n in sd if (m := pat.match(n)) and sd[n].ndim == 4]
    return [n for _, n in sorted(hits)]


def _blocks(sd: dict[str, np.ndarray], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.conv_block\.")
    return len({m.group(1) for n in sd if (m := pat.match(n))})


def _norm(sd: dict[str, np.ndarray]) -> str:
    """Affine BatchNorm has 1-D weights; InstanceNorm(affine=False) has none."""
    return (
        "batch" if any(n.endswith(".weight") and a.ndim == 1 for n, a in sd.items()) else "instance"
    )


def _need(sd: dict[str, np.ndarray], name: str, path: Path, what: str) -> np.ndarray:
    if name not in sd or sd[name].ndim != 4:
        raise UsageError(f"{path}: not a pix2pixHD {what} state dict (no 4-D {name})")
    return sd[name]


@dataclass
class Inferred:
    """What the tensors determine; `channels` are input channel counts (not options)."""

    options: dict[str, Any] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)


def infer_generator(sd: dict[str, np.ndarray], path: Path, inf: Inferred) -> None:
    first = _need(sd, "model.1.weight", path, "generator")
    locals_ = {int(m.group(1)) for n in sd if (m := re.match(r"model(\d+)_1\.", n))}
    trunk = _convs(sd, "model.")
    o = inf.options
    o["norm"] = _norm(sd)
    o["n_blocks_global"] = _blocks(sd, "model.")
    inf.channels["G"] = int(first.shape[1])
    if locals_:
        n = max(locals_)
        o["netG"], o["n_local_enhancers"] = "local", n
        o["n_downsample_global"] = (len(trunk) - 1) // 2  # first conv, downs, ups (no output)
        o["ngf"] = int(_need(sd, f"model{n}_1.1.weight", path, "local enhancer").shape[0])
        o["n_blocks_local"] = _blocks(sd, "model1_2.")
        out = _convs(sd, f"model{n}_2.")
        o["output_nc"] = int(sd[out[-1]].shape[0]) if out else 0
        if first.shape[0] != o["ngf"] * 2**n:
            raise UsageError(
                f"{path}: model.1.weight has {first.shape[0]} filters, expected "
                f"{o['ngf'] * 2**n} for a local enhancer with ngf {o['ngf']}"
            )
    else:
        o["netG"], o["ngf"] = "global", int(first.shape[0])
        o["n_downsample_global"] = (len(trunk) - 2) // 2  # first conv, downs, ups, output
        o["output_nc"] = int(sd[trunk[-1]].shape[0])


def infer_encoder(sd: dict[str, np.ndarray], path: Path, inf: Inferred) -> None:
    first = _need(sd, "model.1.weight", path, "encoder")
    convs = _convs(sd, "model.")
    inf.options.update(nef=int(first.shape[0]), n_downsample_E=(len(convs) - 2) // 2)
    inf.options["feat_num"] = int(sd[convs[-1]].shape[0])
    inf.channels["E"] = int(first.shape[1])


def infer_discriminator(sd: dict[str, np.ndarray], path: Path, inf: Inferred) -> None:
    interm = {}
    for n in sd:
        if m := re.match(r"scale(\d+)_layer(\d+)\.", n):
            interm.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    seq = {int(m.group(1)) for n in sd if (m := re.match(r"layer(\d+)\.", n))}
    if interm:
        first = _need(sd, "scale0_layer0.0.weight", path, "discriminator")
        n_layers = len(interm[0]) - 2
    elif seq:
        first = _need(sd, "layer0.0.weight", path, "discriminator")
        n_layers = len(_convs(sd, "layer0.")) - 2
    else:
        raise UsageError(
            f"{path}: not a pix2pixHD discriminator state dict (no scale0_layer0/layer0)"
        )
    inf.options.update(
        num_D=len(interm or seq),
        n_layers_D=n_layers,
        ndf=int(first.shape[0]),
        no_ganFeat_loss=not interm,
    )
    inf.channels["D"] = int(first.shape[1])


def guess_inputs(inf: Inferred, no_instance: bool = False) -> dict[str, Any]:
    """label_nc / edge / features from the input channel counts, for runs without opt.txt.

    G reads label (+1 edge) (+feat_num), D reads label (+1 edge) + output_nc, E reads output_nc.
    With D or E the feature channels are known; an edge channel is assumed (NVIDIA's default,
    instance maps on) unless `no_instance` (the user's --no_instance).
    """
    ch, o = inf.channels, inf.options
    out = o.get("output_nc", 3)
    feat = 0
    if "D" in ch:
        feat = ch["G"] - (ch["D"] - out)
    elif "feat_num" in o:
        feat = o["feat_num"]
    guess: dict[str, Any] = {"instance_feat": feat > 0}
    if feat > 0:
        guess["feat_num"] = feat
    guess["label_nc"] = ch["G"] - feat - (0 if no_instance else 1)
    guess["no_instance"] = no_instance
    return guess


# -- mapping --------------------------------------------------------------------------------------
def _p2phd_base(net: str, base: str) -> str:
    if net == "D":
        if m := re.match(r"scale(\d+)_layer(\d+)\.(.*)$", base):
            return f"scale{m.group(1)}.model{m.group(2)}.{m.group(3)}"
        if m := re.match(r"layer(\d+)\.(.*)$", base):
            return f"scale{m.group(1)}.model.{m.group(2)}"
    return base


def map_state_dict(
    net: str, sd: dict[str, np.ndarray], shapes: dict[str, tuple[int, ...]], path: Path, what: str
) -> tuple[dict[str, np.ndarray], list[str]]:
    """(p2phd name -> float32 array, dropped NVIDIA names); UsageError on the first misfit."""
    mapped: dict[str, np.ndarray] = {}
    source: dict[str, str] = {}
    dropped: list[str] = []
    for name, arr in sd.items():
        base, _, leaf = name.rpartition(".")
        target = next(
            (t for c in LEAVES.get(leaf, ()) if (t := f"{_p2phd_base(net, base)}.{c}") in shapes),
            None,
        )
        if target is None:
            if leaf in STATS:  # num_batches_tracked, or InstanceNorm statistics: no parameter
                dropped.append(name)
                continue
            raise UsageError(f"{path}: tensor {name} {tuple(arr.shape)} has no place in {what}")
        if target in mapped:
            raise UsageError(f"{path}: tensors {source[target]} and {name} both map to {target}")
        if tuple(arr.shape) != tuple(shapes[target]):
            raise UsageError(
                f"{path}: tensor {name} has shape {tuple(arr.shape)}, {what} needs "
                f"{tuple(shapes[target])} for {target}"
            )
        if not np.issubdtype(arr.dtype, np.floating):
            raise UsageError(f"{path}: tensor {name} is {arr.dtype}, not floating point")
        mapped[target] = np.asarray(arr, dtype=np.float32)
        source[target] = name
    missing = [n for n in shapes if n not in mapped]
    if missing:
        raise UsageError(
            f"{path}: has no tensor for {what}'s {missing[0]} ({len(missing)} of "
            f"{len(shapes)} parameters unfilled)"
        )
    return mapped, dropped

"""bin/import: turn an NVIDIA pix2pixHD checkpoints folder into a p2phd run folder.

    bin/import CHECKPOINTS_FOLDER|FILE.pth|- [--which_epoch latest] [--name NAME] [options]

prints the run folder (default outputs/<NVIDIA name>_nvidia). The folder holds what bin/train
would have written: options.json (+ an ``imported`` record: source, SHA-256 and torch format of
each file, dropped tensors), G.ckpt (netG, + netE) for bin/render and bin/precompute, and, when
``latest_net_D.pth`` is there, a full training state (state/) with fresh optimisers that
``bin/train --load_pretrain RUN`` and a resumed ``bin/train --name RUN`` accept.

The architecture comes from opt.txt when present, else from the tensors (an edge channel is
assumed unless --no_instance); options given here override both. Every tensor must fill exactly
one p2phd parameter of the same shape and every parameter must be filled, else exit 2.
.pth files are read without PyTorch and unpickled with an allow-list (p2phd.interop.pth).
"""

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

from p2phd.core import cli, runs
from p2phd.core.cli import UsageError
from p2phd.core.options import (
    DataOptions,
    ModelOptions,
    RuntimeOptions,
    flat_options,
    opt,
    positional,
    validate_data_model,
)
from p2phd.core.paths import OUTPUTS_DIR
from p2phd.interop import nvidia
from p2phd.interop.pth import PthError, read_state_dict

NETS = {"G": "netG", "D": "netD", "E": "netE"}


@flat_options
class ImportOptions(RuntimeOptions, DataOptions, ModelOptions):
    source: str = positional(
        "source",
        "NVIDIA checkpoints folder (latest_net_G.pth [, _D, _E], opt.txt) or a G .pth file; "
        "'-' reads the path from stdin",
    )
    which_epoch: str = opt("latest", "which <epoch>_net_*.pth of the folder to import")
    name: str = opt("", "run name; '' = <NVIDIA run name (its folder's name)>_nvidia")
    checkpoints_dir: str = opt(str(OUTPUTS_DIR), "folder holding run folders")
    no_ganFeat_loss: bool = opt(False, "D without intermediate outputs (NVIDIA: no getIntermFeat)")
    # training options recorded for continuing on p2phd (given here, they override opt.txt)
    niter: int = opt(100, "epochs at the starting learning rate")
    niter_decay: int = opt(100, "epochs of linear learning-rate decay after niter")
    niter_fix_global: int = opt(0, "epochs during which only the local enhancer trains")
    lr: float = opt(0.0002, "initial Adam learning rate")
    batch_size: int = opt(1, "samples per step (per device)")
    no_vgg_loss: bool = opt(False, "no VGG19 perceptual loss")
    overwrite: bool = opt(False, "replace an existing non-empty run folder")

    def validate(self) -> None:
        if not self.source:
            raise UsageError("give an NVIDIA checkpoints folder or .pth file (or '-' for stdin)")
        if self.name and ("/" in self.name or self.name.startswith(".")):
            raise UsageError(f"--name must be a plain folder name, got {self.name!r}")
        if self.which_epoch != "latest" and not self.which_epoch.isdigit():
            raise UsageError(
                f"--which_epoch must be 'latest' or an epoch number, got {self.which_epoch!r}"
            )


def explicit_options(argv: list[str], o: Any) -> set[str]:
    """Options given on the command line (their values override opt.txt and inference): spelled
    out, or (argparse abbreviations) parsed to a value other than the default."""
    fields = {f.name: f.default for f in dataclasses.fields(o)}
    given = {k for k, default in fields.items() if getattr(o, k) != default}
    for tok in argv:
        if tok.startswith("--"):
            name = tok[2:].split("=", 1)[0].replace("-", "_")
            if name in fields:
                given.add(name)
    return given


# -- inputs ---------------------------------------------------------------------------------------
@dataclasses.dataclass
class Source:
    folder: Path
    files: dict[str, Path]  # "G"/"D"/"E" -> .pth
    opt_txt: Path | None
    iter_txt: Path | None
    nvidia_name: str


def find_source(o: ImportOptions) -> Source:
    p = Path(o.source).expanduser()
    if p.is_file():
        return Source(p.parent, {"G": p}, None, None, p.parent.name or p.stem)
    if not p.is_dir():
        raise UsageError(f"{p}: no such checkpoints folder or .pth file")
    files = {k: p / f"{o.which_epoch}_net_{k}.pth" for k in NETS}
    files = {k: f for k, f in files.items() if f.is_file()}
    if "G" not in files:
        raise UsageError(
            f"{p}: no {o.which_epoch}_net_G.pth (an NVIDIA checkpoints folder has one)"
        )
    opt_txt, iter_txt = p / "opt.txt", p / "iter.txt"
    return Source(
        p,
        files,
        opt_txt if opt_txt.is_file() else None,
        iter_txt if iter_txt.is_file() and o.which_epoch == "latest" else None,
        p.resolve().name,
    )


def read_nets(src: Source) -> dict[str, dict]:
    try:
        return {k: read_state_dict(f) for k, f in src.files.items()}
    except PthError as exc:
        raise UsageError(str(exc)) from None


def start_epoch(o: ImportOptions, src: Source) -> int:
    """The epoch training continues at: after <N>_net_*.pth epoch N+1; else iter.txt's epoch
    (NVIDIA writes the epoch to resume at there); else 1."""
    if o.which_epoch.isdigit():
        return int(o.which_epoch) + 1
    if src.iter_txt is None:
        return 1
    try:
        epoch, epoch_iter = (int(v) for v in src.iter_txt.read_text().split()[:2])
    except ValueError:
        raise UsageError(f"{src.iter_txt}: expected two integers (epoch, iteration)") from None
    if epoch_iter:
        cli.log(
            f"import: {src.iter_txt}: epoch {epoch} was saved mid-way; it restarts from its start"
        )
    return max(1, epoch)


# -- architecture -----------------------------------------------------------------------------------
def train_option_types() -> dict[str, type]:
    from p2phd.training.train import TrainOptions

    return {f.name: type(f.default) for f in dataclasses.fields(TrainOptions)}


def resolve(o: ImportOptions, argv: list[str], src: Source, sds: dict[str, dict]):
    """TrainOptions resolved: defaults <- (opt.txt, else inference) <- the options given here."""
    from p2phd.training.train import TrainOptions

    inf = nvidia.Inferred()
    nvidia.infer_generator(sds["G"], src.files["G"], inf)
    if "E" in sds:
        nvidia.infer_encoder(sds["E"], src.files["E"], inf)
    if "D" in sds:
        nvidia.infer_discriminator(sds["D"], src.files["D"], inf)
    types = train_option_types()
    values: dict[str, Any] = {}
    given = explicit_options(argv, o)
    from_file = nvidia.read_opt_txt(src.opt_txt, types) if src.opt_txt else {}
    if from_file:
        values.update(from_file)
    else:
        values.update(nvidia.guess_inputs(inf, "no_instance" in given and o.no_instance))
        values.update(inf.options)
    values.update({k: getattr(o, k) for k in given if k in types})
    values.update(
        manifest="",
        name=o.name or f"{src.nvidia_name}_nvidia",
        checkpoints_dir=o.checkpoints_dir,
        device_target=o.device_target,
        seed=o.seed,
        load_pretrain="",
        load_features="",
    )
    t = TrainOptions(**values)
    validate_data_model(t)
    check_against_tensors(t, inf, src)
    return t, inf


def check_against_tensors(t: Any, inf: nvidia.Inferred, src: Source) -> None:
    """Say on stderr where the resolved options (opt.txt, command line) disagree with the tensors."""
    from p2phd.nets import d_input_nc, g_input_nc

    resolved = {k: getattr(t, k) for k in inf.options}
    if t.netG == "global":
        for k in ("n_local_enhancers", "n_blocks_local"):
            resolved.pop(k, None)
    if not t.use_features():
        resolved.pop("feat_num", None)
    channels = {"G": g_input_nc(t), "D": d_input_nc(t), "E": t.output_nc}
    diffs = [
        f"{k} {resolved[k]!r} vs {inf.options[k]!r}"
        for k in resolved
        if resolved[k] != inf.options[k]
    ]
    diffs += [
        f"{k} input channels {channels[k]} vs {n}"
        for k, n in inf.channels.items()
        if channels[k] != n
    ]
    if diffs:
        where = "opt.txt/options given" if src.opt_txt else "options given"
        cli.log(f"import: {where} differ from the tensors: {'; '.join(diffs)} (given vs inferred)")


def parameter_shapes(t: Any, net: str) -> dict[str, tuple[int, ...]]:
    """p2phd parameter name -> shape, from a shape-only build (no weight memory)."""
    from mindspore.nn.utils import no_init_parameters

    from p2phd.nets import build_discriminator, build_encoder, build_generator

    build = {"G": build_generator, "D": build_discriminator, "E": lambda o: build_encoder(o, 1)}
    with no_init_parameters():
        cell = build[net](t)
    return {name: tuple(p.shape) for name, p in cell.parameters_and_names()}


def map_all(t: Any, src: Source, sds: dict[str, dict]) -> tuple[dict[str, dict], dict[str, list]]:
    if t.use_features() and "E" not in sds:
        # p2phd's feature runs carry their encoder (render and precompute rebuild it); NVIDIA's
        # --load_features runs read precomputed maps and saved no E
        raise UsageError(
            f"{src.folder}: a feature run (G reads {t.feat_num} feature channels) without "
            f"{src.files['G'].name.replace('_G.', '_E.')}: p2phd needs the encoder that made them"
        )
    mapped, dropped = {}, {}
    for net, sd in sds.items():
        if net == "E" and not t.use_features():
            raise UsageError(f"{src.files['E']}: an encoder, but the options say no features")
        what = (
            f"p2phd's net{net} ({t.netG} G, {t.norm} norm)" if net == "G" else f"p2phd's net{net}"
        )
        mapped[net], dropped[net] = nvidia.map_state_dict(
            net, sd, parameter_shapes(t, net), src.files[net], what
        )
        if dropped[net]:
            cli.log(
                f"import: {src.files[net].name}: dropped {len(dropped[net])} tensors that are not "
                f"parameters (norm running statistics / num_batches_tracked), e.g. {dropped[net][0]}"
            )
        sd.clear()  # the arrays live on in `mapped` only
    return mapped, dropped


# -- output -----------------------------------------------------------------------------------------
def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def imported_record(src: Source, dropped: dict[str, list], epoch: int, inf) -> dict[str, Any]:
    files = {
        NETS[k]: {
            "path": str(f.resolve()),
            "sha256": sha256(f),
            "torch_format": "zip" if zipfile.is_zipfile(f) else "legacy",
            "dropped": dropped.get(k, []),
        }
        for k, f in src.files.items()
    }
    for extra in (src.opt_txt, src.iter_txt):
        if extra is not None:
            files[extra.name] = {"path": str(extra.resolve()), "sha256": sha256(extra)}
    return {
        "from": "NVIDIA/pix2pixHD",
        "source": str(src.folder.resolve()),
        "files": files,
        "architecture_from": "opt.txt" if src.opt_txt else "tensors",
        "inferred": inf.options,
        "epoch": epoch,
    }


def write_snapshot(path: Path, mapped: dict[str, dict], epoch: int) -> None:
    """G.ckpt straight from the arrays (no network built): netG.* (+ netE.*), meta epoch/step,
    the names and meta p2phd.core.checkpoint.save writes."""
    import mindspore as ms

    entries = [
        {"name": f"{NETS[net]}.{name}", "data": ms.Tensor.from_numpy(arr)}
        for net in ("G", "E")
        if net in mapped
        for name, arr in mapped[net].items()
    ]
    ms.save_checkpoint(entries, str(path), append_dict={"epoch": epoch - 1, "step": 0})


def write_state(run: Path, t: Any, mapped: dict[str, dict], epoch: int) -> None:
    """A full training state at the start of `epoch`: the nets, fresh Adam states (built by
    bin/train's own Trainer, so the names are what resume and --load_pretrain expect)."""
    from mindspore import Tensor

    from p2phd.core import checkpoint
    from p2phd.training import schedule
    from p2phd.training.trainer import Trainer

    trainer = Trainer(t, max_instances=1)
    fixed = schedule.global_fixed(epoch, t.niter_fix_global)
    trainer.set_phase(fixed)
    for key, cell in trainer.cells().items():
        arrays = mapped[key[-1]]
        for name, p in cell.parameters_and_names():
            p.set_data(Tensor(arrays.pop(name)))  # pop: G.ckpt is written; free as we go
    lr = schedule.lr_at(epoch, t.lr, t.niter, t.niter_decay)
    trainer.set_lr(lr)
    progress = {
        "epoch": epoch,
        "epoch_step": 0,
        "step": 0,
        "images": 0,
        "fixed_global": fixed,
        "lr": lr,
        "world_size": 1,
    }
    runs.write_state(
        run,
        progress,
        lambda p: checkpoint.save(p, trainer.state_cells(), {"step": 0}),
        None,
        t.keep,
    )


def write_run(target: Path, t: Any, mapped, record, epoch: int, overwrite: bool) -> None:
    """Build the run under a temporary name, then rename it into place."""
    tmp = target.with_name(f".{target.name}.import-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        opts_path = runs.write_options(tmp, cli.options_dict(t), {"path": "", "sha256": ""})
        doc = json.loads(opts_path.read_text())
        doc["imported"] = record
        cli.write_json(opts_path, doc)
        write_snapshot(runs.snapshot_path(tmp), mapped, epoch)
        if "D" in mapped:
            write_state(tmp, t, mapped, epoch)
        if target.exists():
            old = target.with_name(f".{target.name}.import-old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def describe(t: Any, src: Source, epoch: int, inf) -> dict[str, Any]:
    target = Path(t.checkpoints_dir) / t.name
    arch = {k: getattr(t, k) for k in runs.ArchOptions.__dataclass_fields__}
    would = [str(target / runs.OPTIONS_FILE), str(runs.snapshot_path(target))]
    if "D" in src.files:
        would.append(str(runs.state_dir(target) / "step-00000000/state.ckpt"))
    return {
        "source": {k: str(f) for k, f in src.files.items()},
        "opt_txt": str(src.opt_txt) if src.opt_txt else None,
        "inferred_from_tensors": inf.options,
        "architecture": arch,
        "start_epoch": epoch,
        "run_dir": str(target),
        "would_write": would,
    }


# -- the verb -----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    o = cli.parse_options(ImportOptions, argv, "import", __doc__.split("\n")[0])
    o.source = cli.resolve_input(o.source)
    src = find_source(o)
    sds = read_nets(src)
    t, inf = resolve(o, argv, src, sds)
    epoch = start_epoch(o, src)
    target = Path(t.checkpoints_dir) / t.name
    if target.exists() and any(target.iterdir()) and not o.overwrite and not o.dry_run:
        raise UsageError(f"{target} exists and is not empty; pass --overwrite or another --name")
    from p2phd.core import runtime

    runtime.setup(o.device_target, True, o.seed, o.verbose, data_parallel=False)
    mapped, dropped = map_all(t, src, sds)
    for net, arrays in mapped.items():
        n = sum(a.size for a in arrays.values())
        cli.log(f"import: net{net}: {len(arrays)} tensors, {n:,} parameters, all mapped")
    if o.dry_run:
        print(json.dumps(describe(t, src, epoch, inf), indent=2, default=str), file=sys.stderr)
        return 0
    record = imported_record(src, dropped, epoch, inf)
    write_run(target, t, mapped, record, epoch, o.overwrite)
    cli.emit(target)
    return 0

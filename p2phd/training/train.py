"""bin/train: train pix2pixHD from a dataset manifest into a run folder (outputs/<name>/).

    bin/train MANIFEST|- --name NAME [--checkpoints_dir outputs] [seed training options]

prints the run folder. Rerunning the same command resumes from the newest full state (nets, both
optimisers with their moments and step counts, epoch, step within the epoch, schedule, image
pool); --niter, --niter_decay and --max_steps may be raised to train longer. Under
`msrun --worker_num N` every rank trains its shard with averaged gradients; rank 0 writes.
Layout of the run folder: p2phd/runs.py. Step and losses: p2phd/trainer.py.
"""

import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from p2phd.core import cli, extras, lock, runs
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
from p2phd.data import pipeline as data
from p2phd.training import schedule

# Options that may differ when a run is resumed (they do not change what was trained so far).
RESUMABLE = {
    "niter",
    "niter_decay",
    "max_steps",
    "display_freq",
    "print_freq",
    "save_latest_freq",
    "save_epoch_freq",
    "keep",
    "verbose",
    "dry_run",
    "device_target",
    "pynative",
    "manifest",
    "load_pretrain",
    "checkpoints_dir",
    "vgg_pre_trained",
    "tensorboard",
    "no_html",
}


@flat_options
class TrainOptions(RuntimeOptions, DataOptions, ModelOptions):
    manifest: str = positional(
        "manifest",
        "dataset manifest (bin/prepare) of the training split; '-' reads its path from stdin",
    )
    name: str = opt("", "run name: the run folder is <checkpoints_dir>/<name>")
    checkpoints_dir: str = opt(str(OUTPUTS_DIR), "folder holding run folders")
    niter: int = opt(100, "epochs at the starting learning rate")
    niter_decay: int = opt(100, "epochs of linear learning-rate decay after niter")
    niter_fix_global: int = opt(
        0, "epochs during which only the local enhancer (+E) trains (netG local)"
    )
    lr: float = opt(0.0002, "initial Adam learning rate")
    beta1: float = opt(0.5, "Adam beta1")
    beta2: float = opt(0.999, "Adam beta2")
    lambda_feat: float = opt(10.0, "weight of the feature-matching and VGG losses")
    no_ganFeat_loss: bool = opt(False, "no discriminator feature-matching loss")
    no_vgg_loss: bool = opt(False, "no VGG19 perceptual loss")
    vgg_pre_trained: str = opt(
        "./vgg19.ckpt",
        "VGG19 MindSpore checkpoint (model zoo layout), relative to the current folder",
    )
    pool_size: int = opt(0, "image pool size (0 = no pool)")
    load_pretrain: str = opt(
        "", "start from this run's weights (run folder or .ckpt), by name and shape"
    )
    load_features: str = opt("", "feature manifest (bin/precompute) to read encoder features from")
    batch_size: int = opt(1, "samples per step (per device)")
    no_flip: bool = opt(False, "no random horizontal flips")
    serial_batches: bool = opt(False, "take samples in order instead of shuffling")
    display_freq: int = opt(100, "images between web page (and TensorBoard image) updates")
    print_freq: int = opt(100, "images between stats lines")
    save_latest_freq: int = opt(1000, "images between full-state saves (also at every epoch end)")
    save_epoch_freq: int = opt(10, "epochs between G_epoch<E>.ckpt snapshots (0 = none)")
    max_steps: int = opt(0, "stop after this many steps in total (0 = run all epochs)")
    keep: int = opt(3, "full training states to keep")
    tensorboard: bool = opt(
        False,
        "also write TensorBoard event files to <run>/tensorboard/: losses, lr and images/s "
        "every --print_freq images, label | synthesized | real every --display_freq",
    )
    no_html: bool = opt(False, "no web/ page (images, loss curves); stats.jsonl is still written")
    amp: str = opt(
        "O0",
        "mixed precision: O0 fp32, O1 fp16 convolutions, O2 fp16 all but norms and losses "
        "(dynamic loss scaling; a speed-up on Ascend/GPU, none on CPU)",
    )

    def validate(self) -> None:
        if not self.manifest:
            raise UsageError("give the dataset manifest to train on (MANIFEST, or '-' for stdin)")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise UsageError("--name NAME is required (a plain folder name)")
        validate_data_model(self)
        for field in ("batch_size", "display_freq", "print_freq", "save_latest_freq", "keep"):
            if getattr(self, field) < 1:
                raise UsageError(f"--{field} must be at least 1, got {getattr(self, field)}")
        for field in (
            "niter",
            "niter_decay",
            "niter_fix_global",
            "pool_size",
            "max_steps",
            "save_epoch_freq",
        ):
            if getattr(self, field) < 0:
                raise UsageError(f"--{field} must be >= 0, got {getattr(self, field)}")
        if self.niter + self.niter_decay < 1:
            raise UsageError("--niter + --niter_decay must be at least 1 epoch")
        if self.niter_fix_global and self.netG != "local":
            raise UsageError(
                "--niter_fix_global needs --netG local (it freezes the global generator)"
            )
        if self.load_features and not self.use_features():
            raise UsageError("--load_features needs --instance_feat or --label_feat")
        if self.lr <= 0:
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if self.amp not in ("O0", "O1", "O2"):
            raise UsageError(f"--amp must be O0, O1 or O2, got {self.amp!r}")

    def run_dir(self) -> Path:
        return Path(self.checkpoints_dir) / self.name


# -- validation (before anything is written) ----------------------------------------------------
def open_inputs(o: TrainOptions):
    """Open and check the dataset (and feature) manifests against the options."""
    from p2phd.data.dataset import Dataset

    ds = Dataset(o.manifest)
    if ds.label_nc != o.label_nc:
        raise UsageError(
            f"{o.manifest}: prepared with label_nc {ds.label_nc}, but --label_nc is {o.label_nc}"
        )
    if not ds.has_photo:
        raise UsageError(f"{o.manifest}: split {ds.split!r} has no photos to train on")
    if not o.no_instance and not ds.has_instance:
        raise UsageError(f"{o.manifest}: no instance maps; pass --no_instance")
    if len(ds) < o.batch_size:
        raise UsageError(f"{o.manifest}: {len(ds)} samples, fewer than --batch_size {o.batch_size}")
    feats = None
    if o.load_features:
        from p2phd.features.feature_manifest import FeatureManifest

        feats = FeatureManifest(o.load_features)
        if feats.feat_num != o.feat_num:
            raise UsageError(
                f"{o.load_features}: feat_num {feats.feat_num}, but --feat_num is {o.feat_num}"
            )
        absent = [n for n in ds.names if n not in feats]
        if absent:
            raise UsageError(
                f"{o.load_features}: no features for {len(absent)} samples of "
                f"{o.manifest} (e.g. {absent[0]})"
            )
    return ds, feats


def check_resume(o: TrainOptions, ds_sha: str) -> dict[str, Any] | None:
    """The existing run's options.json if the run folder exists (it must match), else None."""
    run = o.run_dir()
    if not (run / runs.OPTIONS_FILE).is_file():
        if run.exists() and any(run.iterdir()):
            raise UsageError(f"{run} exists and is not a p2phd run; choose another --name")
        return None
    doc = runs.read_options(run)
    old, new = doc["options"], cli.options_dict(o)
    diff = [k for k in new if k not in RESUMABLE and k in old and old[k] != new[k]]
    if diff:
        k = diff[0]
        raise UsageError(
            f"{run} was trained with --{k} {old[k]!r}, not {new[k]!r}; "
            "rerun with the same options to resume, or choose another --name"
        )
    if doc.get("dataset", {}).get("sha256") not in ("", None, ds_sha):
        raise UsageError(
            f"{run} was trained on another dataset manifest ({doc['dataset'].get('path')})"
        )
    return doc


def vgg_path(o: TrainOptions) -> Path | None:
    if o.no_vgg_loss:
        return None
    path = Path(o.vgg_pre_trained).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.is_file():
        from p2phd.nets.vgg import load_vgg19

        load_vgg19(path)  # raises the UsageError that says where to get the weights
    return path


def pretrain_file(src: str) -> Path:
    """A run folder's newest full state (has D) or its G.ckpt, or a .ckpt given directly."""
    p = Path(src)
    if p.is_file():
        return p
    if not p.is_dir():
        raise UsageError(f"--load_pretrain {src}: no such run folder or checkpoint")
    folder = runs.latest_state(p)
    if folder is not None:
        return folder / "state.ckpt"
    if runs.snapshot_path(p).is_file():
        return runs.snapshot_path(p)
    raise UsageError(f"--load_pretrain {src}: the run has no checkpoint yet")


def load_pretrain(o: TrainOptions, trainer) -> str:
    """Load G/D(/E) by name and shape; the global trunk must load completely. Returns a report."""
    from p2phd.core import checkpoint

    path = pretrain_file(o.load_pretrain)
    try:
        report = checkpoint.load(path, trainer.cells())
    except (RuntimeError, ValueError) as exc:
        raise UsageError(
            f"--load_pretrain {path}: not a readable checkpoint ({str(exc).splitlines()[0]})"
        ) from None
    trunk = "netG.model."
    bad = [n for n in report.mismatched if n.startswith(trunk)]
    loaded_trunk = [n for n in report.loaded if n.startswith(trunk)]
    if bad or not loaded_trunk:
        why = f"shape mismatch at {bad[0]}" if bad else "no generator trunk weights match"
        raise UsageError(f"--load_pretrain {path}: incompatible architecture ({why})")
    new = sorted({_group(n) for n in report.missing + report.mismatched})
    return (
        f"load_pretrain {path}: loaded {len(report.loaded)} tensors "
        f"({', '.join(sorted({_group(n) for n in report.loaded}))}); "
        f"new: {', '.join(new) if new else 'none'}"
    )


def _group(name: str) -> str:
    """netG.model.12.weight -> netG.model; netD.scale2.model0.0.weight -> netD.scale2."""
    parts = name.split(".")
    return ".".join(parts[:2])


# -- the verb ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    o = cli.parse_options(TrainOptions, argv, "train", __doc__.split("\n")[0])
    o.manifest = cli.resolve_input(o.manifest)
    if o.tensorboard:
        extras.require("board", "bin/train --tensorboard")
    cli.check_writable(o.run_dir(), "run folder (--checkpoints_dir/--name)", folder=True)
    ds, feats = open_inputs(o)
    ds_sha = ds.sha256()
    existing = check_resume(o, ds_sha)
    vgg_file = vgg_path(o)
    if o.load_pretrain and existing is None:
        pretrain_file(o.load_pretrain)
    if o.dry_run:
        return dry_run(o, ds, existing, vgg_file)

    from p2phd.core import runtime

    rt = runtime.setup(o.device_target, o.pynative, o.seed, o.verbose)
    with ExitStack() as stack:
        if rt.is_main:  # one writer per run folder; other ranks write nothing there
            stack.enter_context(lock.hold(o.run_dir(), "run folder"))
        return _train(o, rt, ds, ds_sha, feats, vgg_file, existing)


def _train(o: TrainOptions, rt, ds, ds_sha: str, feats, vgg_file, existing) -> int:
    from p2phd.training.loop import Loop

    loop = Loop(o, rt, ds, feats, vgg_file)
    resume_from = runs.latest_state(o.run_dir()) if existing is not None else None
    if resume_from is None and o.load_pretrain:
        cli.log(load_pretrain(o, loop.trainer))
    # Everything validated: from here on the run folder is written (rank 0 only).
    if rt.is_main:
        o.run_dir().mkdir(parents=True, exist_ok=True)
        runs.write_options(
            o.run_dir(),
            cli.options_dict(o),
            {"path": str(Path(o.manifest).resolve()), "sha256": ds_sha},
        )
    loop.start(resume_from)
    loop.run()
    if rt.is_main:
        cli.emit(o.run_dir())
    return 0


def dry_run(o: TrainOptions, ds, existing, vgg_file) -> int:
    from p2phd.core import runtime
    from p2phd.nets import describe

    runtime.setup(o.device_target, True, o.seed, o.verbose, data_parallel=False)
    run = o.run_dir()
    spe = data.steps_per_epoch(len(ds), o.batch_size)
    state = runs.latest_state(run) if existing else None
    plan = {
        "options": cli.options_dict(o),
        "dataset": {"path": str(o.manifest), "samples": len(ds), "split": ds.split},
        "run_dir": str(run),
        "action": ("resume from " + str(state))
        if state
        else ("start (run folder exists)" if existing else "start"),
        "epochs": schedule.total_epochs(o.niter, o.niter_decay),
        "steps_per_epoch": spe,
        "vgg": str(vgg_file) if vgg_file else None,
        "would_write": [
            str(run / runs.OPTIONS_FILE),
            str(run / runs.SNAPSHOT_FILE),
            str(runs.state_dir(run) / "step-<N>/"),
            str(run / "stats.jsonl"),
            *([] if o.no_html else [str(run / "web/index.html"), str(run / "web/losses.png")]),
            *([str(run / "tensorboard/")] if o.tensorboard else []),
        ],
        "parameters": describe(o),
    }
    print(json.dumps(plan, indent=2, default=str), file=sys.stderr)
    for net, count in plan["parameters"].items():
        cli.log(f"{net}: {count:,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_verb(main))

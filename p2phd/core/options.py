"""Option groups shared by the verbs, spelled as the seed spells them.

Each verb declares ONE flat dataclass by inheriting the groups it needs (dataclass inheritance
flattens the fields), so ``--help`` lists every option with its default and unit, and
``options.json`` beside every output is just ``dataclasses.asdict(opts)``.

Every option is accepted as the seed writes it (``--label_nc``, ``--no_instance``) and with dashes
(``--label-nc``); booleans also take the seed's ``--flag True|False`` form (see cli.py).
"""

import dataclasses
from dataclasses import dataclass
from typing import Any

from p2phd.core.cli import UsageError

DEVICE_TARGETS = ("CPU", "Ascend", "GPU")
RESIZE_MODES = ("scale_width", "scale_width_and_crop", "resize_and_crop", "crop", "none")


def opt(default: Any, help: str, *, choices: tuple | None = None, metavar: str | None = None):
    """A dataclass field whose flag has both spellings and whose help shows the default."""
    meta: dict[str, Any] = {"help": f"{help} (default: {default!r})"}
    if choices is not None:
        meta["choices"] = choices
    if metavar is not None:
        meta["metavar"] = metavar
    return dataclasses.field(default=default, metadata=meta)


def positional(name: str, help: str, *, required: bool = False):
    """A positional input path (a manifest, or '-' to read its path from stdin).

    Not required by argparse unless ``required``: the verb's validate() then says what is
    missing in its own words (argparse would name only the metavar).
    """
    meta: dict[str, Any] = {"args": [name], "type": str, "metavar": name.upper(), "help": help}
    if not required:
        meta["nargs"] = "?"
    return dataclasses.field(default="", metadata=meta)


def _with_flag_names(cls: type) -> type:
    """Give every field the flags ``--name`` and ``--name-with-dashes`` (seed + modern spelling)."""
    for f in dataclasses.fields(cls):
        if f.type in (bool, "bool") and f.default is True:
            # argparse-dataclass would make --name *store False*: an inverted flag.
            raise TypeError(
                f"{cls.__name__}.{f.name}: boolean options must default to False; "
                f"use a negative name (no_{f.name}) as the seed does"
            )
        if "args" not in f.metadata:
            names = [f"--{f.name}"]
            if "_" in f.name:
                names.append(f"--{f.name.replace('_', '-')}")
            f.metadata = dict(f.metadata, args=names)  # type: ignore[misc]
    return cls


def flat_options(cls: type) -> type:
    """Decorator for a verb's option class: a dataclass with seed + dashed flag names."""
    return _with_flag_names(dataclass(cls))


@dataclass
class RuntimeOptions:
    device_target: str = opt("CPU", "MindSpore device target", choices=DEVICE_TARGETS)
    pynative: bool = opt(False, "run in PyNative mode instead of graph mode (debugging)")
    seed: int = opt(0, "seed for python, numpy and MindSpore")
    verbose: bool = opt(False, "keep MindSpore's own log messages and print tracebacks")
    dry_run: bool = opt(False, "print the resolved options and what would be written, then exit")


@dataclass
class DataOptions:
    label_nc: int = opt(35, "number of label classes; 0 = RGB input images (<phase>_A/<phase>_B)")
    no_instance: bool = opt(False, "do not use instance maps (no edge map, no instance features)")
    input_nc: int = opt(3, "input image channels when label_nc is 0")
    output_nc: int = opt(3, "output image channels")
    load_size: int = opt(
        1024, "scale images to this width (pixels) [scale_width*] or size [resize_and_crop]"
    )
    fine_size: int = opt(512, "crop to this size (pixels) [*crop modes]")
    resize_or_crop: str = opt("scale_width", "preprocessing at training time", choices=RESIZE_MODES)


@dataclass
class ModelOptions:
    netG: str = opt(
        "global", "generator: global (512p) or local (1024p enhancer)", choices=("global", "local")
    )
    ngf: int = opt(64, "generator filters in the first conv layer")
    n_downsample_global: int = opt(4, "stride-2 downsamplings in the global generator")
    n_blocks_global: int = opt(9, "residual blocks in the global generator")
    n_blocks_local: int = opt(3, "residual blocks in each local enhancer")
    n_local_enhancers: int = opt(1, "number of local enhancers (netG local)")
    norm: str = opt("instance", "normalisation layer", choices=("instance", "batch"))
    instance_feat: bool = opt(False, "add instance-wise encoded features to the generator input")
    label_feat: bool = opt(False, "add label-wise (per class region) encoded features")
    feat_num: int = opt(3, "channels of the encoded features")
    n_downsample_E: int = opt(4, "downsamplings in the feature encoder")
    nef: int = opt(16, "encoder filters in the first conv layer")
    num_D: int = opt(2, "discriminator scales")
    n_layers_D: int = opt(3, "layers per discriminator scale")
    ndf: int = opt(64, "discriminator filters in the first conv layer")
    no_lsgan: bool = opt(False, "use the sigmoid + BCE GAN loss instead of LSGAN (MSE)")

    def use_features(self) -> bool:
        return self.instance_feat or self.label_feat

    def generator_stride(self) -> int:
        """Input sizes must be multiples of this for the generator to return the same size."""
        stride = 2**self.n_downsample_global
        if self.netG == "local":
            stride *= 2**self.n_local_enhancers
        return stride


def validate_data_model(o: Any) -> None:
    """Checks shared by every verb that builds networks; raise UsageError with one line."""
    positive = ["ngf", "ndf", "nef", "num_D", "n_layers_D", "feat_num", "output_nc"]
    for name in positive:
        if getattr(o, name) < 1:
            raise UsageError(f"--{name} must be at least 1, got {getattr(o, name)}")
    if o.label_nc < 0 or o.label_nc > 256:
        raise UsageError(
            f"--label_nc must be 0 (RGB input) or 1..256 (uint8 labels), got {o.label_nc}"
        )
    if o.label_nc == 0 and o.input_nc < 1:
        raise UsageError(f"--input_nc must be at least 1 with --label_nc 0, got {o.input_nc}")
    if o.use_features() and o.no_instance and o.instance_feat:
        raise UsageError(
            "--instance_feat needs instance maps; drop --no_instance or use --label_feat"
        )
    if o.instance_feat and o.label_feat:
        raise UsageError("choose one of --instance_feat and --label_feat")
    stride = o.generator_stride()
    if (
        o.resize_or_crop in ("scale_width_and_crop", "resize_and_crop", "crop")
        and o.fine_size % stride
    ):
        raise UsageError(
            f"--fine_size {o.fine_size} must be a multiple of {stride} (the generator's stride for "
            f"netG {o.netG}, n_downsample_global {o.n_downsample_global})"
        )
    if o.resize_or_crop == "scale_width" and o.load_size and o.load_size % stride:
        raise UsageError(
            f"--load_size {o.load_size} must be a multiple of {stride} with scale_width"
        )

"""NVIDIA pix2pixHD's option names on p2phd's command lines (applied by cli.parse_options, which
turns ``Refused`` into exit 2 and prints the notes; this module imports only core.paths).

Every option of NVIDIA's options/{base,train,test}_options.py has a rule here, decided by what it
means in NVIDIA's code. Where the verb has an option with that meaning (``target``), NVIDIA's
spelling becomes it (``--loadSize 512`` -> ``--load_size 512``; a ``sets`` flag gives a value:
``--fp16`` -> ``--amp O1``, or ``--amp`` where amp is a switch). Where the verb has no such
option, in this order:

- ``run``: an architecture or data option, on a verb that reads it from a run folder (render,
  precompute, export): checked against the run's options.json (exit 2 if it differs);
- ``accept``: a value that changes nothing in p2phd (``--which_epoch latest``): dropped with ``note``;
- ``refuse``: exit 2 with this (what to use instead);
- ``note``: accepted and dropped, saying why on stderr;
- nothing: left as typed (argparse then says it is not an option of this verb, as NVIDIA's
  test.py says of a training option).

The verb's own options always win: a verb that has an option of the same name (import's
``--which_epoch``, cluster's ``--n_clusters``) gets it unchanged, unless the value is one only
NVIDIA's meaning takes (``clash``: render ``--engine g.trt``, a TensorRT file, is refused).
``--name`` (+ ``--checkpoints_dir``) on a verb that takes ``--run`` names the run folder, as in
NVIDIA's test.py.
The aliases are not argparse options, so ``--help`` lists only p2phd's names; docs/nvidia.md lists these.
"""

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2phd.core.paths import MANIFESTS_DIR, OPTIONS_FILE, OUTPUTS_DIR


class Refused(Exception):
    """An NVIDIA option p2phd has no meaning for, or one that contradicts the run: exit 2."""


@dataclass(frozen=True)
class Rule:
    value: bool  # NVIDIA's option takes a value (else a store_true flag)
    target: str = ""  # p2phd option with the same meaning, where the verb has it
    sets: str = ""  # a flag: the value it gives target ("" = target is a switch too)
    run: bool = False  # architecture/data: checked against the run on verbs that read one
    accept: Callable[[str], bool] | None = None  # values that change nothing here
    refuse: str = ""
    note: str = ""
    clash: bool = False  # a value outside the verb's own choices of this name is NVIDIA's meaning


def _same(*names: str, run: bool = False, value: bool = True) -> dict[str, Rule]:
    return {n: Rule(value, target=n, run=run) for n in names}


def _is(*values: str) -> Callable[[str], bool]:
    return lambda v: v in values


_MANIFEST = (
    "bin/{verb} reads a dataset manifest: make it with bin/prepare --dataroot DIR --phase PHASE "
    "(it prints the path; bin/prepare ... | bin/{verb} - ...)"
)
_NEWEST = "bin/{verb} uses the run's newest checkpoint (G.ckpt; bin/train resumes its newest state)"
_IN_ORDER = "bin/{verb} takes every sample in order, unflipped"

RULES: dict[str, Rule] = {
    # experiment
    "name": Rule(True, target="name"),  # + the run folder on --run verbs (rewrite)
    "checkpoints_dir": Rule(True, target="checkpoints_dir"),
    "gpu_ids": Rule(
        True,
        refuse="p2phd has no device list: choose the device type with --device_target "
        "CPU|GPU|Ascend (NVIDIA's -1 is --device_target CPU) and one worker per device with "
        "msrun (make NPROC=N; docs/training.md: Several devices)",
    ),
    "model": Rule(
        True,
        accept=_is("pix2pixHD"),
        note="p2phd is pix2pixHD",
        refuse="p2phd is pix2pixHD only (NVIDIA's 'ui' model belongs to its editing tool)",
    ),
    "use_dropout": Rule(
        False, note="ignored: NVIDIA's generators never receive it (no dropout layer there either)"
    ),
    "data_type": Rule(
        True,
        accept=_is("32"),
        note="float32 is p2phd's default",
        refuse="half precision is --amp (bin/train --amp O1|O2, bin/render --amp); "
        "p2phd has no 8-bit mode",
    ),
    "fp16": Rule(
        False,
        target="amp",
        sets="O1",
        refuse="bin/{verb} computes in float32 (half precision: bin/train --amp, bin/render --amp)",
    ),
    "local_rank": Rule(
        True,
        refuse="msrun gives every worker its rank: start the verb under msrun "
        "(make NPROC=N; docs/training.md: Several devices), not torch.distributed.launch",
    ),
    # sizes and data
    "batchSize": Rule(
        True, target="batch_size", note="bin/{verb} has no batches (bin/train and bin/render do)"
    ),
    "loadSize": Rule(True, target="load_size", run=True),
    "fineSize": Rule(True, target="fine_size", run=True),
    **_same("label_nc", "input_nc", "output_nc", "resize_or_crop", "norm", run=True),
    "dataroot": Rule(True, target="dataroot", refuse=_MANIFEST),
    "phase": Rule(
        True,
        target="phase",
        refuse="the split is the dataset manifest's (bin/prepare --phase PHASE)",
    ),
    "serial_batches": Rule(False, target="serial_batches", note=_IN_ORDER),
    "no_flip": Rule(False, target="no_flip", note=_IN_ORDER),
    "nThreads": Rule(
        True,
        target="jobs",
        note="bin/{verb} reads prepared manifests (no loader threads); bin/prepare --jobs "
        "sets the decoding workers",
    ),
    "max_dataset_size": Rule(
        True,
        target="max_samples",
        refuse="train on the first N samples by preparing only them: bin/prepare --max_samples N",
    ),
    "verbose": Rule(False, target="verbose"),
    # displays
    "display_winsize": Rule(True, note="ignored: the pages show images at a fixed width"),
    "tf_log": Rule(
        False, target="tensorboard", note="TensorBoard event files are bin/train's --tensorboard"
    ),
    "no_html": Rule(False, target="no_html"),
    **_same("display_freq", "print_freq", "save_latest_freq", "save_epoch_freq"),
    "debug": Rule(
        False,
        refuse="for a short check use --max_steps N --print_freq 1 --display_freq 1 "
        "(and a small manifest: bin/prepare --max_samples N)",
    ),
    # generator, encoder, discriminator
    **_same(
        "netG",
        "ngf",
        "n_downsample_global",
        "n_blocks_global",
        "n_blocks_local",
        "n_local_enhancers",
        "niter_fix_global",
        "feat_num",
        "n_downsample_E",
        "nef",
        run=True,
    ),
    **_same("no_instance", "instance_feat", "label_feat", run=True, value=False),
    "load_features": Rule(
        False,
        target="load_features",
        note="no effect on bin/{verb} (NVIDIA's test.py does not read it either)",
    ),
    "n_clusters": Rule(
        True,
        target="n_clusters",
        note="the styles per class are bin/cluster's --n_clusters (bin/render reads them from "
        "--clusters)",
    ),
    **_same("num_D", "n_layers_D", "ndf", "lambda_feat", "pool_size", "niter", "niter_decay"),
    **_same("beta1", "lr", "load_pretrain"),
    **_same("no_ganFeat_loss", "no_vgg_loss", "no_lsgan", value=False),
    # training runs
    "continue_train": Rule(
        False,
        note="p2phd resumes by itself: the same bin/train command continues from the run's "
        "newest saved state",
    ),
    "which_epoch": Rule(
        True, target="which_epoch", accept=_is("latest"), note=_NEWEST, refuse=_NEWEST
    ),
    # testing
    "how_many": Rule(True, target="max_samples"),
    "ntest": Rule(True, target="max_samples"),
    "results_dir": Rule(
        True,
        refuse="bin/render writes the folder --out DIR names (default <run>/render-<split>; "
        "NVIDIA wrote <results_dir>/<name>/<phase>_<epoch>)",
    ),
    "aspect_ratio": Rule(
        True,
        accept=lambda v: _float(v) == 1.0,
        note="outputs keep the model's aspect",
        refuse="p2phd does not stretch outputs; --original_size writes them at the source's size",
    ),
    "cluster_path": Rule(True, target="clusters"),
    "use_encoded_image": Rule(False, target="use_encoded_image"),
    "export_onnx": Rule(True, refuse="export with bin/export --run RUN --format ONNX"),
    "engine": Rule(  # NVIDIA's is a TensorRT engine file; render's own names a runtime
        True,
        target="engine",
        clash=True,
        refuse="p2phd does not read TensorRT engine files: bin/export --format ONNX writes a "
        "model that bin/render --onnx FILE --providers TensorRT runs through TensorRT",
    ),
    "onnx": Rule(
        True,
        target="onnx",
        refuse="bin/{verb} does not run ONNX models: bin/render --onnx FILE renders a "
        "bin/export --format ONNX model",
    ),
}


def _float(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


@dataclass
class Rewritten:
    """argv with NVIDIA's names replaced, what to check once the options are parsed (p2phd name
    -> (NVIDIA spelling, value)) and the notes for stderr."""

    argv: list[str]
    run_checks: dict[str, tuple[str, str | bool]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _own_flags(cls: type) -> set[str]:
    flags: set[str] = set()
    for f in dataclasses.fields(cls):
        flags.update(f.metadata.get("args", [f"--{f.name}"]))
    return flags


def rewrite(cls: type, argv: list[str], verb: str) -> Rewritten:
    """Replace NVIDIA's option names in argv by the verb's own (module docstring)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    own = _own_flags(cls)
    out = Rewritten([])
    given: dict[str, str] = {}  # --name / --checkpoints_dir on a --run verb
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        name, eq, inline = arg[2:].partition("=")
        if arg == "--":
            out.argv += argv[i - 1 :]
            break
        clash = _clash(name, inline or (argv[i] if i < len(argv) else ""), fields)
        if arg.startswith("--") and clash:  # the verb's own option name, NVIDIA's meaning
            raise _refusal(name, clash, RULES[name], verb)
        if not arg.startswith("--") or arg.partition("=")[0] in own or name not in RULES:
            if (
                arg == "--load_features"
                and _bare(argv, i)
                and _takes_value(fields, "load_features")
            ):
                out.argv += ["--load_features", _features_of_pretrain(argv, out, verb)]
                continue
            out.argv.append(arg)
            continue
        rule = RULES[name]
        if rule.value and not eq:
            if i >= len(argv):
                raise Refused(f"--{name} (NVIDIA's option) expects a value")
            inline, i = argv[i], i + 1
        elif not rule.value and i < len(argv) and argv[i] in ("True", "False", "true", "false"):
            inline, i = argv[i], i + 1  # the MindSpore port's --flag True spelling
            if inline.lower() == "false":
                continue
        if name in ("name", "checkpoints_dir") and "run" in fields and rule.target not in fields:
            given[name] = inline
            continue
        out.argv += _resolve(name, rule, inline if rule.value else True, fields, out, verb)
    if given:
        out.argv += _run_folder(given, argv, verb)
    return out


def _resolve(
    name: str, rule: Rule, value: str | bool, fields: dict, out: Rewritten, verb: str
) -> list[str]:
    """The argv words for one NVIDIA option (may be none), or UsageError."""
    target = fields.get(rule.target)
    if target is not None:
        if not rule.value:
            return [f"--{rule.target}"] + ([rule.sets] if _takes_value(fields, rule.target) else [])
        return [f"--{rule.target}", str(value)]
    if rule.run and "run" in fields:
        out.run_checks[rule.target or name] = (name, value)
        return []
    if rule.accept is not None and isinstance(value, str) and rule.accept(value):
        out.notes.append(_note(name, rule.note, verb))
        return []
    if rule.refuse:
        raise _refusal(name, value, rule, verb)
    if rule.note:
        out.notes.append(_note(name, rule.note, verb))
        return []
    return [f"--{name}"] + ([str(value)] if isinstance(value, str) else [])


def _clash(name: str, value: str, fields: dict) -> str:
    """value if the verb has an option of NVIDIA's name with choices and value is none of them
    (render --engine onnxruntime is p2phd's; --engine g.trt is NVIDIA's TensorRT file), else ""."""
    rule, own = RULES.get(name), fields.get(name)
    if rule is None or not rule.clash or own is None or "choices" not in own.metadata:
        return ""
    return value if value and value not in own.metadata["choices"] else ""


def _refusal(name: str, value: str | bool, rule: Rule, verb: str) -> Refused:
    shown = f"--{name}" + (f" {value}" if isinstance(value, str) else "")
    return Refused(f"{shown} (NVIDIA's option): {rule.refuse.format(verb=verb)}")


def _note(name: str, note: str, verb: str) -> str:
    return f"{verb}: note: --{name} (NVIDIA's option): {note.format(verb=verb)}"


def _bare(argv: list[str], i: int) -> bool:
    """No value follows argv[i - 1] (NVIDIA's flag form of an option that takes one here)."""
    return i >= len(argv) or argv[i].startswith("--")


def _takes_value(fields: dict, name: str) -> bool:
    return name in fields and fields[name].type not in (bool, "bool")


def _value_of(argv: list[str], flag: str) -> str:
    for j, a in enumerate(argv):
        if a == flag and j + 1 < len(argv):
            return argv[j + 1]
        if a.startswith(flag + "="):
            return a.partition("=")[2]
    return ""


def _run_folder(given: dict[str, str], argv: list[str], verb: str) -> list[str]:
    """NVIDIA's test.py finds the run as <checkpoints_dir>/<name>: p2phd's --run."""
    if "name" not in given:
        raise Refused(
            "--checkpoints_dir (NVIDIA's option) names the run folder together with --name; "
            f"or give bin/{verb} --run RUN"
        )
    if _value_of(argv, "--run"):
        raise Refused("give --run RUN or NVIDIA's --name NAME, not both")
    return ["--run", str(Path(given.get("checkpoints_dir") or OUTPUTS_DIR) / given["name"])]


def _features_of_pretrain(argv: list[str], out: Rewritten, verb: str) -> str:
    """NVIDIA's bare --load_features reads the maps its precompute script made with the run it
    starts from (--load_pretrain): here bin/precompute's default output for that run."""
    pretrain = _value_of(argv, "--load_pretrain")
    if not pretrain:
        raise Refused(
            "--load_features takes the feature manifest bin/precompute wrote "
            "(NVIDIA's bare flag form needs --load_pretrain RUN to find it)"
        )
    path = MANIFESTS_DIR / f"{Path(pretrain).resolve().name}-features.h5"
    out.notes.append(
        f"{verb}: note: --load_features (NVIDIA's flag form): {path}, from --load_pretrain"
    )
    return str(path)


def check_against_run(opts: Any, checks: dict[str, tuple[str, str | bool]], verb: str) -> None:
    """Architecture options NVIDIA's test.py takes must be the run's (p2phd reads them there)."""
    run = getattr(opts, "run", "")
    trained = _run_options(Path(run)) if run and checks else None
    if trained is None:
        return  # no run (--mindir), none yet or unreadable: the verb itself reports that
    for key, (name, value) in checks.items():
        want = trained.get(key)
        if want is None:
            continue
        try:
            got = value if isinstance(want, bool) else type(want)(value)
        except ValueError:
            raise Refused(f"--{name} {value}: expected a {type(want).__name__}") from None
        if got != want:
            shown = f"--{name}" + (f" {value}" if isinstance(value, str) else "")
            raise Refused(
                f"{shown} (NVIDIA's option): run {run} was trained with --{key} {want!r}; "
                f"bin/{verb} takes the architecture from the run's {OPTIONS_FILE}"
            )


def _run_options(run: Path) -> dict[str, Any] | None:
    try:
        options = json.loads((run / OPTIONS_FILE).read_text()).get("options")
    except (OSError, ValueError, AttributeError):
        return None
    return options if isinstance(options, dict) else None

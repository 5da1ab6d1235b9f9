"""What a render will do, resolved and checked before anything is written (bin/render's plan).

``make_plan`` reads the run's options and snapshot, opens the dataset manifest, checks that the
two fit (label_nc, instances, input channels), picks the mode (labels, clusters or encoded
photos) with its cluster manifest and style choices, and records the settings that decide the
pixels (compared when a folder is rendered again). ``sample_record`` is one row of the render
manifest.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p2phd.core import manifest, runs
from p2phd.core.cli import UsageError, check_writable
from p2phd.data.dataset import Dataset
from p2phd.rendering import files as rf
from p2phd.rendering.options import RenderOptions, parse_shard


@dataclass
class Plan:
    """Everything resolved and checked before anything is written."""

    o: RenderOptions
    run_dir: Path
    run_options: dict[str, Any]
    arch: Any
    ds: Dataset
    checkpoint: Path
    checkpoint_sha: str
    checkpoint_stat: tuple[int, int]
    mode: str  # labels | clusters | encoded
    clusters: Any  # styles.Clusters or None
    choices: dict[int, int]
    out: Path
    rows: list[int]  # rows of the manifest this invocation is responsible for
    shard: tuple[int, int] | None
    settings: dict[str, Any] = field(default_factory=dict)
    deployed: dict[str, Any] | None = None  # --mindir/--onnx: the sidecar (checkpoint = the file)
    objects: dict[str, dict[int, tuple[str, int]]] = field(default_factory=dict)  # --styles
    choice: Any = None  # deploy.engines.Choice: what runs G (resolve_engine)
    g_size: tuple[int, int] = (0, 0)  # the largest (H, W) G gets (the engine's rule, the export)

    def choose_styles(self, label: Any, inst: Any, name: str, variant: int) -> tuple[list, Any]:
        """styles.choose_styles with this render's seed, --style and --styles choices."""
        from p2phd.features import styles

        objects = self.objects.get(name, {})
        return styles.choose_styles(
            label, inst, self.clusters, self.o.seed, name, self.choices, variant, objects
        )

    @property
    def variants(self) -> int:
        return self.o.variants

    def files(self, row: int) -> dict[str, Any]:
        return rf.sample_files(self.ds.names[row], self.variants, self.ds.has_photo)

    def out_size(self, row: int) -> tuple[int, int]:
        size = self.ds.orig_sizes[row] if self.o.original_size else self.ds.sizes[row]
        return int(size[0]), int(size[1])


def check_compatible(arch: Any, ds: Dataset, run_dir: Path) -> None:
    """The manifest must hold what the run was trained on (one line, exit 2)."""
    where = f"{ds.path} vs run {run_dir}"
    if ds.label_nc != arch.label_nc:
        raise UsageError(
            f"{where}: the manifest has label_nc {ds.label_nc}, the run was trained "
            f"with label_nc {arch.label_nc}"
        )
    if arch.label_nc == 0 and ds.input_nc != arch.input_nc:
        raise UsageError(
            f"{where}: the manifest has {ds.input_nc}-channel inputs, the run "
            f"expects input_nc {arch.input_nc}"
        )
    if not arch.no_instance and not ds.has_instance:
        raise UsageError(
            f"{where}: the run uses instance maps (edge map) but the manifest has "
            "none; prepare it without --no_instance"
        )
    if arch.output_nc not in (1, 3):
        raise UsageError(
            f"run {run_dir}: output_nc {arch.output_nc} cannot be stored as PNG (1 or 3)"
        )


def resolve_mode(
    o: RenderOptions, arch: Any, run_options: dict[str, Any], ds: Dataset, run_dir: Path
) -> tuple[str, Any, dict[int, int]]:
    """labels / clusters / encoded, with the cluster manifest and style choices checked."""
    from p2phd.features import styles

    if not arch.use_features():
        extra = [
            f
            for f, on in (
                ("--clusters", o.clusters),
                ("--style", o.style),
                ("--styles", o.styles),
                ("--variants", o.variants > 1),
                ("--use_encoded_image", o.use_encoded_image),
            )
            if on
        ]
        if extra:
            raise UsageError(
                f"run {run_dir} does not use features: {', '.join(extra)} "
                "only applies to --instance_feat/--label_feat runs"
            )
        return "labels", None, {}
    if o.use_encoded_image:
        if o.clusters or o.style or o.styles or o.variants > 1:
            raise UsageError(
                "--use_encoded_image encodes the real photo: do not combine it with "
                "--clusters, --style(s) or --variants"
            )
        if run_options.get("load_features"):
            raise UsageError(
                f"run {run_dir} was trained on precomputed features and has no "
                "encoder: render it with --clusters"
            )
        if not ds.has_photo:
            raise UsageError(
                f"{ds.path}: --use_encoded_image needs photos, the {ds.split} split "
                "has none; use --clusters"
            )
        return "encoded", None, {}
    if not o.clusters:
        raise UsageError(
            f"run {run_dir} uses instance features: pass --clusters FILE "
            "(bin/cluster) or --use_encoded_image"
        )
    clusters = styles.Clusters(o.clusters)
    clusters.check(arch.feat_num, arch.label_nc)
    choices = styles.parse_style(o.style or None, arch.label_nc)
    clusters.check_choices(choices)
    return "clusters", clusters, choices


def resolve_styles(o: RenderOptions, p: "Plan") -> dict[str, dict[int, tuple[str, int]]]:
    """--styles FILE read and checked against the manifest's samples and the clusters."""
    if not o.styles:
        return {}
    from p2phd.features import styles

    read = styles.read_styles_file(o.styles)
    rows = {name: i for i, name in enumerate(p.ds.names)}

    def segments_of(name: str) -> tuple[Any, Any] | None:
        if name not in rows:
            return None
        s = p.ds.sample(rows[name])
        return s.label, (s.inst if p.arch.instance_feat else s.label)

    return styles.check_object_styles(o.styles, read, segments_of, p.clusters)


def make_settings(p: Plan) -> dict[str, Any]:
    """What decides the pixels (compared on reruns) plus, under 'paths', where it came from."""
    s: dict[str, Any] = {
        "schema": rf.SETTINGS_SCHEMA,
        "mode": p.mode,
        "checkpoint_sha256": p.checkpoint_sha,
        "dataset_sha256": p.ds.sha256(),
        "arch": dataclasses.asdict(p.arch),
        "variants": p.variants,
        "original_size": p.o.original_size,
        "batch_size": p.o.batch_size,
    }
    # bf16 moves pixels by levels: another render setting. The engine is recorded, not compared
    # (files.settings_key): engines round within one level of each other, like --batch_size.
    s["precision"] = p.choice.precision
    s["engine"] = p.choice.engine + (
        " " + p.o.providers if p.choice.engine == "onnxruntime" else ""
    )
    if p.mode == "clusters":
        s.update(
            clusters_sha256=p.clusters.sha256(),
            seed=p.o.seed,
            style={str(c): k for c, k in sorted(p.choices.items())},
        )
        if p.o.styles:  # only then, so the settings of earlier renders compare equal
            s["styles_sha256"] = manifest.sha256_file(p.o.styles)
    s["paths"] = {
        "run": str(p.run_dir.resolve()),
        "checkpoint": str(p.checkpoint.resolve()),
        "dataset": str(p.ds.path.resolve()),
        "clusters": str(p.clusters.path.resolve()) if p.clusters else "",
        **({"styles": str(Path(p.o.styles).resolve())} if p.o.styles else {}),
    }
    return s


def model_source(o: RenderOptions) -> tuple[Path, dict[str, Any], Path, dict[str, Any] | None]:
    """(run folder, run options, weights file, sidecar): the run's G.ckpt, or with --mindir or
    --onnx the exported file, whose sidecar carries the run's path and options (the run need not
    exist)."""
    if o.exported:
        from p2phd.deploy import sidecar

        side = sidecar.read(o.exported, "ONNX" if o.onnx else "MINDIR")
        return Path(side["run"]["path"]), side["run"]["options"], Path(o.exported), side
    run_dir = Path(o.run)
    doc = runs.read_options(run_dir)
    ckpt = runs.trained_snapshot(run_dir)
    return run_dir, doc["options"], ckpt, None


def check_onnx_sizes(model: str | Path, arch: Any, ds: Dataset, stride: int) -> None:
    """Every sample's G size must be a multiple of the ONNX file's stride (exit 2 otherwise)."""
    from p2phd.data.pipeline import target_size

    for name, (h, w) in zip(ds.names, ds.sizes, strict=True):
        gh, gw = target_size(arch, int(h), int(w))
        if gh % stride or gw % stride:
            raise UsageError(
                f"{model}: {ds.path} sample {name} needs {gh}x{gw}, not a multiple of the "
                f"model's stride {stride}"
            )


def check_deployed(o: RenderOptions, mode: str, arch: Any, ds: Dataset, side: dict) -> None:
    """An exported graph has no encoder; a MindIR has one input size and batch (--batch_size
    follows it), an ONNX file any batch and H, W multiples of its stride."""
    from p2phd.data.pipeline import target_size

    if mode == "encoded":
        raise UsageError(
            f"{o.exported}: an exported model has no encoder; use --run for encoded images"
        )
    if side["format"] == "ONNX":
        check_onnx_sizes(o.onnx, arch, ds, int(side["stride"]))
        return
    n = int(side["batch_size"])
    if o.batch_size not in (1, n):
        raise UsageError(f"{o.mindir}: exported for batch {n}; --batch_size {o.batch_size} differs")
    o.batch_size = n
    size = tuple(side["size"])
    for name, (h, w) in zip(ds.names, ds.sizes, strict=True):
        if target_size(arch, int(h), int(w)) != size:
            got = "x".join(map(str, target_size(arch, int(h), int(w))))
            raise UsageError(
                f"{o.mindir}: exported at {size[0]}x{size[1]}, but {ds.path} sample {name} "
                f"needs {got} (bin/export --size {got})"
            )


def make_plan(o: RenderOptions, manifest_path: str) -> Plan:
    if o.out:  # checked again below once the split (and so the default folder) is known
        check_writable(o.out, "--out", folder=True)
    run_dir, run_options, ckpt, side = model_source(o)
    st = ckpt.stat()  # before hashing: render re-checks it, so a file changed since is caught
    if side is not None:
        from p2phd.deploy import sidecar

        sha = sidecar.verify(ckpt, side)
    else:
        sha = manifest.sha256_file(ckpt)
    arch = runs.arch_from_dict(run_options)
    ds = Dataset(manifest_path)
    check_compatible(arch, ds, run_dir)
    mode, clusters, choices = resolve_mode(o, arch, run_options, ds, run_dir)
    if side is not None:
        check_deployed(o, mode, arch, ds, side)
    shard = parse_shard(o.shard) if o.shard else None
    rows = list(range(len(ds)))[: o.max_samples or None]
    if shard:
        rows = rows[shard[0] :: shard[1]]
    default_out = ckpt.with_name(f"{ckpt.stem}-render-{ds.split}") if side else None
    out = Path(o.out) if o.out else default_out or run_dir / f"render-{ds.split}"
    out = check_writable(out, "--out", True)
    plan = Plan(
        o,
        run_dir,
        run_options,
        arch,
        ds,
        ckpt,
        sha,
        (st.st_size, st.st_mtime_ns),
        mode,
        clusters,
        choices,
        out,
        rows,
        shard,
        deployed=side,
    )
    plan.objects = resolve_styles(o, plan)
    plan.choice = resolve_engine(plan)
    plan.settings = make_settings(plan)
    return plan


def resolve_engine(p: Plan) -> Any:
    """deploy.engines.choose for this render (UsageError for an impossible --engine/--precision);
    announced on stderr."""
    from p2phd.core.cli import log
    from p2phd.data.pipeline import target_size
    from p2phd.deploy import engines

    o, fmt = p.o, (p.deployed or {}).get("format", "")
    sizes = [target_size(p.arch, int(h), int(w)) for h, w in p.ds.sizes]
    size = p.g_size = max(sizes, key=lambda s: s[0] * s[1], default=(0, 0))
    if fmt == "MINDIR":
        engines.check_precision(o.precision, engines.MINDSPORE)
        choice = engines.Choice(engines.MINDSPORE, engines.FP32, "--mindir runs in MindSpore")
    else:
        why_not = "" if fmt else _why_not_onnx(p, sizes)
        choice = engines.choose(o.engine, o.precision, o.device_target, p.arch.netG, size, why_not)
        if fmt and choice.engine == engines.MINDSPORE:  # auto on a device with an --onnx file
            choice = engines.Choice(engines.ONNXRUNTIME, choice.precision, "--onnx")
        if not fmt and choice.onnx:
            choice = _check_cache(p, choice)
    if choice.engine == engines.ONNXRUNTIME:  # a provider it lacks: exit 2 before any work
        from p2phd.deploy.onnx_run import providers

        providers(o.providers)
    log(f"render: engine {choice.describe()}")
    return choice


def _check_cache(p: Plan, choice: Any) -> Any:
    """An ONNX engine for --run needs the cached export, or a run folder to write it into."""
    from p2phd.deploy import cache, engines

    if cache.available(p.run_dir, p.checkpoint_sha):
        return choice
    why = f"{p.run_dir} is not writable for the ONNX export ({cache.DIR}/)"
    if p.o.engine != engines.AUTO or choice.precision == engines.BF16:
        raise UsageError(f"{choice.describe()}: {why}; render with --engine mindspore")
    return engines.Choice(engines.MINDSPORE, choice.precision, why)


def _why_not_onnx(p: Plan, sizes: list[tuple[int, int]]) -> str:
    """What of this --run render the ONNX export cannot compute ('' = it can all)."""
    if p.mode == "encoded":
        return "encoder (--use_encoded_image)"
    if p.o.amp:
        return "--amp (MindSpore's float16)"
    stride = p.arch.generator_stride()
    for gh, gw in sizes:
        if gh % stride or gw % stride:
            return f"input size {gh}x{gw} (not a multiple of its stride {stride})"
    return ""


def sample_styles(p: Plan, row: int) -> list[str]:
    """Per variant: the style record of a cluster render, 'encoded', or ''."""
    if p.mode == "encoded":
        return ["encoded"]
    if p.mode != "clusters":
        return [""] * p.variants
    from p2phd.features import styles

    s = p.ds.sample(row)
    inst = s.inst if p.arch.instance_feat else None
    return [
        styles.styles_json(p.choose_styles(s.label, inst, s.name, k)[0]) for k in range(p.variants)
    ]


def sample_record(p: Plan, row: int, style_cache: dict[int, list[str]]) -> dict[str, Any]:
    styles_ = style_cache.get(row) or sample_styles(p, row)
    seed = p.o.seed if p.mode == "clusters" else -1
    return {
        "row": row,
        "name": p.ds.names[row],
        "files": p.files(row),
        "size": p.out_size(row),
        "seeds": [seed] * p.variants,
        "variants": list(range(p.variants)),
        "styles": styles_,
    }

"""bin/render: turn every label map of a dataset manifest into an image with a trained run.

``bin/render --run RUN MANIFEST|- [--clusters FILE] [--out DIR] [--batch_size 1] [--shard I/N]
[--merge] [--seed 0] [--style CLASS=K,...] [--variants K] [--use_encoded_image] [--original_size]``

- The run folder's options.json gives the architecture; G.ckpt gives the weights. Inputs go
  through ``data.Preprocessor(train=False)``, i.e. exactly the resizing training applied.
- Output (default ``<run>/render-<split>/``, i.e. ``outputs/<run-name>/render-<split>/``): one
  lossless PNG per sample named after it (``frankfurt_000000_000576_synthesized.png``), at the
  manifest's size or, with ``--original_size``, resized (BICUBIC) to the source size; the
  colourised label and the real photo (when the split has photos; both are the manifest's arrays,
  resized to the output size); ``index.html`` and the render manifest ``render.h5`` (see
  render_page.py). Prints the folder on stdout.
- Pixels: ``uint8 = clip(round((x + 1) / 2 * 255), 0, 255)`` of G's float32 tanh output
  (``palette.to_uint8``; the MindSpore port casts without clipping, which wraps values around).
  They are bit-identical across reruns, resumes and shards for one --batch_size (every generator
  call gets exactly that many samples); another batch size moves a few pixels by 1/255.
- Resumable: samples whose files all exist are skipped (files are renamed into place when
  complete). ``render-settings.json`` records the checkpoint/dataset/cluster hashes and the
  options that decide the pixels; a folder holding other renders is refused (or --overwrite).
- ``--shard I/N`` renders rows I, I+N, ... and writes ``render-shard-I-of-N.h5``; a later run
  without --shard (or with --merge, which never renders) writes the complete page and manifest.
- Feature runs: ``--clusters`` fills each object with a cluster centre of its class (seeded by
  --seed, the sample and the instance; ``--style car=3`` fixes a class; ``--variants K`` renders
  K draws), or ``--use_encoded_image`` encodes the real photo with the run's encoder.
- PNG encoding and writing run on ``--write_threads`` threads while G computes the next batch.
"""

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import manifest, runs
from . import render_files as rf
from .cli import UsageError, emit, log, options_dict, parse_options, resolve_input
from .dataset import Dataset
from .options import RuntimeOptions, flat_options, opt
from .render_page import write_manifest, write_page


@flat_options
class RenderOptions(RuntimeOptions):
    manifest: str = field(
        default="",
        metadata={
            "args": ["manifest"],
            "metavar": "MANIFEST",
            "help": "dataset manifest to render (bin/prepare), or - to read its path from stdin",
        },
    )
    run: str = opt("", "run folder (bin/train): options.json and G.ckpt (required)", metavar="RUN")
    clusters: str = opt("", "cluster manifest (bin/cluster) for feature runs", metavar="FILE")
    out: str = opt("", "output folder; '' = <run>/render-<split>", metavar="DIR")
    batch_size: int = opt(1, "samples per generator call (same-size samples are batched)")
    shard: str = opt(
        "", "render only rows I, I+N, I+2N... of the manifest (I in 0..N-1)", metavar="I/N"
    )
    merge: bool = opt(
        False,
        "render nothing: check every sample is on disk (e.g. after shards) "
        "and write index.html and render.h5",
    )
    seed: int = opt(0, "seed of the per-object style draws (feature runs) and of MindSpore")
    style: str = opt(
        "",
        "fix the cluster centre of classes: CLASS=K[,CLASS=K...] with a class "
        "id or Cityscapes name (car=3,person=1); the flag may repeat",
        metavar="CLASS=K",
    )
    variants: int = opt(
        1,
        "styles per label map (feature runs with --clusters): draw k uses "
        "variant k of the seeded choice",
    )
    use_encoded_image: bool = opt(
        False,
        "feature runs: encode the real photo with the run's encoder instead of using clusters",
    )
    original_size: bool = opt(False, "resize outputs (BICUBIC) back to the source images' size")
    overwrite: bool = opt(False, "discard renders of another checkpoint/options in the folder")
    write_threads: int = opt(
        2,
        "threads encoding and writing PNGs while G runs; 0 = write in "
        "the inference loop (no overlap)",
    )

    def validate(self) -> None:
        if not self.run:
            raise UsageError("--run RUN is required (the run folder written by bin/train)")
        if not self.manifest:
            raise UsageError("a dataset MANIFEST (or - for stdin) is required")
        for name in ("batch_size", "variants"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.write_threads < 0:
            raise UsageError(f"--write_threads must be 0 or more, got {self.write_threads}")
        if self.shard:
            parse_shard(self.shard)
            if self.merge:
                raise UsageError("--merge assembles all shards: do not combine it with --shard")


def parse_shard(spec: str) -> tuple[int, int]:
    i, sep, n = spec.partition("/")
    if not sep or not i.strip().isdigit() or not n.strip().isdigit() or not 0 <= int(i) < int(n):
        raise UsageError(f"--shard must be I/N with 0 <= I < N (e.g. 0/2), got {spec!r}")
    return int(i), int(n)


def join_style_args(argv: list[str]) -> list[str]:
    """``--style car=3 person=1 --style bus=0`` -> one ``--style car=3,person=1,bus=0``.

    Lets --style take several CLASS=K words and repeat without swallowing the MANIFEST argument.
    """
    out, specs, i = [], [], 0
    while i < len(argv):
        if argv[i] == "--style" or argv[i].startswith("--style="):
            first = argv[i].partition("=")[2] if argv[i].startswith("--style=") else None
            if first is None:
                i += 1
                first = argv[i] if i < len(argv) else ""
            specs.append(first)
            while i + 1 < len(argv) and "=" in argv[i + 1] and not argv[i + 1].startswith("-"):
                i += 1
                specs.append(argv[i])
        else:
            out.append(argv[i])
        i += 1
    return out + (["--style", ",".join(s for s in specs if s)] if specs else [])


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
    from . import styles

    if not arch.use_features():
        extra = [
            f
            for f, on in (
                ("--clusters", o.clusters),
                ("--style", o.style),
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
        if o.clusters or o.style or o.variants > 1:
            raise UsageError(
                "--use_encoded_image encodes the real photo: do not combine it with "
                "--clusters, --style or --variants"
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
    if p.mode == "clusters":
        s.update(
            clusters_sha256=p.clusters.sha256(),
            seed=p.o.seed,
            style={str(c): k for c, k in sorted(p.choices.items())},
        )
    s["paths"] = {
        "run": str(p.run_dir.resolve()),
        "checkpoint": str(p.checkpoint.resolve()),
        "dataset": str(p.ds.path.resolve()),
        "clusters": str(p.clusters.path.resolve()) if p.clusters else "",
    }
    return s


def make_plan(o: RenderOptions, manifest_path: str) -> Plan:
    run_dir = Path(o.run)
    doc = runs.read_options(run_dir)
    arch = runs.arch_from_dict(doc["options"])
    ckpt = runs.snapshot_path(run_dir)
    if not ckpt.is_file():
        raise UsageError(f"{run_dir}: no generator checkpoint {ckpt.name} (train this run first)")
    ds = Dataset(manifest_path)
    check_compatible(arch, ds, run_dir)
    mode, clusters, choices = resolve_mode(o, arch, doc["options"], ds, run_dir)
    st = ckpt.stat()
    shard = parse_shard(o.shard) if o.shard else None
    rows = list(range(len(ds)))
    if shard:
        rows = rows[shard[0] :: shard[1]]
    out = Path(o.out) if o.out else run_dir / f"render-{ds.split}"
    plan = Plan(
        o,
        run_dir,
        doc["options"],
        arch,
        ds,
        ckpt,
        manifest.sha256_file(ckpt),
        (st.st_size, st.st_mtime_ns),
        mode,
        clusters,
        choices,
        out,
        rows,
        shard,
    )
    plan.settings = make_settings(plan)
    return plan


# ---------------------------------------------------------------------------------------------
# records, manifest, page


def sample_styles(p: Plan, row: int) -> list[str]:
    """Per variant: the style record of a cluster render, 'encoded', or ''."""
    if p.mode == "encoded":
        return ["encoded"]
    if p.mode != "clusters":
        return [""] * p.variants
    from . import styles

    s = p.ds.sample(row)
    inst = s.inst if p.arch.instance_feat else None
    return [
        styles.styles_json(
            styles.choose_styles(s.label, inst, p.clusters, p.o.seed, s.name, p.choices, k)[0]
        )
        for k in range(p.variants)
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


def finish(p: Plan, style_cache: dict[int, list[str]], argv: list[str] | None) -> None:
    """Write the shard's manifest, or the complete manifest and page, from what is on disk."""
    present = rf.existing(p.out)
    missing = rf.missing_samples(
        ((r, p.ds.names[r]) for r in p.rows), p.variants, p.ds.has_photo, present
    )
    if missing:
        raise UsageError(
            f"{p.out}: {len(missing)} of {len(p.rows)} samples are not rendered yet "
            f"(e.g. {p.ds.names[missing[0]]}); run again without --merge to render them"
        )
    records = [sample_record(p, r, style_cache) for r in p.rows]
    ckpt_meta = _checkpoint_meta(p)
    attrs = {
        "run": str(p.run_dir.resolve()),
        "checkpoint": str(p.checkpoint.resolve()),
        "checkpoint_sha256": p.checkpoint_sha,
        **ckpt_meta,
        "clusters": str(p.clusters.path.resolve()) if p.clusters else "",
        "clusters_sha256": p.clusters.sha256() if p.clusters else "",
        "dataset": str(p.ds.path.resolve()),
        "dataset_sha256": p.ds.sha256(),
        "split": p.ds.split,
        "mode": p.mode,
        "seed": p.o.seed,
        "style": {str(c): k for c, k in p.choices.items()},
        "variants": p.variants,
        "original_size": p.o.original_size,
        "shard": p.o.shard,
        "split_samples": len(p.ds),
        "complete": len(p.rows) == len(p.ds),
    }
    inputs = [
        manifest.input_record(p.ds.path, p.ds.sha256()),
        manifest.input_record(p.checkpoint, p.checkpoint_sha),
    ]
    if p.clusters:
        inputs.append(manifest.input_record(p.clusters.path, p.clusters.sha256()))
    opts = options_dict(p.o)
    if p.shard:
        write_manifest(p.out / rf.shard_manifest_name(*p.shard), records, attrs, opts, inputs, argv)
        return
    write_manifest(p.out / rf.MANIFEST_FILE, records, attrs, opts, inputs, argv)
    info = {
        "run": p.run_dir.name,
        "split": p.ds.split,
        "samples": len(records),
        "checkpoint": f"{p.checkpoint} (sha256 {p.checkpoint_sha[:12]}, "
        f"epoch {ckpt_meta.get('epoch', '?')}, step {ckpt_meta.get('step', '?')})",
        "dataset": str(p.ds.path),
        "mode": p.mode,
    }
    if p.mode == "clusters":
        info.update(clusters=str(p.clusters.path), seed=p.o.seed, style=p.o.style or "(seeded)")
    write_page(p.out / rf.PAGE_FILE, records, info)


def _checkpoint_meta(p: Plan) -> dict[str, int]:
    from . import checkpoint

    meta = checkpoint.read_meta(p.checkpoint)
    return {k: int(meta[k]) for k in ("epoch", "step") if isinstance(meta.get(k), int | float)}


# ---------------------------------------------------------------------------------------------
# the verb


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    o = parse_options(RenderOptions, join_style_args(raw), "render", (__doc__ or "").split("\n")[0])
    p = make_plan(o, resolve_input(o.manifest))
    try:
        return _run(p, None if argv is None else ["render", *raw])
    finally:
        p.ds.close()


def _run(p: Plan, argv: list[str] | None) -> int:
    o = p.o
    overwrite = rf.check_settings(p.out, p.settings, o.overwrite)
    present = rf.existing(p.out) if not overwrite else set()
    todo = rf.missing_samples(
        ((r, p.ds.names[r]) for r in p.rows), p.variants, p.ds.has_photo, present
    )
    what = f"{len(todo)} of {len(p.rows)} samples ({len(p.ds)} in the {p.ds.split} split)"
    if o.dry_run:
        log(json.dumps(options_dict(o), indent=2, sort_keys=True))
        log(f"would render {what} into {p.out} ({p.mode}, {p.variants} variant(s))")
        return 0
    if o.merge:
        if overwrite:
            raise UsageError(
                f"{p.out}: holds renders made with other settings; --merge cannot "
                "combine them (render again with --overwrite instead)"
            )
        if rf.read_settings(p.out) is None:
            raise UsageError(f"{p.out}: nothing rendered there yet (no {rf.SETTINGS_FILE})")
        finish(p, {}, argv)
        emit(p.out)
        return 0
    p.out.mkdir(parents=True, exist_ok=True)
    if overwrite:
        log(f"render: --overwrite: discarding the earlier renders in {p.out}")
        rf.discard_outputs(p.out)
    rf.write_settings(p.out, p.settings)
    stale = rf.remove_stale_temporaries(p.out)
    log(
        f"render: {what} to render with {p.run_dir.name} ({p.mode}) into {p.out}"
        + (f"; removed {stale} stale temporaries" if stale else "")
    )
    style_cache: dict[int, list[str]] = {}
    if todo:
        from .render_loop import render_samples

        t0 = time.perf_counter()
        st = render_samples(p, todo, style_cache)
        n, dt = st["images"], time.perf_counter() - t0
        rest = n - st["first_images"]
        steady = (
            f", then {(st['seconds'] - st['first_seconds']) / rest:.3f} s/image" if rest else ""
        )
        log(
            f"render: {n} images in {dt:.1f} s with start-up ({n / dt:.3f} images/s); first batch of "
            f"{st['first_images']} in {st['first_seconds']:.1f} s (includes compile){steady}"
        )
    finish(p, style_cache, argv)
    if p.shard and len(p.rows) < len(p.ds):
        log(
            f"render: shard {o.shard} done; after all shards run again without --shard "
            "(or with --merge) for index.html and render.h5"
        )
    emit(p.out)
    return 0


if __name__ == "__main__":
    from .cli import run_verb

    sys.exit(run_verb(main))

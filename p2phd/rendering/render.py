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
  --seed, the sample and the instance; ``--style car=3`` fixes a class; ``--styles FILE`` fixes
  single objects, as bin/edit saves them; ``--variants K`` renders K draws), or
  ``--use_encoded_image`` encodes the real photo with the run's encoder.
- ``--layout cityscapes``: the same PNGs as a Cityscapes tree, ``leftImg8bit/<split>/<city>/``
  photos beside ``gtFine/<split>/<city>/`` label, instance, colour and trainId maps at the
  photo's size (rendering/cityscapes.py), for segmentation trainers; all of the above holds.
- PNG encoding and writing run on ``--write_threads`` threads while G computes the next batch.
- ``--engine auto`` (default): on the CPU the run's generator, exported to ONNX once into
  ``<run>/engine-cache/``, runs in the engine measured fastest for the CPU (p2phd.deploy.engines,
  deploy.cache; docs/render-engines.md), pixels within one level of ``--engine mindspore``;
  MindSpore on Ascend/GPU. ``--precision bf16``: OpenVINO in bfloat16 on CPUs with AMX-BF16 or
  AVX512_BF16. The engine and precision are recorded; only the precision is compared on reruns.
- ``--mindir FILE`` or ``--onnx FILE`` instead of ``--run``: render with a model written by
  bin/export (its sidecar gives the run's options and the file's SHA-256, checked; see
  p2phd.deploy). Same files, page and manifest; default output ``<file stem>-render-<split>/``
  beside the file. ``--onnx`` runs onnxruntime (``--providers``, CPU by default) or OpenVINO
  with ``--threads``, without loading MindSpore.
- Under ``msrun`` (N workers, one node or several) rank r renders rows r, r+N, ... on its own
  device and rank 0 writes the complete page and manifest once every rank's PNGs are on disk
  (rendering/ranked.py); a rank that fails fails the run, naming itself.
"""

import sys
import time
from pathlib import Path

from p2phd.core import lock, manifest, runtime
from p2phd.core.cli import (
    UsageError,
    emit,
    log,
    log_dry_run,
    options_dict,
    parse_options,
    resolve_input,
)
from p2phd.rendering import files as rf
from p2phd.rendering.options import RenderOptions, join_style_args, parse_shard  # noqa: F401
from p2phd.rendering.page import write_manifest, write_page
from p2phd.rendering.plan import Plan, make_plan, sample_record


def finish(p: Plan, style_cache: dict[int, list[str]], argv: list[str] | None) -> None:
    """Write the shard's manifest, or the complete manifest and page, from what is on disk."""
    present = rf.existing(p.out)
    missing = rf.missing_samples(p.rows, p.files, present)
    if missing:
        raise UsageError(
            f"{p.out}: {len(missing)} of {len(p.rows)} samples are not rendered yet "
            f"(e.g. {p.ds.names[missing[0]]}); run again without --merge to render them"
        )
    records = [sample_record(p, r, style_cache) for r in p.rows]
    ckpt_meta = _checkpoint_meta(p)
    # the engine of the last render into the folder (--merge itself renders nothing)
    engine = (rf.read_settings(p.out) or {}).get("engine", p.choice.engine).split()[0]
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
        "engine": engine,
        "precision": p.choice.precision,
        "seed": p.o.seed,
        "style": {str(c): k for c, k in p.choices.items()},
        "styles": str(Path(p.o.styles).resolve()) if p.o.styles else "",
        "styles_sha256": p.settings.get("styles_sha256", ""),
        "variants": p.variants,
        "original_size": p.o.original_size,
        "layout": p.o.layout,
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
    if p.o.styles:
        inputs.append(manifest.input_record(p.o.styles, p.settings["styles_sha256"]))
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
        "engine": f"{engine}, {p.choice.precision}",
    }
    if p.o.layout != "flat":
        info["layout"] = p.o.layout
    if p.mode == "clusters":
        info.update(clusters=str(p.clusters.path), seed=p.o.seed, style=p.o.style or "(seeded)")
    write_page(p.out / rf.PAGE_FILE, records, info)


def _checkpoint_meta(p: Plan) -> dict[str, int]:
    if p.deployed is not None:  # --mindir/--onnx: the checkpoint it was exported from
        return dict(p.deployed["run"]["checkpoint_meta"])
    if p.choice.onnx:
        # The run's cached export, named by G.ckpt's hash: its sidecar holds the same meta, and
        # reading G.ckpt again would import MindSpore and load every weight (730 MB for a 1024p
        # G) at the end of the render, its memory peak. It may not exist when this run rendered
        # nothing (a folder finished by --engine mindspore, --merge): then G.ckpt's own.
        from p2phd.deploy import cache, sidecar

        cached = cache.path_for(p.run_dir, p.checkpoint_sha)
        if cached.is_file():
            return dict(sidecar.read(cached, "ONNX")["run"]["checkpoint_meta"])
    from p2phd.core import checkpoint  # imports MindSpore: not on the ONNX paths

    meta = checkpoint.read_meta(p.checkpoint)
    return {k: int(meta[k]) for k in ("epoch", "step") if isinstance(meta.get(k), int | float)}


# ---------------------------------------------------------------------------------------------
# the verb


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    o = parse_options(RenderOptions, join_style_args(raw), "render", (__doc__ or "").split("\n")[0])
    place = runtime.place()
    if place.scheduler:  # msrun's extra copy of the command: render needs no cluster to serve
        return 0
    p = make_plan(o, resolve_input(o.manifest))
    try:
        if o.dry_run:
            return _run(p, None)
        argv = None if argv is None else ["render", *raw]
        # One writer per folder and shard; whoever writes the page (an unsharded render, the
        # merge, rank 0 under msrun) also holds the folder's own lock.
        shard = (place.rank, place.world) if place.distributed else p.shard
        with lock.hold_part(p.out, "render folder", shard, place.distributed and place.rank == 0):
            if place.distributed:
                from p2phd.rendering import ranked

                return ranked.run(p, place, argv, finish)
            return _run(p, argv)
    finally:
        p.ds.close()


def _run(p: Plan, argv: list[str] | None) -> int:
    o = p.o
    overwrite = rf.check_settings(p.out, p.settings, o.overwrite)
    present = rf.existing(p.out) if not overwrite else set()
    todo = rf.missing_samples(p.rows, p.files, present)
    what = f"{len(todo)} of {len(p.rows)} samples ({len(p.ds)} in the {p.ds.split} split)"
    if o.dry_run:
        log_dry_run(o, f"would render {what} into {p.out} ({p.mode}, {p.variants} variant(s))")
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
        from p2phd.rendering.loop import render_samples

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
    from p2phd.core.cli import run_verb

    sys.exit(run_verb(main))

"""bin/precompute: run a feature run's trained encoder over a dataset and write a feature manifest.

pix2pixHD's 1024p feature mode trains on feature maps that the 512p feature run's encoder E made.
Both existing scripts for this never load E's weights (NVIDIA issue #156: the saved maps are
noise) and the MindSpore port upsamples them bilinearly, mixing instances. Here E is loaded from
the run's G.ckpt (checked), run over every sample at the size the run trained at (no crop, no
flip), and each object's mean feature is painted onto the sample's own instance map at the map
size, so every pixel of an object holds exactly that object's feature (see ``paint_map``).
Resumable: rerunning the same command after a kill continues with the samples not yet written.
``--shard I/N`` encodes rows I, I+N, ... into a shard file and ``--merge`` assembles the shards;
under msrun every rank writes its shard and rank 0 merges (features/shards.py).

Typical use (NVIDIA's train_1024p_feat script): precompute with the 512p feature run over the
manifest the 1024p feature run will train on (prepared at 2048 wide): E runs at the 512p run's
1024x512 and the maps come out at 2048x1024 on that manifest's own instance maps.
"""

import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from p2phd.core import lock, manifest, runtime
from p2phd.core.cli import (
    UsageError,
    check_writable,
    emit,
    log,
    log_dry_run,
    options_dict,
    parse_options,
    resolve_input,
)
from p2phd.core.options import DEVICE_TARGETS, flat_options, opt, positional
from p2phd.core.paths import MANIFESTS_DIR
from p2phd.core.ranks import parse_shard
from p2phd.data.dataset import Dataset, Sample
from p2phd.features.feature_manifest import KIND, FeatureWriter, discard_damaged_tmp
from p2phd.features.styles import segment_classes

_NEAREST = Image.Resampling.NEAREST
_BICUBIC = Image.Resampling.BICUBIC


@flat_options
class PrecomputeOptions:
    manifest: str = positional(
        "manifest",
        "dataset manifest to encode (with photos): best the one the later (1024p) run "
        "trains on, so the maps follow its own instance maps; '-' reads the path from stdin",
    )
    run: str = opt(
        "",
        "run folder of a feature run (trained with --instance_feat or "
        "--label_feat) whose encoder makes the features (required)",
        metavar="RUN",
    )
    out: str = opt(
        "",
        "output feature manifest; '' = manifests/<run name>-features.h5 in the working directory",
        metavar="FILE",
    )
    size: str = opt(
        "",
        "HxW of every map, the size the later run trains at (e.g. 1024x2048); "
        "'' = each sample's size in MANIFEST",
        metavar="HxW",
    )
    load_size: int = opt(
        0,
        "width of the maps, height from each sample's aspect ratio (the later "
        "run's scale_width --load_size); 0 = each sample's size in MANIFEST",
    )
    shard: str = opt(
        "",
        "encode only rows I, I+N, ... into <out stem>.shard-I-of-N.h5 (I in 0..N-1); "
        "under msrun the rank chooses",
        metavar="I/N",
    )
    merge: bool = opt(
        False, "encode nothing: assemble the complete shard files into the feature manifest"
    )
    device_target: str = opt("CPU", "MindSpore device target", choices=DEVICE_TARGETS)
    pynative: bool = opt(False, "run in PyNative mode instead of graph mode (debugging)")
    verbose: bool = opt(False, "keep MindSpore's own log messages and print tracebacks")
    dry_run: bool = opt(False, "print the resolved options and what would be written, then exit")

    def validate(self) -> None:
        if not self.run:
            raise UsageError("--run is required (the feature run whose encoder to use)")
        if not self.manifest:
            raise UsageError("a dataset MANIFEST (or '-') is required")
        if self.size and self.load_size:
            raise UsageError("give at most one of --size and --load_size")
        if self.load_size < 0:
            raise UsageError(f"--load_size must be a positive width, got {self.load_size}")
        parse_size(self.size)
        if self.shard:
            parse_shard(self.shard)
            if self.merge:
                raise UsageError("--merge assembles all shards: do not combine it with --shard")


def parse_size(text: str) -> tuple[int, int] | None:
    if not text:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise UsageError(
            f"--size: expected HxW with positive integers (e.g. 1024x2048), got {text!r}"
        )
    return int(parts[0]), int(parts[1])


# ---------------------------------------------------------------------------- the run and data


def check_run(run: str) -> tuple[dict[str, Any], Any, Path]:
    """(options.json document, ArchOptions, G.ckpt path) of a run that has a trained encoder."""
    from p2phd.core.runs import arch_from_dict, read_options, trained_snapshot

    doc = read_options(run)
    arch = arch_from_dict(doc["options"])
    if not arch.use_features():
        raise UsageError(f"{run}: not a feature run (trained without --instance_feat/--label_feat)")
    if doc["options"].get("load_features"):
        raise UsageError(
            f"{run}: trained with --load_features, so it has no encoder; use the run "
            "whose encoder made those features (e.g. the 512p feature run)"
        )
    return doc, arch, trained_snapshot(run)


def check_dataset(ds: Dataset, arch: Any, run: str) -> None:
    if not ds.has_photo:
        raise UsageError(
            f"{ds.path}: no photos ({ds.split} split); the encoder needs the real images"
        )
    if arch.instance_feat and not ds.has_instance:
        raise UsageError(
            f"{ds.path}: no instance maps, but {run} encodes per instance (--instance_feat)"
        )
    if ds.label_nc != arch.label_nc:
        raise UsageError(
            f"{ds.path}: label_nc {ds.label_nc} differs from the run's {arch.label_nc}"
        )
    if arch.label_feat and arch.label_nc == 0:
        raise UsageError(f"{run}: --label_feat needs label maps (label_nc > 0)")


def load_encoder(arch: Any, ckpt: Path, max_segments: int):
    from p2phd.core import checkpoint
    from p2phd.nets import build_encoder

    enc = build_encoder(arch, max(1, max_segments))
    report = checkpoint.load(ckpt, {"netE": enc})
    if not report.loaded:
        raise UsageError(f"{ckpt}: holds no encoder weights (netE.*)")
    if report.missing or report.mismatched:
        bad = (report.missing + report.mismatched)[:3]
        raise UsageError(
            f"{ckpt}: encoder weights do not fit the run's options (e.g. {', '.join(bad)})"
        )
    enc.set_train(False)
    return enc


def encoder_size(arch: Any, h: int, w: int) -> tuple[int, int]:
    """The size the run trained at (its resize_or_crop without the crop), a multiple of E's stride."""
    from p2phd.data.pipeline import target_size

    th, tw = target_size(arch, h, w)
    base = 2**arch.n_downsample_E
    return max(base, round(th / base) * base), max(base, round(tw / base) * base)


def map_size(o: PrecomputeOptions, h: int, w: int) -> tuple[int, int]:
    fixed = parse_size(o.size)
    if fixed:
        return fixed
    if o.load_size:
        return int(o.load_size * h / w), o.load_size
    return h, w


def _resize(arr: np.ndarray, size: tuple[int, int], resample) -> np.ndarray:
    from p2phd.data.pipeline import _resize as resize

    return resize(arr, size, resample)


def _classes(seg: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Majority label per object (RGB input: NVIDIA's id rule), as render's styles assign them."""
    return segment_classes(seg, label)[1]


# ---------------------------------------------------------------------------- one sample


def segments(sample: Sample, arch: Any) -> np.ndarray:
    """What E pools over: instance ids, or label regions for --label_feat (NVIDIA's encode step
    always used instances: a bug for label_feat runs)."""
    return sample.label if arch.label_feat else sample.inst.astype(np.int32)


def encode_sample(enc, sample: Sample, arch: Any) -> dict[str, np.ndarray]:
    """Run E on one sample at the run's size; returns the per-object rows and E's raw output."""
    import mindspore as ms

    size = encoder_size(arch, *sample.label.shape[:2])
    label = _resize(sample.label, size, _NEAREST)
    seg = _resize(segments(sample, arch), size, _NEAREST).astype(np.int32)
    ids, inverse = np.unique(seg, return_inverse=True)
    index = inverse.reshape(seg.shape).astype(np.int32)
    photo = (
        _resize(sample.photo, size, _BICUBIC).astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    )
    out = enc(ms.Tensor(photo[None].astype(np.float32)), ms.Tensor(index[None])).asnumpy()[0]
    counts = np.bincount(index.reshape(-1), minlength=len(ids))
    first = np.unique(index.reshape(-1), return_index=True)[1]  # first pixel of each object
    feature = out.reshape(out.shape[0], -1)[:, first].T  # all its pixels hold the same mean
    return {
        "instance": ids.astype(np.int32),
        "label": _classes(seg, label),
        "feature": feature.astype(np.float32),
        "area": (counts / index.size).astype(np.float32),
        "raw": out,
    }


def nearest(arr_chw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """NEAREST resize of a (C,H,W) array by pixel centres (as PIL's NEAREST)."""
    c, h, w = arr_chw.shape
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return arr_chw[:, rows][:, :, cols]


def paint_map(
    enc_rows: dict[str, np.ndarray], seg_full: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """(feat_num, H, W) map at ``size``: each pixel gets the feature of its object.

    Objects are those of the sample's own segment map resized NEAREST to ``size``. An object too
    small to survive at the encoder's resolution takes E's NEAREST-upsampled output instead (a
    neighbour's feature: still never a blend of two objects).
    """
    seg = _resize(seg_full, size, _NEAREST).astype(np.int32)
    ids, feats = enc_rows["instance"], enc_rows["feature"]
    pos = np.clip(np.searchsorted(ids, seg), 0, len(ids) - 1)
    known = ids[pos] == seg
    painted = feats[pos].transpose(2, 0, 1)  # (C, H, W)
    if known.all():
        return np.ascontiguousarray(painted, np.float32)
    up = nearest(enc_rows["raw"], size)
    return np.ascontiguousarray(np.where(known[None], painted, up), np.float32)


# ---------------------------------------------------------------------------- the verb


def resume_key(o: PrecomputeOptions) -> dict[str, Any]:
    """The options a resumed run must share with the killed one (not logging or dry-run)."""
    d = options_dict(o)
    for k in ("verbose", "dry_run", "shard", "merge"):  # shards and their merge share one key
        d.pop(k)
    return d


def default_out(run: str) -> Path:
    return MANIFESTS_DIR / f"{Path(run).resolve().name}-features.h5"


def root_attrs(
    o: PrecomputeOptions, arch: Any, ckpt: Path, ds: Dataset, ckpt_sha: str
) -> dict[str, Any]:
    first = ds.sizes[0] if len(ds) else (0, 0)
    return {
        "feat_num": int(arch.feat_num),
        "label_nc": int(arch.label_nc),
        "label_feat": bool(arch.label_feat),
        "encoder_checkpoint": str(ckpt.resolve()),
        "encoder_sha256": ckpt_sha,
        "dataset": str(ds.path.resolve()),
        "dataset_sha256": ds.sha256(),
        "run": str(Path(o.run).resolve()),
        "run_name": Path(o.run).resolve().name,
        "encoder_size": list(encoder_size(arch, int(first[0]), int(first[1]))),
    }


def write_features(
    o: PrecomputeOptions, arch: Any, ckpt: Path, ds: Dataset, out: Path, argv: list[str] | None
) -> None:
    discard_damaged_tmp(out)
    ckpt_sha = manifest.sha256_file(ckpt)
    attrs = root_attrs(o, arch, ckpt, ds, ckpt_sha)
    inputs = [manifest.input_record(ckpt, ckpt_sha), manifest.input_record(ds.path, ds.sha256())]
    enc = load_encoder(arch, ckpt, ds.label_nc if arch.label_feat else ds.max_instances)
    with manifest.create(
        out, KIND, "precompute", resume_key(o), inputs, argv=argv, resume=True
    ) as f:
        w = FeatureWriter(f, ds.names, attrs)
        encode_rows(o, arch, enc, ds, w, list(range(len(ds))))
        w.finish()


def encode_rows(
    o: PrecomputeOptions, arch: Any, enc: Any, ds: Dataset, w: FeatureWriter, rows: list[int]
) -> None:
    """Encode the given rows of ds that ``w`` does not hold yet (a resumed run skips the rest)."""
    from p2phd.core import ranks

    todo = [i for i in rows if not w.done(i)]
    if len(todo) < len(rows):
        log(f"precompute: resuming, {len(rows) - len(todo)} of {len(rows)} samples already written")
    with ranks.progress_bar(runtime.place(), len(todo), "precompute") as bar:
        for i in todo:
            sample = ds.sample(i)
            enc_rows = encode_sample(enc, sample, arch)
            size = map_size(o, *sample.label.shape[:2])
            w.add(i, paint_map(enc_rows, segments(sample, arch), size), enc_rows)
            bar.update(1)


def shard_job(o: PrecomputeOptions, arch: Any, ckpt: Path, ds: Dataset, out: Path) -> Any:
    """What features/shards.py needs to write a shard or merge them (see shards.Job)."""
    from p2phd.features import shards

    sha = manifest.sha256_file(ckpt)
    return shards.Job(
        out,
        ds,
        ckpt,
        sha,
        resume_key(o),
        root_attrs(o, arch, ckpt, ds, sha),
        lambda: load_encoder(arch, ckpt, ds.label_nc if arch.label_feat else ds.max_instances),
        lambda enc, w, rows: encode_rows(o, arch, enc, ds, w, rows),
    )


def main(argv: list[str] | None = None) -> int:
    o = parse_options(PrecomputeOptions, argv, "precompute", (__doc__ or "").split("\n")[0])
    place = runtime.place()
    if place.scheduler:  # msrun's extra copy of the command: there is no cluster to serve
        return 0
    o.manifest = resolve_input(o.manifest)
    out = check_writable(Path(o.out).expanduser() if o.out else default_out(o.run), "--out")
    doc, arch, ckpt = check_run(o.run)
    with Dataset(o.manifest) as ds:
        check_dataset(ds, arch, o.run)
        if o.dry_run:
            log_dry_run(
                o,
                f"would write {out}: {len(ds)} feature maps ({arch.feat_num} channels) from the "
                f"encoder in {ckpt}",
            )
            return 0
        from p2phd.features import shards

        argv = argv if argv is None else ["precompute", *argv]
        if o.merge and place.distributed:
            raise UsageError(f"under msrun rank 0 merges by itself ({place}): drop --merge")
        shard = parse_shard(o.shard) if o.shard else None
        if place.distributed:
            shard = (place.rank, place.world)
        # One writer per manifest and shard: a second one would discard or extend the first's
        # <out>.tmp. Whoever merges (--merge, rank 0 under msrun) also holds the manifest's lock.
        merger = o.merge or (place.distributed and place.rank == 0)
        with lock.hold_part(out, "--out", shard, merger):
            if o.merge:
                shards.merge(shard_job(o, arch, ckpt, ds, out), argv)
            else:
                runtime.setup(o.device_target, o.pynative, 0, o.verbose, data_parallel=False)
                if shard is not None:
                    out = shards.run(shard_job(o, arch, ckpt, ds, out), o.shard, place, argv)
                    if out is None:
                        return 0  # a rank other than 0: its shard is written, rank 0 merges
                else:
                    write_features(o, arch, ckpt, ds, out, argv)
    emit(out)
    return 0


if __name__ == "__main__":
    from p2phd.core.cli import run_verb

    sys.exit(run_verb(main))

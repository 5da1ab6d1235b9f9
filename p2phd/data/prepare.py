"""bin/prepare: turn a folder of source PNGs into one dataset manifest (HDF5).

Reads a raw Cityscapes tree, pix2pixHD folders (<phase>_label/_inst/_img) or <phase>_A/_B pairs
(``--label_nc 0``), pairs the files by sample name, checks every file, then decodes, resizes
(scale_width to ``--load_size``; NEAREST for label and instance maps, BICUBIC for photos) and
compresses them in joblib workers while this process alone writes the manifest. Prints the
manifest's path on stdout.
"""

import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from joblib import Parallel, delayed

from p2phd.core import bars, lock, manifest
from p2phd.core.cli import (
    UsageError,
    check_writable,
    emit,
    log,
    log_dry_run,
    options_dict,
    parse_options,
)
from p2phd.core.options import flat_options, opt
from p2phd.core.paths import MANIFESTS_DIR
from p2phd.data.dataset import KIND, SPLITS, DatasetWriter
from p2phd.data.sources import (
    DEFAULT_MAX_PIXELS,
    Found,
    Problem,
    check_headers,
    find_samples,
    load_sample,
    tree_digest,
)


@flat_options
class PrepareOptions:
    dataroot: str = dataclasses.field(
        default="",
        metadata={
            "args": ["--dataroot", "--data_root", "--data-root"],
            "metavar": "DIR",
            "help": "input folder: a Cityscapes tree (leftImg8bit/, gtFine/), pix2pixHD folders "
            "(<phase>_label, <phase>_inst, <phase>_img) or <phase>_A/<phase>_B (required)",
        },
    )
    phase: str = opt(
        "train", "split to prepare (Cityscapes tree: test reads the val frames)", choices=SPLITS
    )
    label_nc: int = opt(
        35,
        "number of label classes, labels must be < label_nc; 0 = RGB input "
        "images in <phase>_A with photos in <phase>_B",
    )
    no_instance: bool = opt(False, "the dataset has no instance maps (<phase>_inst is not read)")
    load_size: int = opt(
        1024,
        "scale every image to this width in pixels keeping the aspect "
        "ratio (scale_width); 0 keeps the original size",
    )
    dataset: str = opt(
        "",
        "dataset name for the manifest and the default output name; '' = "
        "the name of the dataroot folder",
    )
    out: str = opt(
        "",
        "output manifest; '' = manifests/<dataset>-<phase>-<load_size>.h5 in the working directory",
        metavar="FILE",
    )
    max_samples: int = opt(
        0,
        "prepare only the first N samples (in name order); 0 = all. The default --out "
        "name then ends in -first<N>",
    )
    jobs: int = opt(0, "worker processes that decode, check, resize and compress; 0 = all cores")
    cityscapes_split: str = opt(
        "",
        "Cityscapes folder to read (train or val); '' = the phase, val for phase test",
        metavar="SPLIT",
    )
    compression: int = opt(4, "gzip level of the stored images (1 fastest .. 9 smallest)")
    max_image_pixels: int = opt(
        DEFAULT_MAX_PIXELS,
        "refuse images with more pixels than this (width x height; PIL's guard against "
        "decompression bombs); raise it for genuine huge images, 0 = no limit",
    )
    verbose: bool = opt(False, "print tracebacks on failure")
    dry_run: bool = opt(
        False, "find and pair the samples, print the options and what would be written, then exit"
    )

    def validate(self) -> None:
        if not self.dataroot:
            raise UsageError("--dataroot is required (the folder to read)")
        if not 0 <= self.label_nc <= 256:
            raise UsageError(
                f"--label_nc must be 0 (RGB input) or 1..256 (uint8 labels), got {self.label_nc}"
            )
        if self.load_size < 0:
            raise UsageError(
                f"--load_size must be 0 (original size) or a width in pixels, got {self.load_size}"
            )
        if self.jobs < 0:
            raise UsageError(
                f"--jobs must be 0 (all cores) or a number of processes, got {self.jobs}"
            )
        if not 1 <= self.compression <= 9:
            raise UsageError(f"--compression must be 1..9, got {self.compression}")
        if self.max_samples < 0:
            raise UsageError(f"--max_samples must be 0 (all) or more, got {self.max_samples}")
        if self.max_image_pixels < 0:
            raise UsageError(f"--max_image_pixels must be >= 0, got {self.max_image_pixels}")


def default_out(dataset: str, phase: str, load_size: int, max_samples: int = 0) -> Path:
    size = str(load_size) if load_size else "orig"
    first = f"-first{max_samples}" if max_samples else ""
    return MANIFESTS_DIR / f"{dataset}-{phase}-{size}{first}.h5"


def resolve_out(o: PrepareOptions, root: Path) -> tuple[str, Path]:
    dataset = o.dataset or root.resolve().name
    out = (
        Path(o.out).expanduser()
        if o.out
        else default_out(dataset, o.phase, o.load_size, o.max_samples)
    )
    if out.is_dir() or o.out.endswith(os.sep):
        raise UsageError(f"--out {o.out}: is a folder, expected a file name")
    return dataset, check_writable(out, "--out")


def _results(found: Found, o: PrepareOptions, jobs: int) -> Iterator:
    """Worker results in sample order (joblib's generator keeps order and bounds memory)."""
    work = (
        delayed(load_sample)(s, o.label_nc, o.load_size, o.compression, o.max_image_pixels)
        for s in found.samples
    )
    return Parallel(n_jobs=jobs, return_as="generator")(work)


def write_manifest(
    found: Found, o: PrepareOptions, root: Path, dataset: str, out: Path, argv: list[str] | None
) -> None:
    jobs = min(o.jobs or os.cpu_count() or 1, len(found.samples))
    results = _results(found, o, jobs)
    with manifest.create(out, KIND, "prepare", options_dict(o), argv=argv) as f:
        w = DatasetWriter(
            f,
            dataset=dataset,
            split=o.phase,
            label_nc=o.label_nc,
            has_instance=found.folders["inst"] is not None,
            has_photo=found.folders["photo"] is not None,
            load_size=o.load_size,
            level=o.compression,
        )
        hashes: dict[str, str] = {}
        try:
            for res in bars.iterate(results, len(found.samples), "prepare"):
                if isinstance(res, Problem):
                    raise UsageError(str(res))
                record, file_hashes = res
                w.add(record)
                hashes.update(file_hashes)
        finally:
            results.close()  # stops outstanding workers when we leave early
        w.finish()
        # The inputs' content hash is known only once every file was read (by the workers).
        f.attrs["inputs"] = json.dumps(
            [{"path": str(root.resolve()), "sha256": tree_digest(root, hashes)}]
        )


def main(argv: list[str] | None = None) -> int:
    o = parse_options(PrepareOptions, argv, "prepare", (__doc__ or "").split("\n")[0])
    root = Path(o.dataroot).expanduser()
    found = find_samples(root, o.phase, o.label_nc, o.no_instance, o.cityscapes_split)
    if o.max_samples:
        found = dataclasses.replace(found, samples=found.samples[: o.max_samples])
    dataset, out = resolve_out(o, root)
    parts = [p for p in ("label", "inst", "photo") if found.folders[p] is not None]
    log(
        f"prepare: {len(found.samples)} {o.phase} samples ({'+'.join(parts)}) from the "
        f"{found.layout} layout in {root}"
    )
    if found.layout == "cityscapes" and found.source_split != o.phase:
        log(
            f"prepare: phase {o.phase} reads Cityscapes {found.source_split} frames "
            "(Cityscapes test labels are withheld)"
        )
    if o.dry_run:
        log_dry_run(
            o,
            f"would write {out} ({len(found.samples)} samples, load size {o.load_size or 'original'})",
        )
        return 0
    with lock.hold(out, "--out"):
        check_headers(found.samples, o.label_nc, o.max_image_pixels)
        write_manifest(found, o, root, dataset, out, argv if argv is None else ["prepare", *argv])
    emit(out)
    return 0


if __name__ == "__main__":
    from p2phd.core.cli import run_verb

    sys.exit(run_verb(main))

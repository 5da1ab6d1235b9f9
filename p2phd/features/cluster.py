"""bin/cluster: k-means per semantic class over a feature manifest's objects -> cluster manifest.

As NVIDIA's encode_features.py: for each class, the rows (objects) whose relative area exceeds
``--min_area`` (default 1/64 of the image: NVIDIA keeps area column num/(h*w//32) > 0.5) are
clustered with scikit-learn's KMeans, k = min(rows, ``--n_clusters``), ``random_state=--seed`` and
an explicit ``--n_init``. Unlike NVIDIA (a pickled dict in features_clustered_010.npy) the result
is an HDF5 cluster manifest ``p2phd.clusters/1``:

- root attributes ``feat_num``, ``label_nc``, ``n_clusters``, ``min_area``, ``seed``, ``n_init``,
  ``features`` (JSON {"path", "sha256"} of the feature manifest), ``run`` / ``run_name`` (from it),
  ``classes_with_clusters`` and ``classes_without_clusters`` (int lists);
- per class c with qualifying rows: group ``classes/<c>`` with ``centers`` (k, feat_num) float32,
  ``counts`` (k,) int64 (rows assigned to each centre) and attributes ``rows`` (qualifying rows),
  ``inertia``, ``name`` (Cityscapes class name when label_nc is 35).

Classes 0..label_nc-1 (or, for RGB input, the classes seen) without qualifying rows have no group
and are listed in ``classes_without_clusters``; render gives their pixels zero features.
"""

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from p2phd.core import lock, manifest
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
from p2phd.core.options import flat_options, opt, positional
from p2phd.core.paths import MANIFESTS_DIR
from p2phd.features.feature_manifest import FeatureManifest
from p2phd.features.styles import KIND, class_name

DEFAULT_MIN_AREA = 1 / 64


@flat_options
class ClusterOptions:
    features: str = positional(
        "features",
        "feature manifest written by bin/precompute; '-' reads its path from stdin",
    )
    n_clusters: int = opt(10, "clusters per class (at most; k = min(rows, n_clusters))")
    min_area: float = opt(
        DEFAULT_MIN_AREA,
        "cluster only objects covering more than this fraction of the image (NVIDIA: 1/64)",
    )
    seed: int = opt(0, "k-means random_state")
    n_init: int = opt(10, "k-means restarts (scikit-learn n_init), best inertia kept")
    out: str = opt(
        "",
        "output cluster manifest; '' = manifests/<run name>-clusters.h5 in the working directory",
        metavar="FILE",
    )
    verbose: bool = opt(False, "print tracebacks on failure")
    dry_run: bool = opt(False, "print the resolved options and what would be written, then exit")

    def validate(self) -> None:
        if not self.features:
            raise UsageError("a FEATURES manifest (or '-') is required")
        if self.n_clusters < 1:
            raise UsageError(f"--n_clusters must be at least 1, got {self.n_clusters}")
        if not 0 <= self.min_area < 1:
            raise UsageError(f"--min_area must be a fraction in [0, 1), got {self.min_area}")
        if self.n_init < 1:
            raise UsageError(f"--n_init must be at least 1, got {self.n_init}")


def kmeans(
    x: np.ndarray, n_clusters: int, seed: int, n_init: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """(centers (k, F) float32, counts (k,) int64, inertia) with k = min(len(x), n_clusters)."""
    from sklearn.cluster import KMeans

    k = min(len(x), n_clusters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        km = KMeans(n_clusters=k, random_state=seed, n_init=n_init).fit(x)
    for w in caught:  # e.g. fewer distinct points than k: say so, on stderr
        log(f"cluster: {str(w.message).splitlines()[0]}")
    counts = np.bincount(km.labels_, minlength=k).astype(np.int64)
    return km.cluster_centers_.astype(np.float32), counts, float(km.inertia_)


def cluster_rows(
    rows: dict[str, np.ndarray], label_nc: int, o: ClusterOptions
) -> dict[int, dict[str, Any]]:
    """{class: {"centers", "counts", "rows", "inertia"}} for every class with qualifying rows."""
    out: dict[int, dict[str, Any]] = {}
    keep = rows["area"] > o.min_area
    for c in np.unique(rows["label"][keep]).tolist():
        x = rows["feature"][keep & (rows["label"] == c)]
        centers, counts, inertia = kmeans(x, o.n_clusters, o.seed, o.n_init)
        out[int(c)] = {"centers": centers, "counts": counts, "rows": len(x), "inertia": inertia}
    return out


def write_clusters(
    path: Path,
    fm: FeatureManifest,
    result: dict[int, dict[str, Any]],
    o: ClusterOptions,
    argv: list[str] | None,
) -> None:
    label_nc = fm.label_nc
    universe = range(label_nc) if label_nc > 0 else np.unique(fm.rows()["label"]).tolist()
    without = [int(c) for c in universe if c not in result]
    src = manifest.input_record(fm.path, fm.sha256())
    opts = options_dict(o)
    for k in ("verbose", "dry_run"):
        opts.pop(k)
    with manifest.create(path, KIND, "cluster", opts, [src], argv=argv) as f:
        f.attrs.update(
            {
                "feat_num": fm.feat_num,
                "label_nc": label_nc,
                "n_clusters": o.n_clusters,
                "min_area": o.min_area,
                "seed": o.seed,
                "n_init": o.n_init,
                "features": json.dumps(src),
                "run": str(fm.attrs.get("run", "")),
                "run_name": str(fm.attrs.get("run_name", "")),
                "label_feat": fm.label_feat,
                "classes_with_clusters": np.array(sorted(result), np.int64),
                "classes_without_clusters": np.array(without, np.int64),
            }
        )
        groups = f.create_group("classes")
        for c, r in sorted(result.items()):
            g = groups.create_group(str(c))
            g.create_dataset("centers", data=r["centers"])
            g.create_dataset("counts", data=r["counts"])
            g.attrs.update(
                {
                    "rows": r["rows"],
                    "inertia": r["inertia"],
                    "name": class_name(c) if label_nc == 35 else str(c),
                }
            )


def default_out(fm: FeatureManifest) -> Path:
    name = str(fm.attrs.get("run_name", "")) or fm.path.stem.removesuffix("-features")
    return MANIFESTS_DIR / f"{name}-clusters.h5"


def main(argv: list[str] | None = None) -> int:
    o = parse_options(ClusterOptions, argv, "cluster", (__doc__ or "").split("\n")[0])
    o.features = resolve_input(o.features)
    if o.out:  # before reading anything (the default name needs the manifest)
        check_writable(Path(o.out).expanduser(), "--out")
    with FeatureManifest(o.features) as fm:
        out = check_writable(Path(o.out).expanduser() if o.out else default_out(fm), "--out")
        rows = fm.rows()
        n_keep = int((rows["area"] > o.min_area).sum())
        log(
            f"cluster: {len(rows['area'])} objects in {len(fm)} samples, {n_keep} above min_area "
            f"{o.min_area:.6g}"
        )
        if o.dry_run:
            log_dry_run(o, f"would write {out}")
            return 0
        with lock.hold(out, "--out"):
            result = cluster_rows(rows, fm.label_nc, o)
            write_clusters(out, fm, result, o, argv if argv is None else ["cluster", *argv])
        log(
            f"cluster: {len(result)} classes with clusters: "
            + ", ".join(
                f"{class_name(c) if fm.label_nc == 35 else c}={len(r['centers'])}"
                for c, r in sorted(result.items())
            )
        )
    emit(out)
    return 0


if __name__ == "__main__":
    from p2phd.core.cli import run_verb

    sys.exit(run_verb(main))

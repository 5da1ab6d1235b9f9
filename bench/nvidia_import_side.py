"""NVIDIA's generator on label maps at their own size, for bench_import.py only (needs torch).

    TORCH_PYTHON bench/nvidia_import_side.py NVIDIA_CHECKOUT G.pth ARCH_JSON OUT.npz \
        LABEL.png:INST.png ...

Builds NVIDIA's G (models/networks.py of the checkout) with the architecture given as JSON
(p2phd's names: netG, ngf, n_downsample_global, n_blocks_global, n_local_enhancers,
n_blocks_local, norm, label_nc, no_instance), loads the .pth with torch.load, and runs it in eval
mode under no_grad on each label map, encoded as pix2pixHD_model.encode_input does (one-hot
labels, then the instance edge map). Writes OUT.npz: ``out<i>`` float32 (3, H, W), and prints
one JSON line: seconds per map and the process's peak RSS. This file imports torch; it lives in
bench/, which is not part of p2phd or its tests.
"""

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"  # make_fullres.py


def main(argv: list[str]) -> dict:
    checkout, pth, arch_json, out, *maps = argv
    sys.path.insert(0, checkout)
    sys.path.insert(0, str(FIXTURES))
    import torch
    from make_fullres import nvidia_edges  # pix2pixHD_model.get_edges on the CPU
    from models import networks
    from PIL import Image

    torch.set_num_threads(2)
    a = json.loads(arch_json)
    in_nc = a["label_nc"] + (0 if a["no_instance"] else 1)
    G = networks.define_G(
        in_nc, 3, a["ngf"], a["netG"], a["n_downsample_global"], a["n_blocks_global"],
        a["n_local_enhancers"], a["n_blocks_local"], a["norm"],
    )  # fmt: skip
    G.load_state_dict(torch.load(pth, map_location="cpu", weights_only=False))
    G.eval()
    results, seconds = {}, []
    for i, pair in enumerate(maps):
        label_png, inst_png = pair.split(":")
        label = torch.from_numpy(np.array(Image.open(label_png), np.int64))[None, None]
        x = torch.zeros(1, a["label_nc"], *label.shape[2:]).scatter_(1, label, 1.0)
        if not a["no_instance"]:
            inst = torch.from_numpy(np.array(Image.open(inst_png), np.int64))[None, None]
            x = torch.cat([x, nvidia_edges(inst)], 1)
        t0 = time.perf_counter()
        with torch.no_grad():
            results[f"out{i}"] = G(x)[0].numpy()
        seconds.append(round(time.perf_counter() - t0, 2))
    np.savez(out, **results)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return {"seconds_per_map": seconds, "peak_rss_gb": round(rss, 2)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))

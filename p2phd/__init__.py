"""p2phd: pix2pixHD (Wang et al., CVPR 2018) on MindSpore as a batch command suite.

Importing the package fixes two process-wide settings before MindSpore can be imported by any
module of ours, because MindSpore and its bundled oneDNN read them once:

- ``ONEDNN_MAX_CPU_ISA=AVX2``: on AVX-512 CPUs oneDNN otherwise picks a reference convolution
  about 100x slower than its AVX2 GEMM path (forward, backward and transposed convolutions alike).
  On Ascend/GPU hosts it only touches the few host-side oneDNN kernels, for which AVX2 is also the
  fast path, and ARM hosts ignore it. A value the user set is kept.
- ``GLOG_v=3``: MindSpore's deprecation warnings go away unless the user set GLOG_v or passed
  ``--verbose`` to a verb.
"""

import os
import sys

__version__ = "0.1.0"

# whether the user chose oneDNN's ISA (then OpenVINO keeps it too: deploy.onnx_run.openvino_isa)
USER_ONEDNN_ISA = "ONEDNN_MAX_CPU_ISA" in os.environ
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
if "--verbose" not in sys.argv:
    os.environ.setdefault("GLOG_v", "3")

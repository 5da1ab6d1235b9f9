"""Loaded by the bench's p2phd processes only (bench/render_rows.py puts this folder on their
PYTHONPATH): ``os.sysconf("SC_AVPHYS_PAGES")`` answers with MemAvailable instead of MemFree.

MindSpore 2.10's load_checkpoint refuses a .ckpt larger than SC_AVPHYS_PAGES (free pages, the
page cache not counted), so loading a 730 MB 1024p G.ckpt fails at random on a machine whose
memory is mostly page cache, with many GB available. Only that guard sees the difference: no
computation changes. Linux only; elsewhere nothing is patched.
"""

import os
import re

_sysconf = os.sysconf


def _sysconf_available(name):
    if name == "SC_AVPHYS_PAGES":
        try:
            with open("/proc/meminfo") as f:
                kb = int(re.search(r"^MemAvailable:\s+(\d+) kB", f.read(), re.M)[1])
            return kb * 1024 // _sysconf("SC_PAGE_SIZE")
        except (OSError, TypeError):
            pass
    return _sysconf(name)


if os.path.isfile("/proc/meminfo"):
    os.sysconf = _sysconf_available

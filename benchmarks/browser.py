"""Debian's chromium for the inspector's browser tests and its first-paint benchmark.

Shared by ``tests/ui`` and ``benchmarks/cases/ui.py`` so that both drive the same browser the
same way: the system package, never a browser build that Playwright downloads.
"""

from __future__ import annotations

import os
import shutil
import subprocess


def chromium_path() -> str | None:
    """``/usr/bin/chromium``, installed with apt-get first when missing and we are root.

    Returns None when it is missing and cannot be installed (not root, no apt-get, or the install
    failed); callers skip, saying why.
    """
    found = shutil.which("chromium")
    if found or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        subprocess.run(install, env=env, capture_output=True, timeout=900)
    return shutil.which("chromium")


LAUNCH_ARGS = ["--no-sandbox"]  # root in CI: chromium refuses its sandbox as root

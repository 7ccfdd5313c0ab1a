#!/usr/bin/env python3
"""Builds dist/qarep-<version>-py3-none-linux_<arch>.whl from python/qarep, the Embedded libqarep.so and the
OpenMP runtime it links (`make wheel` calls this; see python/README.md for why the runtime is bundled).

A wheel is a zip with a dist-info folder (PEP 427), so it is written here with the standard library alone:
no setuptools, no build isolation, nothing fetched. Timestamps are fixed, so the same inputs give the same
bytes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SUMMARY = "INT8 inference for QARepVGG / RepVGG image classifiers (numpy in, numpy out)"


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lib", required=True, type=Path, help="the Embedded libqarep.so")
    parser.add_argument("--openmp", required=True, type=Path, help="the OpenMP runtime libqarep.so needs")
    parser.add_argument("--openmp-name", required=True, help="its soname, which libqarep.so's DT_NEEDED names")
    parser.add_argument("--openmp-license", type=Path, help="its copyright file, shipped beside it")
    parser.add_argument("--arch", required=True, help="x86_64 or aarch64")
    parser.add_argument("--version", required=True)
    parser.add_argument("--strip", default="strip", help="strip program for --arch")
    parser.add_argument("--out", type=Path, default=Path("dist"))
    args = parser.parse_args()

    if not args.openmp.is_absolute() or not args.openmp.exists():
        print(f"build_wheel: OpenMP runtime not found: {args.openmp}", file=sys.stderr)
        return 1
    tag = f"py3-none-linux_{args.arch}"
    name = f"qarep-{args.version}"
    files: dict[str, bytes] = {}
    for source in sorted((HERE / "qarep").iterdir()):
        if source.is_file() and source.suffix in (".py", ".typed"):
            files[f"qarep/{source.name}"] = source.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        for library, soname in ((args.lib, "libqarep.so"), (args.openmp, args.openmp_name)):
            staged = Path(tmp) / soname
            shutil.copyfile(library.resolve(), staged)  # the file itself, not a symlink
            subprocess.run([args.strip, "--strip-unneeded", str(staged)], check=True)
            files[f"qarep/_libs/{soname}"] = staged.read_bytes()
    if args.openmp_license and args.openmp_license.exists():
        files[f"qarep/_libs/{args.openmp_name}.copyright"] = args.openmp_license.read_bytes()

    readme = (HERE / "README.md").read_text()
    metadata = "\n".join([
        "Metadata-Version: 2.1",
        "Name: qarep",
        f"Version: {args.version}",
        f"Summary: {SUMMARY}",
        "Requires-Python: >=3.9",
        "Requires-Dist: numpy",
        "Provides-Extra: images",
        "Requires-Dist: pillow; extra == \"images\"",
        "Description-Content-Type: text/markdown",
        "",
        readme,
    ])
    dist_info = f"{name}.dist-info"
    files[f"{dist_info}/METADATA"] = metadata.encode()
    files[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: qarep python/build_wheel.py\nRoot-Is-Purelib: false\nTag: {tag}\n"
    ).encode()
    files[f"{dist_info}/top_level.txt"] = b"qarep\n"
    record = "".join(f"{path},{record_hash(data)},{len(data)}\n" for path, data in files.items())
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()

    args.out.mkdir(parents=True, exist_ok=True)
    wheel = args.out / f"{name}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            info = zipfile.ZipInfo(path, FIXED_TIME)
            info.external_attr = (0o755 if path.endswith((".so", ".so.5", ".so.1")) else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    print(f"{wheel} ({wheel.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

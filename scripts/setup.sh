#!/usr/bin/env bash
# One-time set-up on Debian 12 (or a Swift toolchain image based on it): the system libraries QARep builds
# against, make and a C/C++ compiler for the C example, Python 3 with venv for the Python package, the
# aarch64 cross compiler, libc and libgomp for `make lib ARCH=aarch64` with qemu-user-static to run its
# result, then a release build of every product.
# Needs the Swift 6 toolchain on PATH already. Runs apt-get through sudo unless it already is root.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libc6-dev libomp-dev libjpeg62-turbo-dev libpng-dev libwebp-dev libopenblas-dev pkg-config make gcc g++)
# Python 3 with venv, for the wheel (make wheel) and its tests; the Python packages come from PyPI in .ci/run.
packages+=(python3 python3-venv)
# The aarch64 cross toolchain and qemu-user, for the ARM kernel tests (scripts/test-arm-kernels.sh), the
# aarch64 C library (make lib ARCH=aarch64) and the emulated x86 CPUs (scripts/test-x86-emulated.sh).
packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross libgomp1-arm64-cross qemu-user-static)
# Headless Chromium and a font for the test that renders `qarep analyze`'s HTML report and checks its screenshot.
packages+=(chromium fonts-dejavu-core)
sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi

"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}"
swift build -c release

# Convenience targets around SwiftPM. A fresh machine needs only the README's two commands
# (scripts/setup.sh, swift test); the rest is packaging and examples.
#
#   make build                      release build of everything (.build/release)
#   make test                       swift test
#   make bench ARGS="--arch B0"     release bench
#   make example                    the C example (C and C++ builds) and the Swift example
#   make lib [ARCH=aarch64]         the C library built with Embedded Swift (.build-embedded/ARCH/libqarep.so)
#   make install PREFIX=/opt/qarep  that libqarep.so, qarep.h, qarep.pc and the qarep CLI (default /usr/local);
#                                   with ARCH=aarch64 the cross-built library only (the CLI is host-only)
#   make wheel [ARCH=aarch64]       the Python package with that libqarep.so: dist/qarep-VERSION-py3-none-linux_ARCH.whl

PREFIX ?= /usr/local
DESTDIR ?=
SWIFT ?= swift
# The CLI is built by SwiftPM in a separate scratch path, with different flags than .build/release: it
# carries its own copy of the Swift runtime (-static-stdlib), and --gc-sections drops what nothing reaches.
CLI_SCRATCH ?= .build-cli
VERSION := $(shell sed -n 's/^\#define QAREP_VERSION_[A-Z]* \([0-9][0-9]*\).*/\1/p' include/qarep.h | paste -sd. -)
CLI_BUILD_FLAGS = -c release --scratch-path $(CLI_SCRATCH) -Xswiftc -static-stdlib -Xlinker --gc-sections

# ---- The C library: Sources/QARep compiled with Embedded Swift, linked with the C kernels ----------------
# Embedded Swift compiles the parts of the standard library it uses into the library itself, so there is no
# Swift runtime to ship or link: libqarep.so needs libc, libm and the OpenMP runtime only.
HOST_ARCH := $(shell uname -m)
ARCH ?= $(HOST_ARCH)
LIB_DIR := .build-embedded/$(ARCH)
SWIFT_BIN := $(dir $(realpath $(shell command -v swiftc)))
ifeq ($(ARCH),x86_64)
  SWIFT_TARGET := x86_64-unknown-linux-gnu
  # The toolchain's clang, which SwiftPM compiles the kernels with; libomp as Package.swift links it.
  KERNEL_CC := $(SWIFT_BIN)clang
  LIB_LINK := $(SWIFT_BIN)clang
  OPENMP_LIB := -l:libomp.so.5
  OPENMP_SONAME := libomp.so.5
  OPENMP_COPYRIGHT := /usr/share/doc/libomp5-14/copyright
  STRIP := strip
  SWIFT_SYSROOT_FLAGS :=
else ifeq ($(ARCH),aarch64)
  # The toolchain has Embedded stdlib modules for aarch64-none-none-elf, not aarch64 Linux; glibc's aarch64
  # headers (libc6-dev-arm64-cross) give the C side, and Debian's cross gcc builds the kernels with its
  # libgomp (gcc-aarch64-linux-gnu, libgomp1-arm64-cross), which also links the library.
  SWIFT_TARGET := aarch64-none-none-elf
  KERNEL_CC := aarch64-linux-gnu-gcc
  LIB_LINK := aarch64-linux-gnu-gcc
  OPENMP_LIB := -fopenmp
  OPENMP_SONAME := libgomp.so.1
  OPENMP_COPYRIGHT := /usr/share/doc/libgomp1-arm64-cross/copyright
  STRIP := aarch64-linux-gnu-strip
  SWIFT_SYSROOT_FLAGS := -Xcc -isystem -Xcc /usr/aarch64-linux-gnu/include
else
  $(error ARCH=$(ARCH): the C library builds for x86_64 and aarch64)
endif
EMBEDDED_STDLIB := $(SWIFT_BIN)../lib/swift/embedded/$(SWIFT_TARGET)

# The kernels get exactly the C flags SwiftPM gives them: Package.swift's kernelCFlags (read from there, so
# they cannot drift apart; -ffp-contract=off is what keeps every path bit-identical), plus what SwiftPM adds
# to every C target and the target's header search path.
KERNEL_FLAGS := $(shell sed -n 's/.*\.unsafeFlags(\[\(.*\)\]).*/\1/p' Package.swift | tr -d '",')
ifeq ($(findstring -ffp-contract=off,$(KERNEL_FLAGS)),)
  $(error could not read the kernels' C flags from Package.swift (got "$(KERNEL_FLAGS)"))
endif
# QK_NO_TEST_PATHS: the kernels' test-only paths (qk_paths.h), which no caller of this library can reach,
# stay out of it (56 KB of x86 code).
KERNEL_CFLAGS := $(KERNEL_FLAGS) -fPIC -fno-omit-frame-pointer -DSWIFT_PACKAGE=1 -DQK_NO_TEST_PATHS=1 \
	-ISources/CQARepKernels/include -ISources/CQARepKernels
# Every .c under the kernels' folder, so that a new path's files come in without naming them here.
KERNEL_SOURCES := $(shell find Sources/CQARepKernels -name '*.c' | LC_ALL=C sort)
KERNEL_OBJECTS := $(patsubst Sources/%.c,$(LIB_DIR)/%.o,$(KERNEL_SOURCES))
SWIFT_SOURCES := $(shell find Sources/QARep -name '*.swift' | LC_ALL=C sort)

# -O rather than -Osize: the smaller code loads a model about twice as slowly. packaging/embedded holds the
# module maps for the kernels' headers and for libc (Embedded Swift has no Glibc module).
EMBEDDED_SWIFT_FLAGS := -target $(SWIFT_TARGET) -enable-experimental-feature Embedded -wmo -parse-as-library \
	-module-name QARep -package-name qarep -O -Xfrontend -function-sections \
	-Xcc -fmodule-map-file=packaging/embedded/module.modulemap \
	-Xcc -fmodule-map-file=Sources/CQARepAPI/include/module.modulemap -Xcc -fPIC -Xcc -DQK_NO_TEST_PATHS=1 \
	$(SWIFT_SYSROOT_FLAGS)
# The version script exports only qarep_*; --no-undefined and -z text refuse a library that would fail to
# load or needs text relocations; --exclude-libs keeps the Unicode tables' symbols local.
LIB_LDFLAGS := -shared -Wl,-soname,libqarep.so -Wl,--version-script=$(CURDIR)/packaging/libqarep.map \
	-Wl,--gc-sections -Wl,--exclude-libs=ALL -Wl,--no-undefined -Wl,-z,text

.PHONY: all setup build test bench example lib wheel install install-lib install-cli uninstall clean

all: build

setup:
	./scripts/setup.sh

build:
	$(SWIFT) build -c release

test:
	$(SWIFT) test

bench:
	$(SWIFT) build -c release --product bench
	.build/release/bench $(ARGS)

example: build
	$(MAKE) -C examples/c classify classify_cpp
	@echo "run: examples/c/classify MODEL.qarep IMAGE.jpg...   or   .build/release/classify-swift MODEL.qarep IMAGE.ppm..."

lib: $(LIB_DIR)/libqarep.so

$(LIB_DIR)/%.o: Sources/%.c
	@mkdir -p $(@D)
	$(KERNEL_CC) $(KERNEL_CFLAGS) -MMD -MP -c $< -o $@

$(LIB_DIR)/QARep.o: $(SWIFT_SOURCES) packaging/embedded/module.modulemap packaging/embedded/qarep_libc.h \
		Sources/CQARepAPI/include/module.modulemap include/qarep.h $(wildcard Sources/CQARepKernels/include/*.h)
	@mkdir -p $(@D)
	swiftc $(EMBEDDED_SWIFT_FLAGS) -c $(SWIFT_SOURCES) -o $@

$(LIB_DIR)/stdlib-hooks.o: packaging/embedded/stdlib-hooks.c
	@mkdir -p $(@D)
	$(KERNEL_CC) -O2 -fPIC -c $< -o $@

# The Unicode tables serve String comparison and Character boundaries in the Embedded standard library.
$(LIB_DIR)/libqarep.so: $(LIB_DIR)/QARep.o $(LIB_DIR)/stdlib-hooks.o $(KERNEL_OBJECTS)
	$(LIB_LINK) $(LIB_LDFLAGS) -o $@ $^ $(EMBEDDED_STDLIB)/libswiftUnicodeDataTables.a -lm $(OPENMP_LIB)

-include $(KERNEL_OBJECTS:.o=.d)

# The wheel carries the OpenMP runtime the library was linked with (the linker's own answer for where it is),
# so that pip install needs no system package; python/README.md says why and how it is picked at run time.
PYTHON ?= python3
wheel: lib
	$(PYTHON) python/build_wheel.py --lib $(LIB_DIR)/libqarep.so --arch $(ARCH) --version $(VERSION) \
		--openmp "$$(realpath -e "$$($(LIB_LINK) -print-file-name=$(OPENMP_SONAME))")" --openmp-name $(OPENMP_SONAME) \
		--openmp-license $(OPENMP_COPYRIGHT) --strip $(STRIP) --out dist

# The CLI runs on the build machine only, so a cross install leaves it out.
install: install-lib $(if $(filter $(ARCH),$(HOST_ARCH)),install-cli)

install-lib: lib
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(LIB_DIR)/libqarep.so $(DESTDIR)$(PREFIX)/lib/libqarep.so
	$(STRIP) --strip-unneeded $(DESTDIR)$(PREFIX)/lib/libqarep.so
	install -m 644 include/qarep.h $(DESTDIR)$(PREFIX)/include/qarep.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' packaging/qarep.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/qarep.pc

install-cli:
	$(SWIFT) build $(CLI_BUILD_FLAGS) --product qarep-cli
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 -s $(CLI_SCRATCH)/release/qarep-cli $(DESTDIR)$(PREFIX)/bin/qarep

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/lib/libqarep.so $(DESTDIR)$(PREFIX)/include/qarep.h \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig/qarep.pc $(DESTDIR)$(PREFIX)/bin/qarep

clean:
	rm -rf .build .build-embedded $(CLI_SCRATCH) dist
	$(MAKE) -C examples/c clean

# Convenience targets around SwiftPM. A fresh machine needs only the README's two commands
# (scripts/setup.sh, swift test); the rest is packaging and examples.
#
#   make build                      release build of everything (.build/release)
#   make test                       swift test
#   make bench ARGS="--arch B0"     release bench
#   make example                    the C example (C and C++ builds) and the Swift example
#   make install PREFIX=/opt/qarep  libqarep.so, qarep.h, qarep.pc and the qarep CLI (default /usr/local)

PREFIX ?= /usr/local
DESTDIR ?=
SWIFT ?= swift
# Separate scratch path: the installed library is built with different flags than .build/release.
LIB_SCRATCH ?= .build-lib
VERSION := $(shell sed -n 's/^\#define QAREP_VERSION_[A-Z]* \([0-9][0-9]*\).*/\1/p' include/qarep.h | paste -sd. -)

# The installed library carries its own copy of the Swift runtime (-static-stdlib), so C programs need no
# Swift toolchain at run time. The version script exports only qarep_*; --exclude-libs keeps the static
# Swift runtime's symbols local, and --gc-sections drops the code nothing exported reaches.
INSTALL_BUILD_FLAGS = -c release --scratch-path $(LIB_SCRATCH) -Xswiftc -static-stdlib \
	-Xlinker --version-script=$(CURDIR)/packaging/libqarep.map -Xlinker --exclude-libs=ALL -Xlinker --gc-sections

.PHONY: all setup build test bench example install install-lib install-cli uninstall clean

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

install: install-lib install-cli

install-lib:
	$(SWIFT) build $(INSTALL_BUILD_FLAGS) --product qarep
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	install -m 755 $(LIB_SCRATCH)/release/libqarep.so $(DESTDIR)$(PREFIX)/lib/libqarep.so
	strip --strip-unneeded $(DESTDIR)$(PREFIX)/lib/libqarep.so
	install -m 644 include/qarep.h $(DESTDIR)$(PREFIX)/include/qarep.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' packaging/qarep.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/qarep.pc

install-cli:
	$(SWIFT) build $(INSTALL_BUILD_FLAGS) --product qarep-cli
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 -s $(LIB_SCRATCH)/release/qarep-cli $(DESTDIR)$(PREFIX)/bin/qarep

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/lib/libqarep.so $(DESTDIR)$(PREFIX)/include/qarep.h \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig/qarep.pc $(DESTDIR)$(PREFIX)/bin/qarep

clean:
	rm -rf .build $(LIB_SCRATCH)
	$(MAKE) -C examples/c clean

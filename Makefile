# spip — build, run and test the sensor. `make help` lists the targets.

GO       ?= go
VERSION  ?= $(shell dpkg-parsechangelog -SVersion 2>/dev/null || git describe --tags --always 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
GOFLAGS_BUILD ?= -trimpath -buildvcs=false
PORT     ?= 12345
DESTDIR  ?=
PREFIX   ?= /usr

.PHONY: all build run test lint fuzz bench bench-journald deb install man clean help

all: build

help:
	@echo "build  build bin/spip"
	@echo "run    run the sensor on 127.0.0.1:$(PORT), records on stdout (no root, no install)"
	@echo "test   vet and run every test (root tests need root; CI runs them all)"
	@echo "lint   gofmt and go vet"
	@echo "fuzz   run each fuzz target for FUZZTIME (default 60s)"
	@echo "bench  measure spip against the reference sensor; writes BENCHMARKS.md"
	@echo "bench-journald  the journald path in the booted container; writes its BENCHMARKS.md section"
	@echo "deb    build the Debian package into dist/"
	@echo "install install into DESTDIR (the paths of the Debian package)"

# Static (CGO_ENABLED=0), as debian/rules builds it: spip.service's NoExecPaths=/ leaves the
# dynamic loader unexecutable, so a dynamically linked spip fails with 203/EXEC.
build:
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -ldflags '$(LDFLAGS)' -o bin/spip ./cmd/spip

# The default configuration: without CAP_NET_ADMIN spip cannot make its socket transparent, says
# so once, and records the direct connections this target is for.
run: build
	./bin/spip serve --config /dev/null --listen 127.0.0.1:$(PORT) --json - --journald off

lint:
	@out=$$(gofmt -l cmd pkg); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test: lint check-units
	$(GO) test -count=1 -timeout 60m ./...

# The units' hardening gate: systemd-analyze's exposure on its 0-100 scale (5 means 0.5), one
# limit per unit, then `verify` on copies that point at bin/spip (it needs the binary to exist).
check-units: build
	@for u in spip.service:5 spip-redirect.service:20 spip-ship.service:12; do \
	  out=$$(systemd-analyze security --offline=yes --no-pager --threshold=$${u#*:} systemd/$${u%:*} 2>&1) \
	    || { echo "$$out"; echo "systemd/$${u%:*}: exposure above $${u#*:}/100"; exit 1; }; \
	  echo "$$out" | tail -n 1; \
	done
	@d=$$(mktemp -d) && for u in systemd/*.socket systemd/*.service; do \
	  sed "s#/usr/bin/spip#$(CURDIR)/bin/spip#g" $$u > $$d/$${u#systemd/}; done && \
	  out=$$(systemd-analyze verify --man=no $$d/*.socket $$d/*.service 2>&1); rc=$$?; rm -rf $$d; \
	  if [ $$rc -ne 0 ] || [ -n "$$out" ]; then echo "$$out"; exit 1; fi; echo "systemd-analyze verify: clean"

FUZZTIME ?= 60s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  list=$$($(GO) test -list '^Fuzz' $$pkg) || { echo "$$list"; exit 1; }; \
	  for f in $$(echo "$$list" | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# bench: spip against the reference sensor in network namespaces (root; nft, conntrack, taskset,
# ss, and gnuplot for the plot: apt-get install gnuplot-nox). About 15 minutes, then about 15 more
# for the protocol facts (TestFacts: spip against a -tags spipnofacts build on a payload mix of
# real clients' first bytes, its ladder and SPIP_BENCH_FACTS_PAIRS paired samples); rewrites the
# generated sections of BENCHMARKS.md and BENCHMARKS-ladder.png. Shorter trial:
# make bench SPIP_BENCH_REPS=1 SPIP_BENCH_STEP=3s; only one part: make bench SPIP_BENCH_RUN=TestFacts
# Two spip binaries on alternating bursts (CPU per 10k connections, round by round):
# make bench SPIP_BENCH_RUN=TestAB SPIP_AB=OLD,NEW [SPIP_AB_MODE=tproxy|redirect] [SPIP_AB_RATE=5000]
# [SPIP_AB_ROUNDS=7] (pkg/test/bench's TestAB says what each does).
SPIP_BENCH_RUN ?= TestBench|TestFacts
bench:
	SPIP_BENCH_OUT=$(CURDIR)/BENCHMARKS.md SPIP_BENCH_REPS=$(SPIP_BENCH_REPS) SPIP_BENCH_STEP=$(SPIP_BENCH_STEP) \
	  SPIP_BENCH_RATES=$(SPIP_BENCH_RATES) SPIP_BENCH_FACTS_PAIRS=$(SPIP_BENCH_FACTS_PAIRS) \
	  $(GO) test -tags measure -count=1 -timeout 70m -run '^($(SPIP_BENCH_RUN))$$' -v ./pkg/test/bench

# bench-journald: the journald path (and the JSON path beside it) in the booted test container,
# spip against the naive native-protocol writer and journal.Send, with journald's ingest limit;
# rewrites BENCHMARKS.md's bench-journald section and BENCHMARKS-journald.png. Root, as make
# bench, plus systemd-nspawn and debootstrap (the system test's container); about 25 minutes.
# Shorter trial: make bench-journald SPIP_JOURNALD_REPS=1 SPIP_JOURNALD_RATES=4000
# SPIP_JOURNALD_PERF=DIR adds perf profiles of each sensor and journald (reports in DIR).
bench-journald:
	SPIP_JOURNALD_OUT=$(CURDIR)/BENCHMARKS.md SPIP_JOURNALD_REPS=$(SPIP_JOURNALD_REPS) SPIP_JOURNALD_RATES=$(SPIP_JOURNALD_RATES) \
	  SPIP_JOURNALD_STEP=$(SPIP_JOURNALD_STEP) SPIP_JOURNALD_SYSTEMS=$(SPIP_JOURNALD_SYSTEMS) SPIP_JOURNALD_PERF=$(SPIP_JOURNALD_PERF) \
	  SPIP_JOURNALD_AB=$(SPIP_JOURNALD_AB) SPIP_JOURNALD_INGEST=$(SPIP_JOURNALD_INGEST) \
	  $(GO) test -tags measure -count=1 -timeout 120m -run '^TestJournaldBench$$' -v ./pkg/test/system

clean:
	rm -rf bin dist

# Man pages, written in Markdown in packaging/ and rendered with go-md2man.
MANPAGES := bin/man/spip.8 bin/man/spip.toml.5
man: $(MANPAGES)
bin/man/%: packaging/%.md
	@mkdir -p bin/man
	go-md2man -in $< -out $@

# install: DESTDIR-aware; paths for Debian 12 (units in /lib/systemd/system, debhelper compat 13).
UNITDIR ?= /lib/systemd/system
install: build man
	install -D -m 0755 bin/spip $(DESTDIR)$(PREFIX)/bin/spip
	install -D -m 0644 -t $(DESTDIR)$(UNITDIR) systemd/spip.socket systemd/spip-udp.socket systemd/spip.service systemd/spip-redirect.service systemd/spip-ship.service
	install -D -m 0644 packaging/spip.toml $(DESTDIR)/etc/spip/spip.toml
	install -D -m 0644 packaging/spip.catalog $(DESTDIR)/usr/lib/systemd/catalog/spip.catalog
	install -D -m 0644 packaging/spip.logrotate $(DESTDIR)/etc/logrotate.d/spip
	install -D -m 0644 bin/man/spip.8 $(DESTDIR)$(PREFIX)/share/man/man8/spip.8
	install -D -m 0644 bin/man/spip.toml.5 $(DESTDIR)$(PREFIX)/share/man/man5/spip.toml.5
	install -D -m 0644 -t $(DESTDIR)$(PREFIX)/share/doc/spip/clickhouse packaging/clickhouse/schema.sql packaging/clickhouse/cluster.sql

# deb: build dist/spip_<version>_<arch>.deb (and spip-dbgsym) from a copy of this tree, so the
# checkout stays clean. The modules are downloaded first into the module cache; the package
# build itself runs offline (GOPROXY=off in debian/rules). DEBVERSION=x builds the package as
# version x instead of debian/changelog's (an upgrade test needs a newer build).
DIST       ?= dist
DEBVERSION ?=
DEB_BUILD_OPTIONS ?= nocheck
deb:
	$(GO) mod download
	rm -rf $(DIST)/.build && mkdir -p $(DIST)/.build/spip
	tar -c --exclude=./.git --exclude=./bin --exclude=./dist --exclude=.build . | tar -x -C $(DIST)/.build/spip
	if [ -n "$(DEBVERSION)" ]; then sed -i '1s/([^)]*)/($(DEBVERSION))/' $(DIST)/.build/spip/debian/changelog; fi
	cd $(DIST)/.build/spip && \
	  GOMODCACHE="$$($(GO) env GOMODCACHE)" GOCACHE="$$($(GO) env GOCACHE)" \
	  DEB_BUILD_OPTIONS="$(DEB_BUILD_OPTIONS)" dpkg-buildpackage -b -us -uc
	mv $(DIST)/.build/*.deb $(DIST)/
	rm -rf $(DIST)/.build
	@ls -1 $(DIST)/*.deb

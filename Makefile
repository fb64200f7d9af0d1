# `make packages`: the .deb and the .rpm in target/packages, checked by lintian, by
# packaging/check-file-lists (both ship the same files) and packaging/check-rpm (scratch-root
# install and erase). Both ship one binary, /usr/bin/dewy, and the daemons' names as symlinks to
# it. PROFILE=dev packages the debug build that `cargo test` made (quick, for CI and the systemd
# end-to-end test); the default `dist` profile is fat LTO, one codegen unit, stripped (a slow
# link on 2 cores). Needs cargo-deb, cargo-generate-rpm, lintian, rpm (.ci/run installs them).
PROFILE ?= dist
CARGO ?= cargo
DIST ?= target/packages
GEN := target/gen
# Where cargo builds (CARGO_TARGET_DIR when set).
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
PROFILE_DIR := $(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
DEB_FLAGS := $(if $(filter dev,$(PROFILE)),--fast,)

.PHONY: packages docs-gen bin deb rpm check-packages clean-packages

packages: check-packages

# Man pages and shell completions from the clap definitions.
docs-gen:
	rm -rf $(GEN)
	$(CARGO) run --locked -q --example gen_docs -- $(GEN) >/dev/null
	gzip -9n $(GEN)/man/*

# Only `dewy`: the daemons' executables of their own are for the tests, not packaged.
bin:
	$(CARGO) build --locked --profile $(PROFILE) --bin dewy

deb: bin docs-gen
	rm -f $(DIST)/dewy_*.deb
	$(CARGO) deb --no-build --profile $(PROFILE) $(DEB_FLAGS) -o $(DIST)/

# cargo-generate-rpm does not strip (the dev profile does not either): it packages a stripped
# copy from target/stripped.
rpm: bin docs-gen
	rm -f $(DIST)/dewy-*.rpm
	mkdir -p target/stripped/$(PROFILE_DIR)
	strip -o target/stripped/$(PROFILE_DIR)/dewy $(TARGET_DIR)/$(PROFILE_DIR)/dewy
	$(CARGO) generate-rpm --profile $(PROFILE) --target-dir target/stripped -o $(DIST)/

check-packages: deb rpm
	lintian --fail-on error,warning $(DIST)/dewy_*.deb
	packaging/check-file-lists $(DIST)/dewy_*.deb $(DIST)/dewy-*.rpm
	packaging/check-rpm $(DIST)/dewy-*.rpm

clean-packages:
	rm -rf $(DIST) $(GEN)

# `make packages`: the .deb and the .rpm in target/packages, checked by lintian, by
# packaging/check-file-lists (both ship the same files) and packaging/check-rpm (scratch-root
# install and erase). PROFILE=dev packages the debug build that `cargo test` made
# (quick, for CI and the systemd end-to-end test); the default `dist` profile is the release
# profile without LTO. Needs cargo-deb, cargo-generate-rpm, lintian, rpm (.ci/run installs them).
PROFILE ?= dist
CARGO ?= cargo
DIST ?= target/packages
GEN := target/gen
PROFILE_DIR := $(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
DEB_FLAGS := $(if $(filter dev,$(PROFILE)),--fast,)

.PHONY: packages docs-gen bins deb rpm check-packages clean-packages

packages: check-packages

# Man pages and shell completions from the clap definitions.
docs-gen:
	rm -rf $(GEN)
	$(CARGO) run --locked -q --example gen_docs -- $(GEN) >/dev/null
	gzip -9n $(GEN)/man/*

bins:
	$(CARGO) build --locked --profile $(PROFILE) --bins

deb: bins docs-gen
	rm -f $(DIST)/dewy_*.deb
	$(CARGO) deb --no-build --profile $(PROFILE) $(DEB_FLAGS) -o $(DIST)/

# cargo-generate-rpm does not strip: it packages stripped copies from target/stripped.
rpm: bins docs-gen
	rm -f $(DIST)/dewy-*.rpm
	mkdir -p target/stripped/$(PROFILE_DIR)
	for b in dewy dewy-deployer dewy-watcher dewy-proxy; do \
	  strip -o target/stripped/$(PROFILE_DIR)/$$b target/$(PROFILE_DIR)/$$b || exit 1; done
	$(CARGO) generate-rpm --profile $(PROFILE) --target-dir target/stripped -o $(DIST)/

check-packages: deb rpm
	lintian --fail-on error,warning $(DIST)/dewy_*.deb
	packaging/check-file-lists $(DIST)/dewy_*.deb $(DIST)/dewy-*.rpm
	packaging/check-rpm $(DIST)/dewy-*.rpm

clean-packages:
	rm -rf $(DIST) $(GEN)

# forecourt-collector — entry points: `make demo`, `make test` and `make bench`.
# Both install what is missing on a fresh Debian machine (as root): python3 and
# venv, the package and its dependencies in .venv, and mosquitto, chromium and
# chromium-driver (the web page test) from apt.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
APT    := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
PACKAGES := collector protocols buffer uplink config records hil

.PHONY: demo test lint deps system-deps clean bench bench-quick bench-docs cluster-test cluster-deps \
	gateway gateway-torture gateway-measure gateway-deps

system-deps:
	@if ! command -v $(PYTHON) >/dev/null 2>&1 || ! $(PYTHON) -c 'import venv, ensurepip' 2>/dev/null; then \
		echo "installing python3 and python3-venv"; apt-get update -qq && $(APT) python3 python3-venv; fi
	@if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then \
		echo "installing mosquitto"; apt-get update -qq && $(APT) mosquitto; fi
	@# The failover test (D18) builds network namespaces and veth pairs.
	@if ! command -v ip >/dev/null 2>&1; then \
		echo "installing iproute2"; apt-get update -qq && $(APT) iproute2; fi
	@# The web page test drives Debian's chromium with its chromedriver.
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
		echo "installing chromium and chromium-driver"; apt-get update -qq && $(APT) chromium chromium-driver; fi

$(BIN)/python: | system-deps
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

# git stores files as 0644; the collector refuses a key file others can read (D9).
deps: system-deps $(STAMP)
	@chmod 600 config/demo-keys.toml

lint: deps
	$(BIN)/ruff check $(PACKAGES) tests tests_cluster bench
	$(BIN)/ruff format --check $(PACKAGES) tests tests_cluster bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q -n 3 --dist worksteal

# A node of a 3-node RabbitMQ 3.10 cluster (Debian's rabbitmq-server, its MQTT
# plugin) killed while a simulated dispenser sells, kept down a minute, brought
# back: tests_cluster/ (hil/cluster.py; docs/uplink-protocol.md). Three
# scenarios, about 4 minutes each; not part of `make test`. ONLY=clean-session
# (or persistent-quorum, persistent-classic) runs one.
cluster-deps: deps
	@if ! ls /usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server >/dev/null 2>&1; then \
		echo "installing rabbitmq-server"; apt-get update -qq && $(APT) rabbitmq-server; fi

cluster-test: cluster-deps
	$(BIN)/pytest -q -n 0 -s tests_cluster $(if $(ONLY),-k $(ONLY))

# DEMO_BROKER_PORT (default 1883) and DEMO_SECONDS (run until Ctrl-C when unset).
demo: deps
	$(BIN)/python -m hil.demo

# One table of every figure beside its goal (bench/run.py, docs/performance.md).
# Full: about 70 min (a 1 h RSS soak); QUICK=1 or bench-quick: about 8 min.
# ONLY=store,drain runs some steps; NOTE="..." adds a line (the machine's load).
# Results: test-artifacts/bench/latest.{json,md}; `make bench-docs` copies the
# latest table into docs/performance.md.
bench: deps
	$(BIN)/python bench/run.py $(if $(QUICK),--quick) $(if $(ONLY),--only $(ONLY)) $(if $(NOTE),--note "$(NOTE)")

bench-quick: deps
	$(BIN)/python bench/run.py --quick $(if $(NOTE),--note "$(NOTE)")

bench-docs:
	$(PYTHON) bench/run.py --update-docs

# The product on an emulated armhf gateway (hil/gateway/, README.md "The
# gateway image"); not part of `make test`. As root: the image is built with
# mmdebstrap and chroot, installed under qemu-user through binfmt_misc, and
# cached in /var/cache/forecourt-gateway (FORECOURT_GATEWAY_CACHE).
GATEWAY_APT := mmdebstrap arch-test qemu-user-static binfmt-support qemu-system-arm e2fsprogs
N ?= 20

gateway-deps: deps
	@if ! command -v mmdebstrap >/dev/null 2>&1 || ! command -v arch-test >/dev/null 2>&1 \
		|| ! command -v qemu-system-arm >/dev/null 2>&1 || ! command -v update-binfmts >/dev/null 2>&1 \
		|| [ ! -e /usr/libexec/qemu-binfmt/arm-binfmt-P ]; then \
		echo "installing $(GATEWAY_APT)"; apt-get update -qq && $(APT) $(GATEWAY_APT); fi
	@# binfmt_misc is not mounted by default here: armhf programs need it to run.
	@mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	@update-binfmts --enable >/dev/null 2>&1 || true
	@arch-test armhf >/dev/null || { echo "armhf programs do not run (binfmt_misc)"; exit 1; }

# Boot the 128 MB VM with PORTS (default 8) dispensers selling, wait for READY,
# check every sale reaches the platform receiver; ≈ 5 min once built.
# NICE=-10: qemu's niceness, on a host busy with other work.
GATEWAY_ENV = $(if $(NICE),FORECOURT_GATEWAY_NICE=$(NICE))

gateway: gateway-deps
	$(GATEWAY_ENV) $(BIN)/python -m hil.gateway up $(if $(PORTS),--ports $(PORTS))

# N power cuts (SIGKILL of qemu) while dispensers sell and the uplink drains.
# CYCLE_S: this host's boot-to-cut cycle (default 110 s), sizing the pumps' sales.
gateway-torture: gateway-deps
	$(GATEWAY_ENV) $(BIN)/python -m hil.gateway torture --cuts $(N) \
		$(if $(CYCLE_S),--cycle-s $(CYCLE_S))

# The figures of docs/performance.md "The gateway" (≈ 35 min). MAX_LOAD=2.5:
# each phase waits for the host's 1-minute load below it (TCG time is host time).
gateway-measure: gateway-deps
	$(GATEWAY_ENV) $(BIN)/python -m hil.gateway measure $(if $(QUICK),--quick) \
		$(if $(MAX_LOAD),--max-load $(MAX_LOAD)) $(if $(PHASES),--phases $(PHASES))

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache

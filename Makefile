# coupon: PGXS build and tests; `make mockpg` builds the mock gateway.

EXTENSION = coupon
EXTVERSION = 0.13
MODULE_big = coupon
OBJS = src/coupon.o src/shmem.o src/error.o src/reason.o src/spi_util.o \
	src/tenant.o src/idempotency.o src/currency.o src/discount.o \
	src/codefmt.o src/throttle.o src/merchant.o src/policy.o src/issue.o \
	src/code.o src/hold.o src/reserve.o src/fetch.o src/factcache.o src/rowwrite.o src/payment.o src/gateway.o src/gateway_reply.o \
	src/saga.o src/saga_worker.o src/payment_funcs.o src/payment_hold.o src/reconcile.o src/excerpt.o src/callctx.o src/cacheinval.o src/credentials.o src/ratelimit.o \
	src/outbox.o src/queue.o src/relay.o src/relay_cache.o src/relay_worker.o src/worker.o
# The SQL is in src/sql/.  coupon.sql is the current version written out;
# the build copies it to the install script of EXTVERSION.  Beside it are
# the released scripts, kept as released: coupon--0.1.sql and the upgrades
# coupon--X--Y.sql, which ALTER EXTENSION coupon UPDATE runs on an older
# installation.  A schema change goes into coupon.sql and into the upgrade
# script of the next version; test/load/upgrade.sh checks that a fresh
# install and 0.1 plus every upgrade give the same catalog.
DATA = src/sql/coupon--0.1.sql $(sort $(wildcard src/sql/coupon--*--*.sql))
DATA_built = src/sql/coupon--$(EXTVERSION).sql
SHLIB_LINK = -lcurl -lhiredis
PGFILEDESC = "coupon - coupon and payment platform"

PG_CPPFLAGS = -I$(srcdir)/src
# make WERROR=1 (the test command, hence CI) turns every warning into an
# error; PostgreSQL 15's own headers trip -Wunused-parameter, so it stays off
WARN_CFLAGS = -Wall -Wextra -Wno-unused-parameter $(if $(WERROR),-Werror)
PG_CFLAGS = $(WARN_CFLAGS)

# pg_regress: one file per feature in sql/, expected output in expected/
REGRESS = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --load-extension=coupon

# isolation specs live in test/isolation/{specs,expected}
ISOLATION = $(sort $(basename $(notdir $(wildcard test/isolation/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test/isolation --load-extension=coupon

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

src/sql/coupon--$(EXTVERSION).sql: src/sql/coupon.sql
	cp $< $@

# PGXS tracks no header dependencies: rebuild every object when a header changes
$(OBJS): $(wildcard src/*.h)

# pure C parts, unit-tested without a server
UNIT_SRCS = test/unit/test_unit.c src/discount.c src/codefmt.c src/currency.c src/reason.c \
	src/payment.c src/excerpt.c

test/unit/test_unit: $(UNIT_SRCS) src/discount.h src/codefmt.h src/currency.h src/reason.h \
	src/payment.h src/excerpt.h
	$(CC) -std=c99 -O1 -g $(WARN_CFLAGS) -Isrc -o $@ $(UNIT_SRCS)

.PHONY: unit
unit: test/unit/test_unit
	test/unit/test_unit

EXTRA_CLEAN = test/unit/test_unit output_iso

# the mock payment gateway is not part of the extension: `make` and `make
# install` need neither libmicrohttpd nor jansson; the scripts that run the
# mock build it with `make mockpg` (WERROR=1 on the command line reaches it)
.PHONY: mockpg clean-mockpg
mockpg:
	$(MAKE) -C mockpg

clean: clean-mockpg
clean-mockpg:
	$(MAKE) -C mockpg clean

# coupon: PGXS build and tests; `make mockpg` builds the mock gateway.

EXTENSION = coupon
EXTVERSION = 0.10
MODULE_big = coupon
OBJS = src/coupon.o src/shmem.o src/error.o src/reason.o src/spi_util.o \
	src/tenant.o src/idempotency.o src/currency.o src/discount.o \
	src/codefmt.o src/throttle.o src/merchant.o src/policy.o src/issue.o \
	src/code.o src/hold.o src/reserve.o src/fetch.o src/factcache.o src/rowwrite.o src/payment.o src/gateway.o src/gateway_reply.o \
	src/saga.o src/saga_worker.o src/payment_funcs.o src/payment_hold.o src/reconcile.o src/excerpt.o src/callctx.o src/cacheinval.o src/credentials.o src/ratelimit.o \
	src/outbox.o src/relay.o src/relay_cache.o src/relay_worker.o src/worker.o
# each released version's install script, and the upgrades between them;
# the newest version's script is the 0.1 script plus every upgrade since
DATA = coupon--0.1.sql coupon--0.1--0.2.sql coupon--0.2--0.3.sql coupon--0.3--0.4.sql coupon--0.4--0.5.sql \
	coupon--0.5--0.6.sql coupon--0.6--0.7.sql coupon--0.7--0.8.sql coupon--0.8--0.9.sql \
	coupon--0.9--0.10.sql
DATA_built = coupon--$(EXTVERSION).sql
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

coupon--$(EXTVERSION).sql: coupon--0.1.sql coupon--0.1--0.2.sql coupon--0.2--0.3.sql coupon--0.3--0.4.sql coupon--0.4--0.5.sql \
		coupon--0.5--0.6.sql coupon--0.6--0.7.sql coupon--0.7--0.8.sql coupon--0.8--0.9.sql \
		coupon--0.9--0.10.sql
	cat $^ > $@

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

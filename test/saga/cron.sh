#!/usr/bin/env bash
# pg_cron: schedule_jobs()/unschedule_jobs(), and a scheduled job that
# really runs.
#
# The cluster's cron.database_name is the saga database, so pg_cron can be
# created there (cluster_start's 'postgres' is overridden).  Before it is:
# both functions raise 55000 with a hint.  Then: schedule_jobs() makes
# exactly the three jobs and is idempotent, settlement_cron changes the
# settlement job's schedule, a schedule that is not five fields is PT400
# invalid_schedule (nothing changed), unschedule_jobs() removes the three and
# then returns 0.
#
# The run: a merchant paid T+0 has three sales that completed yesterday
# (completed_at moved back a day by hand), one sale of today and a payment
# cancelled while it was authorizing (charged and refunded, never
# completed, moved back a day too); a merchant paid T+1 has a sale of
# yesterday.  schedule_jobs('* * * * *') runs coupon-settlement every
# minute; pg_cron 1.4 starts jobs on the minute, so the wait (deadline 150 s)
# ends when cron.job_run_details shows a succeeded run of it and
# coupon.settlement holds the batch: exactly the three sales of yesterday.
# coupon-expire succeeds too, and every command the jobs run works as is.
#
# The cluster runs in a fixed-offset time zone where it is about noon, so
# "yesterday" and "today" stay apart whatever the hour.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

saga_start <<CONF
coupon.workers = 1
cron.database_name = '$SAGA_DB'
timezone = '$(noon_timezone)'
CONF

# the coupon jobs as "name schedule" lines
jobs() {
	q "SELECT string_agg(jobname || ' ' || schedule, ', ' ORDER BY jobname) FROM cron.job"
}

diag "--- without pg_cron in the database"
for f in "schedule_jobs()" "unschedule_jobs()"; do
	check_match "$f without pg_cron: 55000, saying so, with a hint to create it" \
		"$(q "SELECT try_full('SELECT * FROM coupon.$f')")" \
		'^55000 \| pg_cron is not installed in this database \| .*cron\.database_name.*CREATE EXTENSION pg_cron'
done
q "CREATE EXTENSION pg_cron"

diag "--- schedule_jobs() and unschedule_jobs()"
check "schedule_jobs() returns the three jobs" \
	"$(q "SELECT string_agg(jobname || ' ' || schedule, ', ' ORDER BY jobname) FROM coupon.schedule_jobs()")" \
	"coupon-expire * * * * *, coupon-purge 30 3 * * *, coupon-settlement 10 0 * * *"
JOBIDS=$(q "SELECT string_agg(jobid::text, ',' ORDER BY jobname) FROM cron.job")
check "schedule_jobs() again: idempotent, still exactly the three" \
	"$(q "SELECT count(*) FROM coupon.schedule_jobs()") $(jobs)" \
	"3 coupon-expire * * * * *, coupon-purge 30 3 * * *, coupon-settlement 10 0 * * *"
check "the jobs were updated in place (same jobids)" \
	"$(q "SELECT string_agg(jobid::text, ',' ORDER BY jobname) FROM cron.job")" "$JOBIDS"
check "each job runs its command in this database as the calling role" \
	"$(q "SELECT count(*) FROM cron.job WHERE database = current_database() AND username = current_user AND active")" 3
check "schedule_jobs('5 1 * * *') changes the settlement schedule only" \
	"$(q "SELECT count(*) FROM coupon.schedule_jobs('5 1 * * *')") $(jobs)" \
	"3 coupon-expire * * * * *, coupon-purge 30 3 * * *, coupon-settlement 5 1 * * *"
check "schedule_jobs('bad') is PT400 invalid_schedule" "$(try "SELECT coupon.schedule_jobs('bad')")" \
	"PT400 invalid_schedule"
check "schedule_jobs('* * * *') (four fields) is PT400 invalid_schedule" \
	"$(try "SELECT coupon.schedule_jobs('* * * *')")" "PT400 invalid_schedule"
check "schedule_jobs(NULL) is PT400 invalid_schedule" "$(try "SELECT coupon.schedule_jobs(NULL)")" \
	"PT400 invalid_schedule"
check "schedule_jobs('61 * * * *') (five fields, not a schedule) is PT400 invalid_schedule" \
	"$(try "SELECT coupon.schedule_jobs('61 * * * *')")" "PT400 invalid_schedule"
check "refused schedules changed nothing" "$(jobs)" \
	"coupon-expire * * * * *, coupon-purge 30 3 * * *, coupon-settlement 5 1 * * *"
check "unschedule_jobs() removes the three" "$(q "SELECT coupon.unschedule_jobs()") $(jobs)" "3 "
check "unschedule_jobs() again returns 0" "$(q "SELECT coupon.unschedule_jobs()")" 0

diag "--- payments to settle"
M=$(q "SELECT id FROM coupon.create_merchant('cron shop T+0', 'KRW', 1000, 300, 0)")
M1=$(q "SELECT id FROM coupon.create_merchant('cron shop T+1', 'KRW', 1000, 300, 1)")
P=$(q "SELECT id FROM coupon.create_policy($M, 'fixed 1000', 'fixed', 1000, per_user_limit => NULL)")
C1=$(q "SELECT id FROM coupon.issue($P, 'u1')")
C4=$(q "SELECT id FROM coupon.issue($P, 'u4')")
S1=$(q "SELECT id FROM coupon.pay($M, 'u1', 'c-1', 10000, ARRAY[$C1], 'ok_c1')")
S2=$(q "SELECT id FROM coupon.pay($M, 'u2', 'c-2', 20000, NULL, 'ok_c2')")
S3=$(q "SELECT id FROM coupon.pay($M, 'u3', 'c-3', 30000, NULL, 'ok_c3')")
TODAY=$(q "SELECT id FROM coupon.pay($M, 'u5', 'c-5', 50000, NULL, 'ok_c5')")
T1=$(q "SELECT id FROM coupon.pay($M1, 'u6', 'c-6', 60000, NULL, 'ok_c6')")
wait_terminal 60
check "five payments completed" \
	"$(q "SELECT count(*) FROM coupon.payment WHERE id IN ($S1, $S2, $S3, $TODAY, $T1) AND state = 'completed'")" 5
# a payment cancelled while its authorization is pending: with the gateway
# down its confirm waits; once back, it is charged, then refunded in full
saga_mockpg_kill
CX=$(q "SELECT id FROM coupon.pay($M, 'u4', 'c-4', 40000, ARRAY[$C4], 'ok_c4')")
wait_for "cancelled payment: its confirm went out and it waits (authorizing)" 60 \
	"SELECT state = 'authorizing' AND authorized_at IS NOT NULL FROM coupon.payment WHERE id = $CX"
q "SELECT state FROM coupon.cancel_payment($CX, 'changed my mind')" >/dev/null
saga_mockpg_restart
wait_state "$CX" refunded 60
check "cancelled payment: charged and refunded, never completed" \
	"$(q "SELECT approved_amount || '/' || refunded_amount || ' ' || (completed_at IS NULL) FROM coupon.payment WHERE id = $CX")" \
	"39000/39000 true"
# yesterday's business
check "three sales of the T+0 shop, the cancelled payment and the T+1 sale moved back a day" \
	"$(q "WITH u AS (UPDATE coupon.payment SET created_at = created_at - interval '1 day',
	                        authorized_at = authorized_at - interval '1 day',
	                        approved_at = approved_at - interval '1 day',
	                        completed_at = completed_at - interval '1 day',
	                        refunded_at = refunded_at - interval '1 day'
	                  WHERE id IN ($S1, $S2, $S3, $CX, $T1) RETURNING 1)
	      SELECT count(*) FROM u")" 5
check "the cancelled payment's refund moved back a day" \
	"$(q "WITH u AS (UPDATE coupon.payment_refund SET refunded_at = refunded_at - interval '1 day'
	                  WHERE payment_id = $CX RETURNING 1) SELECT count(*) FROM u")" 1
check "nothing settled yet" "$(q "SELECT count(*) FROM coupon.settlement")" 0

diag "--- coupon-settlement every minute, run by pg_cron"
check "schedule_jobs('* * * * *')" \
	"$(q "SELECT schedule FROM coupon.schedule_jobs('* * * * *') WHERE jobname = 'coupon-settlement'")" "* * * * *"
SETTLE_JOB=$(q "SELECT jobid FROM cron.job WHERE jobname = 'coupon-settlement'")
EXPIRE_JOB=$(q "SELECT jobid FROM cron.job WHERE jobname = 'coupon-expire'")
if ! wait_for "pg_cron ran coupon-settlement (succeeded in cron.job_run_details) and its batch is there" 150 \
	"SELECT EXISTS (SELECT 1 FROM cron.job_run_details WHERE jobid = $SETTLE_JOB AND status = 'succeeded')
	    AND EXISTS (SELECT 1 FROM coupon.settlement WHERE merchant_id = $M)"; then
	q "SELECT format('#   run of job %s: %s %s', jobid, status, return_message) FROM cron.job_run_details ORDER BY runid"
	false
fi
wait_for "pg_cron ran coupon-expire too (succeeded)" 150 \
	"SELECT EXISTS (SELECT 1 FROM cron.job_run_details WHERE jobid = $EXPIRE_JOB AND status = 'succeeded')"
check "no run of a coupon job failed" \
	"$(q "SELECT count(*) FROM cron.job_run_details WHERE jobid IN ($SETTLE_JOB, $EXPIRE_JOB) AND status = 'failed'")" 0
q "SELECT format('#   run %s of job %s: %s, %s, %s', runid, jobid, status, return_message, end_time - start_time)
     FROM cron.job_run_details ORDER BY runid"
check "the run was in this database as postgres, the job's command" \
	"$(q "SELECT count(*) > 0 FROM cron.job_run_details d JOIN cron.job j USING (jobid)
	       WHERE d.jobid = $SETTLE_JOB AND d.database = current_database() AND d.username = 'postgres'
	         AND d.command = j.command")" t
check "one batch for the T+0 shop: 3 sales, no refunds, 60000 gross, 1000 merchant discount" \
	"$(q "SELECT string_agg(concat_ws(' ', sales, refunds, gross, discount_merchant, discount_platform, status), '; ')
	        FROM coupon.settlement WHERE merchant_id = $M")" "3 0 60000 1000 0 payable"
check "its items are exactly yesterday's three sales" \
	"$(q "SELECT string_agg(payment_id || ':' || kind, ',' ORDER BY payment_id) FROM coupon.settlement_item")" \
	"$S1:sale,$S2:sale,$S3:sale"
check "the figures: charged 59000, commission 5900, PG fee 1770, payout 51330 (payout + commission + fee - d_p = charged)" \
	"$(q "SELECT concat_ws(' ', charged, commission, pg_fee, items_payout, payout, carry_out)
	        FROM coupon.settlement WHERE merchant_id = $M")" "59000 5900 1770 51330 51330 0"
check "the batch's period ends at today's midnight (run_settlement's default until, T+0)" \
	"$(q "SELECT period_end = date_trunc('day', now()) FROM coupon.settlement WHERE merchant_id = $M")" t
check "today's sale, the payment refunded before it completed and the T+1 shop's sale of yesterday wait" \
	"$(q "SELECT count(*) FROM coupon.settlement_item WHERE payment_id IN ($TODAY, $CX, $T1)")/$(q "SELECT count(*) FROM coupon.settlement WHERE merchant_id = $M1")" \
	"0/0"

diag "--- every job's command works as is"
BATCHES=$(q "SELECT count(*) FROM coupon.settlement")
q "SELECT jobname || ' ' || command FROM cron.job ORDER BY jobname" | sed 's/^/#   /'
check "each command run by hand succeeds" \
	"$(q "SELECT string_agg(jobname || ' ' || saga_try(command), ', ' ORDER BY jobname) FROM cron.job")" \
	"coupon-expire ok, coupon-purge ok, coupon-settlement ok"
check "the settlement run again adds nothing" "$(q "SELECT count(*) FROM coupon.settlement")" "$BATCHES"

check "unschedule_jobs() removes them" "$(q "SELECT coupon.unschedule_jobs()") $(jobs)" "3 "
saga_finish

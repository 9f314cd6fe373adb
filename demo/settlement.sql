-- demo/settlement.sql: settle everything paid so far, then print what each
-- shop is paid (run with psql -At).
\set ON_ERROR_STOP on
CREATE FUNCTION pg_temp.n(v numeric) RETURNS text LANGUAGE sql
AS $$ SELECT to_char(v, 'FM999,999,999,990') $$;
CREATE FUNCTION pg_temp.pct(bp integer) RETURNS text LANGUAGE sql
AS $$ SELECT trim_scale(bp / 100.0) || '%' $$;

-- the T+1 shops' run of tomorrow night, now: a cutoff may not lie in the
-- future (a batch is final), so the demo makes both shops T+0 and settles
-- everything paid before this moment
UPDATE coupon.merchant SET settlement_delay_days = 0;
CREATE TEMP TABLE batch AS SELECT * FROM coupon.run_settlement(until => now());

SELECT format('  %s batches, %s items (sales, refunds)', count(*),
			  (SELECT count(*) FROM coupon.settlement_item i JOIN batch b ON b.id = i.settlement_id))
  FROM batch;
SELECT concat_ws(E'\n',
		'',
		format('  %s, batch %s', m.name, b.id),
		format('  (commission %s of sales less the shop''s own discounts; PG fee %s of what customers paid)',
			   pg_temp.pct(m.commission_bp), pg_temp.pct(m.pg_fee_bp)),
		format('    %-40s %4s orders %12s', 'sales', b.sales, pg_temp.n(x.sales)),
		format('    %-40s %4s        %12s', 'refunds', b.refunds, pg_temp.n(x.refunds)),
		format('    %-52s %12s', 'discounts funded by the shop', pg_temp.n(-b.discount_merchant)),
		format('    %-52s %12s', 'discounts funded by the platform', pg_temp.n(-b.discount_platform)),
		format('    %-52s %12s', '= customers paid through the gateway', pg_temp.n(b.charged)),
		format('    %-52s %12s', '+ the platform''s share of the discounts', pg_temp.n(b.discount_platform)),
		format('    %-52s %12s', '- commission', pg_temp.n(-b.commission)),
		format('    %-52s %12s', '- PG fees', pg_temp.n(-b.pg_fee)),
		CASE WHEN b.carry_in <> 0 THEN
			format('    %-52s %12s', '+ balance carried in from the last batch', pg_temp.n(b.carry_in)) END,
		CASE WHEN b.carry_out <> 0 THEN
			format('    %-52s %12s', '+ negative balance carried forward', pg_temp.n(-b.carry_out)) END,
		format('    %-52s %12s', '= payout', pg_temp.n(b.payout)))
  FROM batch b
  JOIN coupon.merchant m ON m.id = b.merchant_id
 CROSS JOIN LATERAL (
	SELECT coalesce(sum(i.gross) FILTER (WHERE i.kind = 'sale'), 0) AS sales,
		   coalesce(sum(i.gross) FILTER (WHERE i.kind <> 'sale'), 0) AS refunds
	  FROM coupon.settlement_item i WHERE i.settlement_id = b.id) x
 ORDER BY b.merchant_id;

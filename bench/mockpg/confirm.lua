-- wrk script: POST /v1/payments/confirm with a unique orderId per request.
-- Each wrk thread gets its own id (set in setup) and counts its requests,
-- so orderIds and paymentKeys never collide across threads or requests.
-- Environment: MOCKPG_AUTH (the Authorization header value),
-- MOCKPG_RUN (a prefix unique to this run), MOCKPG_IDEMPOTENCY=1 to send
-- an Idempotency-Key like the saga does.

local threads = {}
local next_id = 0

function setup(thread)
	next_id = next_id + 1
	thread:set("tid", next_id)
	table.insert(threads, thread)
end

function init(args)
	counter = 0
	run = os.getenv("MOCKPG_RUN") or "run"
	auth = os.getenv("MOCKPG_AUTH") or ""
	idem = os.getenv("MOCKPG_IDEMPOTENCY") == "1"
end

function request()
	counter = counter + 1
	local id = string.format("%s-%d-%d", run, tid, counter)
	local body = string.format(
		'{"paymentKey":"pk-%s","orderId":"ord-%s","amount":%d}',
		id, id, 1000 + counter % 9000)
	local headers = {
		["Authorization"] = auth,
		["Content-Type"] = "application/json",
	}
	if idem then
		headers["Idempotency-Key"] = "idem-" .. id
	end
	return wrk.format("POST", "/v1/payments/confirm", headers, body)
end

-- Count answers other than 200, which would mean the benchmark is broken.
function response(status, headers, body)
	if status ~= 200 then
		bad = (bad or 0) + 1
	end
end

function done(summary, latency, requests)
	local bad = 0
	for _, t in ipairs(threads) do
		bad = bad + (t:get("bad") or 0)
	end
	io.write(string.format("non-200 answers: %d\n", bad))
end

-- baseline: fcfs issuance with one counter row (UPDATE ... issued < total, INSERT)
-- variables (-D): pid
\set uid random(1, 1000000)
SELECT bench.issue_counter(:pid, 'u' || :uid);

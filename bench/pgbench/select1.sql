-- baseline: the cheapest statement a client can send (one round trip)
SELECT 1;

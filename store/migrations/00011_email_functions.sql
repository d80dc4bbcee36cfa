-- The email claim's two hot statements as functions, one call each, for
-- the reason 00010_effect_functions.sql gives: PL/pgSQL keeps each
-- statement's plan for the life of the server connection, while a
-- statement the worker sends is parsed and planned on every call (pgx's
-- exec mode behind PgBouncer in transaction mode; prepared statements are
-- no option there nor behind RDS Proxy). Measured (store
-- BenchmarkEmailClaimAndRecord, through PgBouncer): a new email's claim and
-- record took 0.51-0.53 ms of backend CPU as statements, 0.37-0.38 ms as
-- functions.
--
-- Each is the statement the worker sent, unchanged, and still one
-- statement, so its own transaction: the claim's upsert either takes the
-- claim or changes nothing; the record writes the status and the ledger
-- row together. The rare paths (why a claim was not taken, a superseded
-- cancellation, abandon, outcome unknown) stay statements in
-- store/notification.go.
--
-- Arguments are positional, as in 00010. To change one, add a function
-- under a new name (orderpipe_claim_email_v2) in a new migration and switch
-- the code to it; drop the old one a release later: during a rolling
-- deploy the old tasks still call it.

-- +goose Up
-- orderpipe_claim_email: the claim's upsert. Inserts the email's row
-- 'sending' with its lease, or takes the existing row when the claim may
-- be taken — same payload (fingerprint), and a refused send ('failed') or
-- a lease run out ('sending', 'unknown') — counting the attempt and
-- keeping the state it replaced in claimed_from. Arguments: event_id,
-- order_id, kind, recipient, message_id, the lease in milliseconds, the
-- payload's fingerprint, the delivery's claim token. Returns one row, the
-- state the claim replaced (NULL: a new email), when it took the claim;
-- no row when it took nothing (the caller reads why). A second
-- cancellation email of an order fails, as the statement did, with
-- unique_violation (23505) on notifications_one_cancellation: PL/pgSQL
-- passes the error on with its constraint name, and the caller records
-- the cancellation as superseded. Not caught here: an exception block is
-- a subtransaction on every call, for a case that is rare.
-- +goose StatementBegin
CREATE FUNCTION orderpipe_claim_email(text, text, text, text, text, bigint, bytea, text)
RETURNS TABLE (r_from text) LANGUAGE plpgsql AS $fn$
BEGIN
	INSERT INTO notifications AS n (event_id, order_id, kind, recipient, message_id, status, lease_until, fingerprint, claim_token)
	VALUES ($1::uuid, $2, $3, $4, $5, 'sending', now() + $6 * interval '1 millisecond', $7, $8)
	ON CONFLICT (event_id) DO UPDATE
	SET status = 'sending', attempts = n.attempts + 1, lease_until = excluded.lease_until,
	    claim_token = excluded.claim_token, claimed_from = n.status
	WHERE n.fingerprint IS NOT DISTINCT FROM excluded.fingerprint
	  AND (n.status = 'failed' OR (n.status IN ('sending', 'unknown') AND n.lease_until < now()))
	RETURNING n.claimed_from INTO r_from;
	IF FOUND THEN
		RETURN NEXT;
	END IF;
END
$fn$;
-- +goose StatementEnd

-- orderpipe_record_email: the email is out. Marks it 'sent' (lease
-- cleared) and writes the notification handler's ledger row in the same
-- statement, only if the email's row exists. Arguments: the ledger's six
-- of 00010 — handler, event_id, event_type, order_id, fingerprint,
-- trace_id (NULL when not traced).
-- +goose StatementBegin
CREATE FUNCTION orderpipe_record_email(text, text, text, text, bytea, text)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
	WITH sent AS (
		UPDATE notifications SET status = 'sent', sent_at = now(), lease_until = NULL
		WHERE event_id = $2::uuid RETURNING event_id)
	INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint, trace_id)
	SELECT $1, event_id, $3, $4, $5, $6 FROM sent
	ON CONFLICT DO NOTHING;
END
$fn$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION orderpipe_record_email(text, text, text, text, bytea, text);
DROP FUNCTION orderpipe_claim_email(text, text, text, text, text, bigint, bytea, text);

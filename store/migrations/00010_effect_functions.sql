-- The handlers' effects as functions: one statement, one round trip each.
--
-- Each effect is a few statements in one transaction: the order's lock
-- (pg_advisory_xact_lock on (handler, order), so two events of one order are
-- decided one after the other, transaction-scoped and so safe behind a
-- transaction pooler); for stock, the product rows' locks; the effect, one
-- statement whose first CTE writes the (handler, event) ledger row with the
-- payload's fingerprint and whose every change is guarded on that row being
-- new; and, when the row was not new, the fingerprint it holds (a known
-- event_id with another payload is a conflict, never a silent skip). In
-- READ COMMITTED each statement of a function takes its own snapshot, so
-- the effect sees every change committed by whoever held the locks before,
-- and the fingerprint read sees a row the effect's insert waited for.
--
-- As functions, not statements sent by the worker, because PL/pgSQL keeps
-- each statement's plan for the life of the server connection: the effects
-- are long statements whose planning cost more than their execution
-- (measured: reserve 1.1-1.3 ms of backend CPU as pipelined statements,
-- 0.6-0.7 ms as a function), and prepared statements are not an option
-- behind PgBouncer in transaction mode or RDS Proxy (which pins a session
-- that prepares). A function is the same on every server connection, so
-- nothing about it is session state.
--
-- Arguments: every function takes the ledger's six first — handler,
-- event_id, event_type, order_id, fingerprint, trace_id (NULL when not
-- traced) — then its own. To change an effect, add a function under a new
-- name (orderpipe_reserve_v2) in a new migration and switch the code to it;
-- drop the old one a release later: during a rolling deploy the old tasks
-- still call it.

-- +goose Up
-- orderpipe_invoice: billing's order.placed. Issues the invoice unless billing
-- has invoiced the order or seen it cancelled; the coupon's redemption is
-- counted in the same statement within its limit (the UPDATE re-checks the
-- limit on the row as it is when it gets its lock), else the invoice is at
-- full price with the limit-reached note. The number comes from the
-- counter row, locked only when an invoice is issued and held to the
-- commit: numbers stay gapless. Arguments after the ledger's six:
-- customer, currency, subtotal, candidate discount, coupon code, coupon
-- note, limit note, then the lines (number, SKU, name, unit price,
-- quantity, total). Returns whether the ledger row was new, the known
-- fingerprint when it was not, the invoice number (0: none) and the
-- discount it took.
-- +goose StatementBegin
CREATE FUNCTION orderpipe_invoice(text, text, text, text, bytea, text, text, text, bigint, bigint, text, text, text, int[], text[], text[], bigint[], int[], bigint[])
RETURNS TABLE (r_first boolean, r_known bytea, r_number bigint, r_discount bigint) LANGUAGE plpgsql AS $fn$
BEGIN
	PERFORM pg_advisory_xact_lock(hashtextextended($1 || ':' || $4, 0));
	WITH ledger AS (
		INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint, trace_id)
		VALUES ($1, $2::uuid, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1),
		open AS (
			SELECT 1 FROM ledger
			WHERE NOT EXISTS (SELECT 1 FROM invoices WHERE order_id = $4)
			  AND NOT EXISTS (SELECT 1 FROM billing_cancellations WHERE order_id = $4)),
		redeemed AS (
			UPDATE coupons SET redemptions = redemptions + 1
			WHERE code = $11 AND $10::bigint > 0 AND EXISTS (SELECT 1 FROM open)
			  AND (max_redemptions IS NULL OR redemptions < max_redemptions)
			RETURNING code),
		redemption AS (
			INSERT INTO coupon_redemptions (code, order_id) SELECT code, $4 FROM redeemed),
		terms AS (
			SELECT CASE WHEN r.code IS NULL THEN 0 ELSE $10::bigint END AS discount, r.code,
			       CASE WHEN r.code IS NULL AND $10::bigint > 0 THEN $13 ELSE NULLIF($12, '') END AS note
			FROM open LEFT JOIN redeemed r ON true),
		n AS (UPDATE invoice_counter SET last = last + 1 WHERE EXISTS (SELECT 1 FROM open) RETURNING last),
		inv AS (
			INSERT INTO invoices (invoice_number, order_id, event_id, customer_id, currency,
			                      subtotal_cents, discount_cents, total_cents, coupon_code, coupon_note, status)
			SELECT n.last, $4, $2::uuid, $7, $8, $9, t.discount, $9::bigint - t.discount, t.code, t.note, 'issued'
			FROM n, terms t
			RETURNING invoice_number, discount_cents),
		lines AS (
			INSERT INTO invoice_lines (invoice_number, line_no, sku, name, unit_price_cents, quantity, line_total_cents)
			SELECT inv.invoice_number, l.* FROM inv,
			       unnest($14::int[], $15::text[], $16::text[], $17::bigint[], $18::int[], $19::bigint[]) AS l)
		SELECT EXISTS (SELECT 1 FROM ledger), coalesce((SELECT invoice_number FROM inv), 0), coalesce((SELECT discount_cents FROM inv), 0)
	INTO r_first, r_number, r_discount;
	IF NOT r_first THEN
		SELECT fingerprint INTO r_known FROM processed_events WHERE handler = $1 AND event_id = $2::uuid;
	END IF;
	RETURN NEXT;
END
$fn$;
-- +goose StatementEnd

-- orderpipe_cancel_invoice: billing's order.cancelled. Records the
-- cancellation and voids the order's issued invoice, giving its coupon
-- redemption back; a cancellation seen before the order means it is never
-- invoiced (orderpipe_invoice's guard). Argument after the ledger's six:
-- the reason. Returns whether the ledger row was new, the known
-- fingerprint when it was not, and whether an invoice was voided.
-- +goose StatementBegin
CREATE FUNCTION orderpipe_cancel_invoice(text, text, text, text, bytea, text, text)
RETURNS TABLE (r_first boolean, r_known bytea, r_voided boolean) LANGUAGE plpgsql AS $fn$
BEGIN
	PERFORM pg_advisory_xact_lock(hashtextextended($1 || ':' || $4, 0));
	WITH ledger AS (
		INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint, trace_id)
		VALUES ($1, $2::uuid, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1),
		recorded AS (
			INSERT INTO billing_cancellations (order_id, event_id, reason)
			SELECT $4, $2::uuid, $7 FROM ledger ON CONFLICT DO NOTHING),
		voided AS (
			UPDATE invoices SET status = 'void', voided_at = now(), void_reason = $7
			WHERE order_id = $4 AND status = 'issued' AND EXISTS (SELECT 1 FROM ledger)
			RETURNING 1),
		given_back AS (
			DELETE FROM coupon_redemptions WHERE order_id = $4 AND EXISTS (SELECT 1 FROM voided) RETURNING code),
		released AS (
			UPDATE coupons SET redemptions = redemptions - 1 WHERE code IN (SELECT code FROM given_back))
		SELECT EXISTS (SELECT 1 FROM ledger), EXISTS (SELECT 1 FROM voided)
	INTO r_first, r_voided;
	IF NOT r_first THEN
		SELECT fingerprint INTO r_known FROM processed_events WHERE handler = $1 AND event_id = $2::uuid;
	END IF;
	RETURN NEXT;
END
$fn$;
-- +goose StatementEnd

-- orderpipe_reserve: inventory's order.placed, for an order with no
-- reservation yet. Its product rows are locked first, in SKU order, by a
-- statement of their own (every stock change does: concurrent orders cannot
-- deadlock). Not in a CTE of the effect: an effect that locked rows with
-- SELECT ... FOR UPDATE and then updated them could, after waiting for
-- another order's commit, decide on the version it locked and update the
-- one its snapshot held, re-read under EvalPlanQual as the newest — stock
-- decided on 1 and taken from 0 (store TestReservesRacingReleasesNeverFail).
-- Locked by an earlier statement, the rows cannot change after the
-- effect's snapshot is taken: it reads and writes one version. It then takes every line (stock movements,
-- reservation 'reserved') or, if one line is short, takes nothing, records
-- the reservation 'rejected' with the shortfall and writes the
-- compensation (the order's cancellation) to the outbox; CHECK (stock >= 0)
-- backs it. Arguments after the ledger's six: the lines' SKUs (in SKU
-- order) and quantities, the rejection reason's prefix, the compensation's
-- event id, type and body, the outbox topic, and the trace context
-- (traceparent, tracestate; NULL when not traced) the compensation's
-- publish continues. Returns whether the ledger row was new, the known
-- fingerprint when it was not, and the reservation's status ('' if
-- nothing changed).
-- +goose StatementBegin
CREATE FUNCTION orderpipe_reserve(text, text, text, text, bytea, text, text[], int[], text, text, text, text, text, text, text)
RETURNS TABLE (r_first boolean, r_known bytea, r_status text) LANGUAGE plpgsql AS $fn$
BEGIN
	PERFORM pg_advisory_xact_lock(hashtextextended($1 || ':' || $4, 0));
	PERFORM 1 FROM products WHERE sku = ANY($7) ORDER BY sku FOR UPDATE;
	WITH ledger AS (
		INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint, trace_id)
		VALUES ($1, $2::uuid, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1),
		open AS (SELECT 1 FROM ledger WHERE NOT EXISTS (SELECT 1 FROM reservations WHERE order_id = $4)),
		want AS (SELECT sku, qty FROM unnest($7::text[], $8::int[]) AS w(sku, qty)),
		stock AS (SELECT p.sku, p.stock FROM products p WHERE p.sku = ANY($7::text[])),
		short AS (
			SELECT w.sku, w.qty, coalesce(l.stock, 0) AS stock FROM want w LEFT JOIN stock l USING (sku)
			WHERE coalesce(l.stock, 0) < w.qty),
		decided AS (
			SELECT NOT EXISTS (SELECT 1 FROM short) AS ok FROM open),
		taken AS (
			UPDATE products p SET stock = p.stock - w.qty, updated_at = now()
			FROM want w, decided d WHERE p.sku = w.sku AND d.ok
			RETURNING p.sku, w.qty),
		moved AS (
			INSERT INTO stock_movements (order_id, event_id, sku, delta, kind)
			SELECT $4, $2::uuid, sku, -qty, 'reserve' FROM taken),
		reserved AS (
			INSERT INTO reservations (order_id, event_id, status, reason)
			SELECT $4, $2::uuid, CASE WHEN d.ok THEN 'reserved' ELSE 'rejected' END,
			       CASE WHEN d.ok THEN NULL ELSE $9 || (
			           SELECT string_agg(format('%s (want %s, have %s)', sku, qty, stock), ', ' ORDER BY sku) FROM short) END
			FROM decided d
			RETURNING status),
		compensated AS (
			INSERT INTO outbox (event_id, event_type, body, topic, order_id, traceparent, tracestate)
			SELECT $10::uuid, $11, $12, $13, $4, $14, $15 FROM decided WHERE NOT ok
			ON CONFLICT (event_id) DO NOTHING)
		SELECT EXISTS (SELECT 1 FROM ledger), coalesce((SELECT status FROM reserved), '')
	INTO r_first, r_status;
	IF NOT r_first THEN
		SELECT fingerprint INTO r_known FROM processed_events WHERE handler = $1 AND event_id = $2::uuid;
	END IF;
	RETURN NEXT;
END
$fn$;
-- +goose StatementEnd

-- orderpipe_release: inventory's order.cancelled. A reserved order gets back
-- exactly what its reserve movements took (its product rows locked first,
-- in SKU order) and becomes 'released'; an order with no reservation yet
-- is recorded 'cancelled', so its placement takes nothing; a rejected,
-- released or cancelled order holds no stock. Argument after the ledger's
-- six: the reason. Returns whether the ledger row was new and the known
-- fingerprint when it was not.
-- +goose StatementBegin
CREATE FUNCTION orderpipe_release(text, text, text, text, bytea, text, text)
RETURNS TABLE (r_first boolean, r_known bytea) LANGUAGE plpgsql AS $fn$
BEGIN
	PERFORM pg_advisory_xact_lock(hashtextextended($1 || ':' || $4, 0));
	PERFORM 1 FROM products WHERE sku IN (SELECT sku FROM stock_movements WHERE order_id = $4) ORDER BY sku FOR UPDATE;
	WITH ledger AS (
		INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint, trace_id)
		VALUES ($1, $2::uuid, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING 1),
		prior AS (
			SELECT status FROM reservations WHERE order_id = $4 AND EXISTS (SELECT 1 FROM ledger)),
		held AS (
			SELECT sku, -sum(delta)::int AS qty FROM stock_movements
			WHERE order_id = $4 AND EXISTS (SELECT 1 FROM prior WHERE status = 'reserved')
			GROUP BY sku HAVING sum(delta) < 0),
		back AS (
			UPDATE products p SET stock = p.stock + h.qty, updated_at = now()
			FROM held h WHERE p.sku = h.sku),
		moved AS (
			INSERT INTO stock_movements (order_id, event_id, sku, delta, kind)
			SELECT $4, $2::uuid, sku, qty, 'release' FROM held),
		released AS (
			UPDATE reservations SET status = 'released', reason = NULLIF($7, ''), updated_at = now()
			WHERE order_id = $4 AND EXISTS (SELECT 1 FROM prior WHERE status = 'reserved')),
		first_cancelled AS (
			INSERT INTO reservations (order_id, event_id, status, reason)
			SELECT $4, $2::uuid, 'cancelled', NULLIF($7, '') FROM ledger WHERE NOT EXISTS (SELECT 1 FROM prior))
		SELECT EXISTS (SELECT 1 FROM ledger)
	INTO r_first;
	IF NOT r_first THEN
		SELECT fingerprint INTO r_known FROM processed_events WHERE handler = $1 AND event_id = $2::uuid;
	END IF;
	RETURN NEXT;
END
$fn$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION orderpipe_invoice(text, text, text, text, bytea, text, text, text, bigint, bigint, text, text, text, int[], text[], text[], bigint[], int[], bigint[]);
DROP FUNCTION orderpipe_cancel_invoice(text, text, text, text, bytea, text, text);
DROP FUNCTION orderpipe_reserve(text, text, text, text, bytea, text, text[], int[], text, text, text, text, text, text, text);
DROP FUNCTION orderpipe_release(text, text, text, text, bytea, text, text);

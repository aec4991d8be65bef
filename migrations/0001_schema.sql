-- Version 1 of the exchange's schema, applied by `exchange-server migrate` (see
-- src/migrations.rs); later versions are the files after this one. Every statement
-- is idempotent, so that a database made before versioned migrations, by a server
-- that applied its schema at start, comes through it too (0002 converts what such a
-- database has that this version does not).
--
-- The rules on amounts are enforced here a second time, by domains' checks: balances,
-- positions and every part of an order never go below zero, amounts and limits are
-- positive. Rules that span columns or tables are not constraints on the two tables
-- written for every order, orders and trades: foreign keys and a table CHECK there
-- made every order measurably dearer (a foreign key locks the row it checks and logs
-- the lock; PostgreSQL 15 re-plans a table CHECK for every statement; the figures are
-- in docs/benchmarks.md). Instead:
--   - references hold by construction: place_order writes an order for the account it
--     has just locked and changed, and trades between the order it has just inserted
--     and orders it read under the symbol's lock; and nothing may delete or renumber
--     an account or an order (the keep_ledger triggers below);
--   - the audit (src/audit.rs, run after every test and benchmark) checks every
--     reference, every order's open + filled + canceled = amount (filled being the
--     sum of its trades), and that canceled_at is set exactly when shares were.
--
-- Lock order, the one place it is written down. Every function that changes the
-- book or holdings takes its locks in this order:
--   1. the symbol's advisory lock, pg_advisory_xact_lock(symbol_lock_key(sym)):
--      one per transaction; it serialises that symbol's book across all processes;
--   2. rows of accounts, in ascending id;
--   3. rows of positions, in ascending (account_id, symbol).
-- place_order plans its trades before taking any row lock (under the advisory lock
-- the book cannot change), so it knows every row it will touch and locks them all
-- at once in this order. With one global order no cycle of waits can form among
-- these functions: they never deadlock one another. The retry in src/store.rs
-- remains for anything else that takes locks (an operator's manual UPDATE, say).
-- Orders need no row locks: every change to an order's open amount runs under its
-- symbol's advisory lock.

-- Formats of ids as domains: checked when a value is stored, not re-checked (as a
-- table CHECK would be) every time a balance or position on the same row changes.
DO $$
BEGIN
    CREATE DOMAIN account_id AS text CHECK (VALUE ~ '^[0-9]{1,32}$');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$
BEGIN
    CREATE DOMAIN symbol AS text CHECK (VALUE ~ '^[A-Za-z0-9]{1,32}$');
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
-- Amounts of cash and shares, for the same reason: PostgreSQL 15 re-reads a table's
-- CHECK constraints from the catalogue for every INSERT and UPDATE statement and
-- evaluates them all on every changed row, while a domain's check is kept compiled in
-- the type cache and runs only on the columns a statement assigns. Table CHECKs were
-- a visible share of all CPU under load (docs/benchmarks.md).
DO $$
BEGIN
    CREATE DOMAIN nonnegative AS numeric CHECK (VALUE >= 0);
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
DO $$
BEGIN
    CREATE DOMAIN positive AS numeric CHECK (VALUE > 0);
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

CREATE TABLE IF NOT EXISTS accounts (
    id        account_id PRIMARY KEY,
    balance   nonnegative NOT NULL,
    -- The cash deposited when the account was created, kept for the conservation audit.
    deposited nonnegative NOT NULL
);

CREATE TABLE IF NOT EXISTS positions (
    account_id account_id NOT NULL REFERENCES accounts (id),
    symbol     symbol     NOT NULL,
    shares     nonnegative NOT NULL,
    PRIMARY KEY (account_id, symbol)
);

-- Every share ever created, for the conservation audit.
CREATE TABLE IF NOT EXISTS share_issues (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id account_id  NOT NULL REFERENCES accounts (id),
    symbol     symbol      NOT NULL,
    shares     positive    NOT NULL,
    issued_at  timestamptz NOT NULL DEFAULT now()
);

-- The protocol's "transaction id" is orders.id.
CREATE TABLE IF NOT EXISTS orders (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      account_id  NOT NULL,
    symbol          symbol      NOT NULL,
    is_buy          boolean     NOT NULL,
    amount          positive    NOT NULL,
    limit_price     positive    NOT NULL,
    open_shares     nonnegative NOT NULL,
    filled_shares   nonnegative NOT NULL DEFAULT 0,
    canceled_shares nonnegative NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    canceled_at     timestamptz
);

-- The book: open orders in price-time priority, one index a side.
CREATE INDEX IF NOT EXISTS orders_open_sells ON orders (symbol, limit_price, id)
    WHERE NOT is_buy AND open_shares > 0;
CREATE INDEX IF NOT EXISTS orders_open_buys ON orders (symbol, limit_price DESC, id)
    WHERE is_buy AND open_shares > 0;

CREATE TABLE IF NOT EXISTS trades (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    buy_order_id  bigint      NOT NULL,
    sell_order_id bigint      NOT NULL,
    shares        positive    NOT NULL,
    price         positive    NOT NULL,
    traded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS trades_by_buy ON trades (buy_order_id, id);
CREATE INDEX IF NOT EXISTS trades_by_sell ON trades (sell_order_id, id);

-- Accounts and orders are never deleted or renumbered: orders, trades and the audit
-- refer to them. Statement-level triggers, which fire only for such statements and
-- never per row: placing an order pays nothing for the guard.
CREATE OR REPLACE FUNCTION keep_ledger() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'restrict_violation',
        MESSAGE = format('%s on %s refused: the exchange keeps every account and order',
                         TG_OP, TG_TABLE_NAME);
END
$$;
CREATE OR REPLACE TRIGGER accounts_kept BEFORE UPDATE OF id OR DELETE OR TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION keep_ledger();
CREATE OR REPLACE TRIGGER orders_kept BEFORE UPDATE OF id OR DELETE OR TRUNCATE ON orders
    FOR EACH STATEMENT EXECUTE FUNCTION keep_ledger();

-- The key of a symbol's advisory lock: the same in every process and every session.
CREATE OR REPLACE FUNCTION symbol_lock_key(p_symbol text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT hashtextextended(p_symbol, 0) $$;

-- Creates an account; false if it exists already.
CREATE OR REPLACE FUNCTION create_account(p_account text, p_balance numeric) RETURNS boolean
LANGUAGE sql
AS $$
    WITH created AS (
        INSERT INTO accounts (id, balance, deposited) VALUES (p_account, p_balance, p_balance)
        ON CONFLICT (id) DO NOTHING
        RETURNING 1
    )
    SELECT EXISTS (SELECT 1 FROM created)
$$;

-- Adds newly created shares to an account's position; false if the account does not exist.
CREATE OR REPLACE FUNCTION issue_shares(p_account text, p_symbol text, p_shares numeric) RETURNS boolean
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM 1 FROM accounts WHERE id = p_account;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    INSERT INTO positions AS p (account_id, symbol, shares) VALUES (p_account, p_symbol, p_shares)
    ON CONFLICT (account_id, symbol) DO UPDATE SET shares = p.shares + EXCLUDED.shares;
    INSERT INTO share_issues (account_id, symbol, shares) VALUES (p_account, p_symbol, p_shares);
    RETURN true;
END
$$;

-- Opens an order and matches it at once, all in the caller's one database transaction.
-- p_amount is signed: positive buys, negative sells. Returns the order's id, or a
-- rejection: 'no_account', 'insufficient_funds' or 'insufficient_shares'.
--
-- Everything happens under the symbol's advisory lock, so the time spent here is the
-- time other orders on the symbol wait: the trades are planned into arrays first,
-- then applied with one set-based statement per table rather than one per trade, each
-- costing the same per trade however many there are.
-- Dropped first: versions before migrations had a third result, trade_count, and
-- CREATE OR REPLACE cannot change a function's results.
DROP FUNCTION IF EXISTS place_order(text, text, numeric, numeric);
CREATE FUNCTION place_order(
    p_account text, p_symbol text, p_amount numeric, p_limit numeric,
    OUT rejection text, OUT order_id bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    trade_count integer;
    v_is_buy   boolean := p_amount > 0;
    v_shares   numeric := abs(p_amount);
    v_left     numeric := abs(p_amount);
    v_take     numeric;
    -- The planned trades, in execution order: resting order, its owner, price, shares.
    -- Every resting order is filled whole but the last, v_last, which gives v_take.
    t_orders   bigint[]  := '{}';
    t_owners   text[]    := '{}';
    t_prices   numeric[] := '{}';
    t_shares   numeric[] := '{}';
    v_last     bigint;
    -- Cash the order's own account gets back at once: for a buy, what trading below
    -- the limit leaves unspent; for a sell, the proceeds.
    v_cash     numeric := 0;
    book       refcursor;
    r          record;
BEGIN
    PERFORM pg_advisory_xact_lock(symbol_lock_key(p_symbol));

    -- Plan: the resting orders this one trades with, best price first, then oldest.
    -- Each trade is priced at the resting order's limit. (A cursor, not a FOR loop:
    -- a cursor's plan is made to return its first rows fast, where a FOR loop's would
    -- read and sort the whole of the book's crossing side for every order.)
    IF v_is_buy THEN
        OPEN book FOR SELECT id, account_id, limit_price, open_shares FROM orders
         WHERE symbol = p_symbol AND NOT is_buy AND open_shares > 0 AND limit_price <= p_limit
         ORDER BY limit_price, id;
    ELSE
        OPEN book FOR SELECT id, account_id, limit_price, open_shares FROM orders
         WHERE symbol = p_symbol AND is_buy AND open_shares > 0 AND limit_price >= p_limit
         ORDER BY limit_price DESC, id;
    END IF;
    WHILE v_left > 0 LOOP
        FETCH book INTO r;
        EXIT WHEN NOT FOUND;
        v_take := least(v_left, r.open_shares);
        t_orders := t_orders || r.id;
        t_owners := t_owners || r.account_id;
        t_prices := t_prices || r.limit_price;
        t_shares := t_shares || v_take;
        v_cash := v_cash + v_take * CASE WHEN v_is_buy THEN p_limit - r.limit_price ELSE r.limit_price END;
        v_left := v_left - v_take;
    END LOOP;
    CLOSE book;
    trade_count := cardinality(t_orders);
    v_last := t_orders[trade_count];

    -- Lock, in the global order, every row this order changes; reserve what it may
    -- spend (less, for a buy, what its trades give straight back).
    IF v_is_buy THEN
        IF trade_count > 0 THEN
            PERFORM 1 FROM accounts WHERE id = ANY (t_owners || p_account) ORDER BY id FOR NO KEY UPDATE;
        END IF;
        UPDATE accounts SET balance = balance - (v_shares * p_limit - v_cash)
         WHERE id = p_account AND balance >= v_shares * p_limit;
        IF NOT FOUND THEN
            PERFORM 1 FROM accounts WHERE id = p_account;
            rejection := CASE WHEN FOUND THEN 'insufficient_funds' ELSE 'no_account' END;
            RETURN;
        END IF;
    ELSE
        IF trade_count > 0 THEN
            PERFORM 1 FROM accounts WHERE id = p_account FOR NO KEY UPDATE;
            PERFORM 1 FROM positions WHERE account_id = ANY (t_owners || p_account) AND symbol = p_symbol
              ORDER BY account_id FOR NO KEY UPDATE;
        END IF;
        UPDATE positions SET shares = shares - v_shares
         WHERE account_id = p_account AND symbol = p_symbol AND shares >= v_shares;
        IF NOT FOUND THEN
            PERFORM 1 FROM accounts WHERE id = p_account;
            rejection := CASE WHEN FOUND THEN 'insufficient_shares' ELSE 'no_account' END;
            RETURN;
        END IF;
    END IF;

    INSERT INTO orders (account_id, symbol, is_buy, amount, limit_price, open_shares, filled_shares)
    VALUES (p_account, p_symbol, v_is_buy, v_shares, p_limit, v_left, v_shares - v_left)
    RETURNING id INTO order_id;
    IF trade_count = 0 THEN
        RETURN;
    END IF;

    -- Apply the plan: the resting orders, the trades, and what the other side receives.
    -- Each set-based statement names its rows with "= ANY (array)": that is an index
    -- condition, where a join against unnest() alone would scan the table. The resting
    -- orders need no join with the planned shares, a cost per trade of its own: all
    -- but the last are filled whole.
    UPDATE orders
       SET open_shares = open_shares - CASE WHEN id = v_last THEN v_take ELSE open_shares END,
           filled_shares = filled_shares + CASE WHEN id = v_last THEN v_take ELSE open_shares END
     WHERE id = ANY (t_orders);
    INSERT INTO trades (buy_order_id, sell_order_id, shares, price)
    SELECT CASE WHEN v_is_buy THEN order_id ELSE t.id END,
           CASE WHEN v_is_buy THEN t.id ELSE order_id END,
           t.shares, t.price
      FROM unnest(t_orders, t_shares, t_prices) WITH ORDINALITY AS t (id, shares, price, n)
     ORDER BY t.n;
    IF v_is_buy THEN
        -- Sellers receive the price; the buyer receives the shares.
        UPDATE accounts a SET balance = a.balance + c.cash
          FROM (SELECT owner, sum(shares * price) AS cash
                  FROM unnest(t_owners, t_shares, t_prices) AS t (owner, shares, price) GROUP BY owner) c
         WHERE a.id = ANY (t_owners) AND a.id = c.owner;

        INSERT INTO positions AS p (account_id, symbol, shares) VALUES (p_account, p_symbol, v_shares - v_left)
        ON CONFLICT (account_id, symbol) DO UPDATE SET shares = p.shares + EXCLUDED.shares;
    ELSE
        -- The seller receives the proceeds; resting buyers reserved exactly the price
        -- they pay, so they receive shares only.
        UPDATE accounts SET balance = balance + v_cash WHERE id = p_account;
        INSERT INTO positions AS p (account_id, symbol, shares)
        SELECT owner, p_symbol, sum(shares) FROM unnest(t_owners, t_shares) AS t (owner, shares)
         GROUP BY owner ORDER BY owner
        ON CONFLICT (account_id, symbol) DO UPDATE SET shares = p.shares + EXCLUDED.shares;
    END IF;
END
$$;

-- Cancels the open part of an order and returns what it had reserved.
-- Returns 'canceled', 'not_found' (unknown, or another account's) or 'not_open'.
CREATE OR REPLACE FUNCTION cancel_order(p_account text, p_order bigint) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    v_symbol text;
    o        record;
BEGIN
    -- Symbol and owner never change, so they can be read before taking any lock.
    SELECT symbol INTO v_symbol FROM orders WHERE id = p_order AND account_id = p_account;
    IF NOT FOUND THEN
        RETURN 'not_found';
    END IF;
    PERFORM pg_advisory_xact_lock(symbol_lock_key(v_symbol));
    SELECT is_buy, limit_price, open_shares INTO o FROM orders WHERE id = p_order;
    IF o.open_shares = 0 THEN
        RETURN 'not_open';
    END IF;
    IF o.is_buy THEN
        UPDATE accounts SET balance = balance + o.open_shares * o.limit_price WHERE id = p_account;
    ELSE
        INSERT INTO positions AS p (account_id, symbol, shares) VALUES (p_account, v_symbol, o.open_shares)
        ON CONFLICT (account_id, symbol) DO UPDATE SET shares = p.shares + EXCLUDED.shares;
    END IF;
    UPDATE orders SET canceled_shares = open_shares, open_shares = 0, canceled_at = now() WHERE id = p_order;
    RETURN 'canceled';
END
$$;

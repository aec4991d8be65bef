-- The exchange's whole schema. Applied by the server at start; every statement is
-- idempotent, so applying it to a live database changes nothing that exists.
--
-- Every rule the code enforces is enforced here a second time by a constraint:
-- balances, positions and open amounts never go below zero, limits are positive,
-- and every order's open + filled + canceled shares equal its amount.
--
-- Lock order, the one place it is written down. Every function that changes the
-- book or holdings takes its locks in this order, so two of them can only wait
-- for each other on rows of the same kind, and PostgreSQL's deadlock detector
-- (answered by a retry in src/store.rs) covers what ordering cannot:
--   1. the symbol's advisory lock, pg_advisory_xact_lock(symbol_lock_key(sym));
--   2. the acting account's row: its balance (buy) or its position (sell, cancel);
--   3. the counterparties' balances or positions, in price-time priority;
--   4. the acting account's row again, for proceeds, shares and refunds.
-- Orders themselves need no row locks: every statement that changes an order's
-- open amount runs under its symbol's advisory lock, which serialises the book.

CREATE TABLE IF NOT EXISTS accounts (
    id        text    PRIMARY KEY CHECK (id ~ '^[0-9]{1,32}$'),
    balance   numeric NOT NULL CHECK (balance >= 0),
    -- The cash deposited when the account was created, kept for the conservation audit.
    deposited numeric NOT NULL CHECK (deposited >= 0)
);

CREATE TABLE IF NOT EXISTS positions (
    account_id text    NOT NULL REFERENCES accounts (id),
    symbol     text    NOT NULL CHECK (symbol ~ '^[A-Za-z0-9]{1,32}$'),
    shares     numeric NOT NULL CHECK (shares >= 0),
    PRIMARY KEY (account_id, symbol)
);

-- Every share ever created, for the conservation audit.
CREATE TABLE IF NOT EXISTS share_issues (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id text        NOT NULL REFERENCES accounts (id),
    symbol     text        NOT NULL CHECK (symbol ~ '^[A-Za-z0-9]{1,32}$'),
    shares     numeric     NOT NULL CHECK (shares > 0),
    issued_at  timestamptz NOT NULL DEFAULT now()
);

-- The protocol's "transaction id" is orders.id.
CREATE TABLE IF NOT EXISTS orders (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id      text        NOT NULL REFERENCES accounts (id),
    symbol          text        NOT NULL CHECK (symbol ~ '^[A-Za-z0-9]{1,32}$'),
    is_buy          boolean     NOT NULL,
    amount          numeric     NOT NULL CHECK (amount > 0),
    limit_price     numeric     NOT NULL CHECK (limit_price > 0),
    open_shares     numeric     NOT NULL CHECK (open_shares >= 0),
    filled_shares   numeric     NOT NULL DEFAULT 0 CHECK (filled_shares >= 0),
    canceled_shares numeric     NOT NULL DEFAULT 0 CHECK (canceled_shares >= 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    canceled_at     timestamptz,
    CHECK (open_shares + filled_shares + canceled_shares = amount),
    CHECK ((canceled_at IS NULL) = (canceled_shares = 0))
);

-- The book: open orders in price-time priority, one index a side.
CREATE INDEX IF NOT EXISTS orders_open_sells ON orders (symbol, limit_price, id)
    WHERE NOT is_buy AND open_shares > 0;
CREATE INDEX IF NOT EXISTS orders_open_buys ON orders (symbol, limit_price DESC, id)
    WHERE is_buy AND open_shares > 0;

CREATE TABLE IF NOT EXISTS trades (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    buy_order_id  bigint      NOT NULL REFERENCES orders (id),
    sell_order_id bigint      NOT NULL REFERENCES orders (id),
    shares        numeric     NOT NULL CHECK (shares > 0),
    price         numeric     NOT NULL CHECK (price > 0),
    traded_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS trades_by_buy ON trades (buy_order_id, id);
CREATE INDEX IF NOT EXISTS trades_by_sell ON trades (sell_order_id, id);

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
CREATE OR REPLACE FUNCTION place_order(
    p_account text, p_symbol text, p_amount numeric, p_limit numeric,
    OUT rejection text, OUT order_id bigint, OUT trade_count integer)
LANGUAGE plpgsql
AS $$
DECLARE
    v_is_buy boolean := p_amount > 0;
    v_shares numeric := abs(p_amount);
    v_left   numeric := abs(p_amount);
    v_traded numeric;
    -- For a buy: the reserved cash that trading below the limit gives back.
    -- For a sell: the proceeds.
    v_cash   numeric := 0;
    r        record;
BEGIN
    trade_count := 0;
    PERFORM pg_advisory_xact_lock(symbol_lock_key(p_symbol));

    -- Reserve what the order may spend, atomically with opening it.
    IF v_is_buy THEN
        UPDATE accounts SET balance = balance - v_shares * p_limit
         WHERE id = p_account AND balance >= v_shares * p_limit;
        IF NOT FOUND THEN
            PERFORM 1 FROM accounts WHERE id = p_account;
            rejection := CASE WHEN FOUND THEN 'insufficient_funds' ELSE 'no_account' END;
            RETURN;
        END IF;
    ELSE
        UPDATE positions SET shares = shares - v_shares
         WHERE account_id = p_account AND symbol = p_symbol AND shares >= v_shares;
        IF NOT FOUND THEN
            PERFORM 1 FROM accounts WHERE id = p_account;
            rejection := CASE WHEN FOUND THEN 'insufficient_shares' ELSE 'no_account' END;
            RETURN;
        END IF;
    END IF;

    INSERT INTO orders (account_id, symbol, is_buy, amount, limit_price, open_shares)
    VALUES (p_account, p_symbol, v_is_buy, v_shares, p_limit, v_shares)
    RETURNING id INTO order_id;

    -- Match against the other side, best price first, then oldest; each trade is
    -- priced at the resting order's limit.
    IF v_is_buy THEN
        FOR r IN
            SELECT id, account_id, limit_price, open_shares FROM orders
             WHERE symbol = p_symbol AND NOT is_buy AND open_shares > 0 AND limit_price <= p_limit
             ORDER BY limit_price, id
        LOOP
            v_traded := least(v_left, r.open_shares);
            UPDATE orders SET open_shares = open_shares - v_traded, filled_shares = filled_shares + v_traded
             WHERE id = r.id;
            INSERT INTO trades (buy_order_id, sell_order_id, shares, price)
            VALUES (order_id, r.id, v_traded, r.limit_price);
            UPDATE accounts SET balance = balance + v_traded * r.limit_price WHERE id = r.account_id;
            v_cash := v_cash + v_traded * (p_limit - r.limit_price);
            v_left := v_left - v_traded;
            trade_count := trade_count + 1;
            EXIT WHEN v_left = 0;
        END LOOP;
    ELSE
        FOR r IN
            SELECT id, account_id, limit_price, open_shares FROM orders
             WHERE symbol = p_symbol AND is_buy AND open_shares > 0 AND limit_price >= p_limit
             ORDER BY limit_price DESC, id
        LOOP
            v_traded := least(v_left, r.open_shares);
            UPDATE orders SET open_shares = open_shares - v_traded, filled_shares = filled_shares + v_traded
             WHERE id = r.id;
            INSERT INTO trades (buy_order_id, sell_order_id, shares, price)
            VALUES (r.id, order_id, v_traded, r.limit_price);
            -- The resting buyer reserved exactly this price, so it gets no refund.
            INSERT INTO positions AS p (account_id, symbol, shares) VALUES (r.account_id, p_symbol, v_traded)
            ON CONFLICT (account_id, symbol) DO UPDATE SET shares = p.shares + EXCLUDED.shares;
            v_cash := v_cash + v_traded * r.limit_price;
            v_left := v_left - v_traded;
            trade_count := trade_count + 1;
            EXIT WHEN v_left = 0;
        END LOOP;
    END IF;

    IF v_left < v_shares THEN
        UPDATE orders SET open_shares = v_left, filled_shares = v_shares - v_left WHERE id = order_id;
        IF v_is_buy THEN
            INSERT INTO positions AS p (account_id, symbol, shares) VALUES (p_account, p_symbol, v_shares - v_left)
            ON CONFLICT (account_id, symbol) DO UPDATE SET shares = p.shares + EXCLUDED.shares;
        END IF;
        IF v_cash > 0 THEN
            UPDATE accounts SET balance = balance + v_cash WHERE id = p_account;
        END IF;
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

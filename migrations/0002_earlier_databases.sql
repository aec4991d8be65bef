-- Brings a database made before versioned migrations (by a server that applied its
-- schema at start) to version 1's shape; on a database made by version 1 it changes
-- nothing. Earlier versions had, and CREATE ... IF NOT EXISTS kept:
--   - table CHECKs on amounts and id formats, now the domains' checks;
--   - foreign keys and a row CHECK on orders and trades, now the audit's to check
--     (see the head of 0001_schema.sql);
--   - columns of type text and numeric where version 1 has the domains.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT conrelid::regclass AS tab, conname
          FROM pg_constraint
         WHERE (contype = 'c' AND conrelid IN ('accounts'::regclass, 'positions'::regclass,
                                              'share_issues'::regclass, 'orders'::regclass,
                                              'trades'::regclass))
            OR (contype = 'f' AND conrelid IN ('orders'::regclass, 'trades'::regclass))
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.tab, c.conname);
    END LOOP;

    -- A column an UPDATE OF trigger names cannot change type: the keep_ledger
    -- triggers of version 1 go while the columns change, and come back after.
    DROP TRIGGER IF EXISTS accounts_kept ON accounts;
    DROP TRIGGER IF EXISTS orders_kept ON orders;
    -- One ALTER TABLE per table, all its columns at once: a column that becomes a
    -- domain with a check rewrites its table, and this way each table is rewritten
    -- once (under an exclusive lock: on a large table, an upgrade from such an early
    -- version needs the servers stopped; docs/deployment.md).
    FOR c IN
        SELECT w.tab,
               string_agg(format('ALTER COLUMN %I TYPE %s', w.col, w.domain), ', ') AS changes
          FROM (VALUES ('accounts', 'id', 'account_id'),
                       ('accounts', 'balance', 'nonnegative'),
                       ('accounts', 'deposited', 'nonnegative'),
                       ('positions', 'account_id', 'account_id'),
                       ('positions', 'symbol', 'symbol'),
                       ('positions', 'shares', 'nonnegative'),
                       ('share_issues', 'account_id', 'account_id'),
                       ('share_issues', 'symbol', 'symbol'),
                       ('share_issues', 'shares', 'positive'),
                       ('orders', 'account_id', 'account_id'),
                       ('orders', 'symbol', 'symbol'),
                       ('orders', 'amount', 'positive'),
                       ('orders', 'limit_price', 'positive'),
                       ('orders', 'open_shares', 'nonnegative'),
                       ('orders', 'filled_shares', 'nonnegative'),
                       ('orders', 'canceled_shares', 'nonnegative'),
                       ('trades', 'shares', 'positive'),
                       ('trades', 'price', 'positive')) AS w(tab, col, domain)
          JOIN pg_attribute a ON a.attrelid = w.tab::regclass AND a.attname = w.col
         WHERE a.atttypid <> w.domain::regtype
         GROUP BY w.tab
    LOOP
        EXECUTE format('ALTER TABLE %I %s', c.tab, c.changes);
    END LOOP;
    CREATE TRIGGER accounts_kept BEFORE UPDATE OF id OR DELETE OR TRUNCATE ON accounts
        FOR EACH STATEMENT EXECUTE FUNCTION keep_ledger();
    CREATE TRIGGER orders_kept BEFORE UPDATE OF id OR DELETE OR TRUNCATE ON orders
        FOR EACH STATEMENT EXECUTE FUNCTION keep_ledger();
END
$$;

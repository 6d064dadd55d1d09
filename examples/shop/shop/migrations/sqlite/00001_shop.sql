-- +goose Up
CREATE TABLE users (
    id         INTEGER NOT NULL PRIMARY KEY,
    email      TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE TABLE products (
    id             INTEGER NOT NULL PRIMARY KEY,
    name           TEXT    NOT NULL,
    price_cents    INTEGER NOT NULL,
    stock          INTEGER NOT NULL CHECK (stock >= 0),
    stock_received INTEGER NOT NULL,
    updated_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
);

CREATE TABLE orders (
    id          TEXT    NOT NULL PRIMARY KEY,
    user_id     INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    reason      TEXT    NOT NULL DEFAULT '',
    total_cents INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now'))
) WITHOUT ROWID;
CREATE INDEX orders_status ON orders (status);

CREATE TABLE order_items (
    order_id    TEXT    NOT NULL,
    line        INTEGER NOT NULL,
    product_id  INTEGER NOT NULL,
    qty         INTEGER NOT NULL,
    price_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, line)
) WITHOUT ROWID;
CREATE INDEX order_items_product ON order_items (product_id);

-- +goose Down
DROP TABLE order_items;
DROP TABLE orders;
DROP TABLE products;
DROP TABLE users;

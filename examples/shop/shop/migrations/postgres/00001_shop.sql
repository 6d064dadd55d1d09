-- +goose Up
CREATE TABLE users (
    id         BIGINT       NOT NULL PRIMARY KEY,
    email      VARCHAR(255) NOT NULL,
    name       VARCHAR(255) NOT NULL,
    created_at TIMESTAMPTZ  NOT NULL DEFAULT now()
);

-- PostgreSQL has no ON UPDATE column clause: updated_at keeps the time the
-- row was stored (the shop reads it nowhere; a trigger would cost every
-- stock move).
CREATE TABLE products (
    id             BIGINT       NOT NULL PRIMARY KEY,
    name           VARCHAR(255) NOT NULL,
    price_cents    BIGINT       NOT NULL,
    stock          BIGINT       NOT NULL,
    stock_received BIGINT       NOT NULL,
    updated_at     TIMESTAMPTZ  NOT NULL DEFAULT now(),
    CONSTRAINT products_stock_not_negative CHECK (stock >= 0)
);

CREATE TABLE orders (
    id          VARCHAR(64)  NOT NULL PRIMARY KEY,
    user_id     BIGINT       NOT NULL,
    status      VARCHAR(16)  NOT NULL,
    reason      VARCHAR(255) NOT NULL DEFAULT '',
    total_cents BIGINT       NOT NULL DEFAULT 0,
    created_at  TIMESTAMPTZ  NOT NULL DEFAULT now()
);
CREATE INDEX orders_status ON orders (status);

CREATE TABLE order_items (
    order_id    VARCHAR(64) NOT NULL,
    line        INTEGER     NOT NULL,
    product_id  BIGINT      NOT NULL,
    qty         INTEGER     NOT NULL,
    price_cents BIGINT      NOT NULL,
    PRIMARY KEY (order_id, line)
);
CREATE INDEX order_items_product ON order_items (product_id);

-- +goose Down
DROP TABLE order_items;
DROP TABLE orders;
DROP TABLE products;
DROP TABLE users;

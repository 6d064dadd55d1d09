-- +goose Up
CREATE TABLE users (
    id         BIGINT       NOT NULL PRIMARY KEY,
    email      VARCHAR(255) NOT NULL,
    name       VARCHAR(255) NOT NULL,
    created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB;

CREATE TABLE products (
    id             BIGINT       NOT NULL PRIMARY KEY,
    name           VARCHAR(255) NOT NULL,
    price_cents    BIGINT       NOT NULL,
    stock          BIGINT       NOT NULL,
    stock_received BIGINT       NOT NULL,
    updated_at     TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    CONSTRAINT products_stock_not_negative CHECK (stock >= 0)
) ENGINE=InnoDB;

CREATE TABLE orders (
    id          VARCHAR(64)  NOT NULL PRIMARY KEY,
    user_id     BIGINT       NOT NULL,
    status      VARCHAR(16)  NOT NULL,
    reason      VARCHAR(255) NOT NULL DEFAULT '',
    total_cents BIGINT       NOT NULL DEFAULT 0,
    created_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    KEY orders_status (status)
) ENGINE=InnoDB;

CREATE TABLE order_items (
    order_id    VARCHAR(64) NOT NULL,
    line        INT         NOT NULL,
    product_id  BIGINT      NOT NULL,
    qty         INT         NOT NULL,
    price_cents BIGINT      NOT NULL,
    PRIMARY KEY (order_id, line),
    KEY order_items_product (product_id)
) ENGINE=InnoDB;

-- +goose Down
DROP TABLE order_items;
DROP TABLE orders;
DROP TABLE products;
DROP TABLE users;

-- name: CreateUser :execlastid
INSERT INTO users (email, name) VALUES (?, ?);

-- name: GetUser :one
SELECT id, email, name FROM users WHERE id = ?;

-- name: ListUsers :many
SELECT id, email, name FROM users ORDER BY id;

-- name: CreateOrder :execresult
INSERT INTO orders (user_id, total_cents) VALUES (?, ?);

-- name: OrdersOfUser :many
SELECT id, user_id, total_cents FROM orders WHERE user_id = ? ORDER BY id;

-- name: CountOrders :one
SELECT COUNT(*) FROM orders;

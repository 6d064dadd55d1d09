package shop

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/poolset/poolset"
)

// UserRepo stores users: writes on the primary, reads on the read pool.
type UserRepo struct {
	h       *poolset.Handle
	dialect Dialect
}

// NewUserRepo returns a UserRepo on h.
func NewUserRepo(h *poolset.Handle, d Dialect) *UserRepo { return &UserRepo{h: h, dialect: d} }

// Register stores u, or updates its email and name when its id exists.
func (r *UserRepo) Register(ctx context.Context, u User) error {
	q := "INSERT INTO users (id, email, name) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE email = VALUES(email), name = VALUES(name)"
	if r.dialect.Name != MySQL {
		q = "INSERT INTO users (id, email, name) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET email = excluded.email, name = excluded.name"
	}
	if _, err := r.h.ExecContext(ctx, r.dialect.bind(q), u.ID, u.Email, u.Name); err != nil {
		return fmt.Errorf("shop: register user %d: %w", u.ID, err)
	}
	return nil
}

// Get returns user id from the read pool: it may miss a user registered a
// moment ago on the primary. It returns ErrUserNotFound when there is none.
func (r *UserRepo) Get(ctx context.Context, id int64) (User, error) {
	var u User
	err := r.h.Read().QueryRowContext(ctx, r.dialect.bind("SELECT id, email, name FROM users WHERE id = ?"), id).Scan(&u.ID, &u.Email, &u.Name)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, fmt.Errorf("%w: %d", ErrUserNotFound, id)
	}
	if err != nil {
		return User{}, fmt.Errorf("shop: get user %d: %w", id, err)
	}
	return u, nil
}

// existsTx reports whether user id exists, inside tx.
func (r *UserRepo) existsTx(ctx context.Context, tx *sql.Tx, id int64) (bool, error) {
	var one int
	err := tx.QueryRowContext(ctx, r.dialect.bind("SELECT 1 FROM users WHERE id = ?"), id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("shop: look up user %d: %w", id, err)
	}
	return true, nil
}

// RegisterMany stores users with one statement, updating the email and
// name of those whose id exists.
func (r *UserRepo) RegisterMany(ctx context.Context, users []User) error {
	if len(users) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("INSERT INTO users (id, email, name) VALUES ")
	args := make([]any, 0, 3*len(users))
	for i, u := range users {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("(?,?,?)")
		args = append(args, u.ID, u.Email, u.Name)
	}
	if r.dialect.Name == MySQL {
		b.WriteString(" ON DUPLICATE KEY UPDATE email = VALUES(email), name = VALUES(name)")
	} else {
		b.WriteString(" ON CONFLICT (id) DO UPDATE SET email = excluded.email, name = excluded.name")
	}
	if _, err := r.h.ExecContext(ctx, r.dialect.bind(b.String()), args...); err != nil {
		return fmt.Errorf("shop: register %d users: %w", len(users), err)
	}
	return nil
}

// RegisterUsers stores users with one statement on the primary, updating
// the email and name of those whose id exists (see UserRepo.RegisterMany).
// It is what the worker's Store asks of the shop.
func (s *Shop) RegisterUsers(ctx context.Context, users []User) error {
	return s.Users.RegisterMany(ctx, users)
}

package compat_test

import (
	"errors"
	"testing"

	gmysql "gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/poolset/poolset"
)

type account struct {
	ID    uint   `gorm:"primaryKey"`
	Email string `gorm:"size:255;uniqueIndex"`
	Cents int64
}

// openGorm opens GORM on conn (a Handle or its Read view), as
// gorm.io/driver/mysql's Config.Conn documents.
func openGorm(t *testing.T, conn gorm.ConnPool) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(gmysql.New(gmysql.Config{Conn: conn}), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("gorm.Open: %v", err)
	}
	return db
}

func TestGorm(t *testing.T) {
	s := openSet(t, "poolset_compat_gorm")
	if err := openGorm(t, s.Handle("schema")).AutoMigrate(&account{}); err != nil {
		t.Fatalf("AutoMigrate: %v", err)
	}
	schema, _ := figures(s, "schema")
	if schema.Queries == 0 {
		t.Errorf("schema on primary: got %+v; want AutoMigrate's queries counted", schema)
	}

	accounts := s.Handle("accounts")
	db := openGorm(t, accounts)
	open, _ := figures(s, "accounts") // gorm.Open asks the server's version

	a := account{Email: "alice@example.com", Cents: 100}
	if err := db.Create(&a).Error; err != nil { // in GORM's default transaction
		t.Fatalf("Create: %v", err)
	}
	var got account
	if err := db.First(&got, a.ID).Error; err != nil || got.Email != a.Email {
		t.Fatalf("First: got %+v, %v; want %s", got, err, a.Email)
	}
	err := db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&account{Email: "bob@example.com", Cents: 50}).Error; err != nil {
			return err
		}
		return tx.Model(&account{}).Where("id = ?", a.ID).Update("cents", gorm.Expr("cents - ?", 50)).Error
	})
	if err != nil {
		t.Fatalf("Transaction: %v", err)
	}
	rollback := errors.New("roll back")
	err = db.Transaction(func(tx *gorm.DB) error {
		if err := tx.Create(&account{Email: "eve@example.com"}).Error; err != nil {
			return err
		}
		return rollback
	})
	if !errors.Is(err, rollback) {
		t.Fatalf("Transaction: got %v; want the function's error", err)
	}

	// Reads through GORM on the Read view go to the read pool.
	rdb := openGorm(t, accounts.Read())
	var n int64
	if err := rdb.Model(&account{}).Count(&n).Error; err != nil || n != 2 {
		t.Fatalf("Count on Read(): got %d, %v; want 2", n, err)
	}

	p, r := figures(s, "accounts")
	t.Logf("schema: primary %+v; accounts: primary %+v (%+v at gorm.Open), read %+v", schema, p, open, r)
	// Create: its insert, in a transaction; First: 1 query; the first
	// Transaction: 2 statements; the second: 1 statement, rolled back.
	if want := (counts{Queries: open.Queries + 5, Txs: 3}); p != want {
		t.Errorf("accounts on primary: got %+v; want %+v", p, want)
	}
	// gorm.Open on the Read view: the version; Count: 1 query.
	if want := (counts{Queries: 2}); r != want {
		t.Errorf("accounts on read pool: got %+v; want %+v", r, want)
	}
	if un, _ := figures(s, poolset.Unattributed); un != (counts{}) {
		t.Errorf("unattributed on primary: got %+v; want none", un)
	}
	idle(t, s)
}

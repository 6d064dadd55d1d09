package mysql_test

import (
	"strings"
	"testing"

	"github.com/poolset/poolset/mysql"
)

func TestPoolConfig(t *testing.T) {
	pc, err := mysql.PoolConfig("app:S3cret@tcp(127.0.0.1:3306)/shop", true)
	if err != nil {
		t.Fatal(err)
	}
	if pc.Address != "app:***@tcp(127.0.0.1:3306)/shop" || !pc.ReadOnly || pc.Kind != "mysql" || pc.Connector == nil {
		t.Errorf("got %+v; want the redacted address, read-only, a connector", pc)
	}
	if _, err := mysql.PoolConfig("app:S3cret@tcp(127.0.0.1:3306/shop", false); err == nil {
		t.Error("malformed DSN: got nil; want an error")
	} else if got := err.Error(); strings.Contains(got, "S3cret") {
		t.Errorf("error shows the password: %q", got)
	}
}

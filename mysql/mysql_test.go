package mysql_test

import (
	"strings"
	"testing"
	"time"

	"github.com/poolset/poolset/mysql"
)

func TestPrimaryAndReplica(t *testing.T) {
	const dsn = "app:S3cret@tcp(127.0.0.1:3306)/shop"
	pc, err := mysql.Replica(dsn, 0)
	if err != nil {
		t.Fatal(err)
	}
	if pc.Address != "app:***@tcp(127.0.0.1:3306)/shop" || !pc.ReadOnly || pc.Kind != "mysql" || pc.Connector == nil {
		t.Errorf("replica: got %+v; want the redacted address, read-only, a connector", pc)
	}
	if _, ok := pc.Health.(*mysql.ReplicaCheck); !ok || pc.Positions != (mysql.GTIDPositions{}) {
		t.Errorf("replica: got health %T, positions %T; want a *mysql.ReplicaCheck and GTIDPositions", pc.Health, pc.Positions)
	}
	pc, err = mysql.Primary(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if pc.Address != "app:***@tcp(127.0.0.1:3306)/shop" || pc.ReadOnly || pc.Kind != "mysql" || pc.Connector == nil {
		t.Errorf("primary: got %+v; want the redacted address, read-write, a connector", pc)
	}
	if pc.Health != nil || pc.Positions != (mysql.GTIDPositions{}) {
		t.Errorf("primary: got health %T, positions %T; want none and GTIDPositions", pc.Health, pc.Positions)
	}
	if _, err := mysql.Replica(dsn, -time.Second); err == nil || strings.Contains(err.Error(), "S3cret") {
		t.Errorf("negative max lag: got %v; want an error without the password", err)
	}
	for name, build := range map[string]func(string) error{
		"primary": func(d string) error { _, err := mysql.Primary(d); return err },
		"replica": func(d string) error { _, err := mysql.Replica(d, 0); return err },
	} {
		if err := build("app:S3cret@tcp(127.0.0.1:3306/shop"); err == nil {
			t.Errorf("%s: malformed DSN: got nil; want an error", name)
		} else if got := err.Error(); strings.Contains(got, "S3cret") {
			t.Errorf("%s: error shows the password: %q", name, got)
		}
	}
}

package shop

import "testing"

func TestDialectBind(t *testing.T) {
	q := "SELECT id FROM orders WHERE id IN (?,?) AND user_id = ?"
	for _, tc := range []struct{ name, want string }{
		{Postgres, "SELECT id FROM orders WHERE id IN ($1,$2) AND user_id = $3"},
		{MySQL, q},
		{SQLite, q},
	} {
		if got := (Dialect{Name: tc.name}).bind(q); got != tc.want {
			t.Errorf("%s: bind: got %q; want %q", tc.name, got, tc.want)
		}
	}
	if got, want := (Dialect{Name: Postgres}).bind("SELECT 1"), "SELECT 1"; got != want {
		t.Errorf("postgres: bind without placeholders: got %q; want %q", got, want)
	}
}

func TestDialectStatements(t *testing.T) {
	for _, tc := range []struct {
		name, forUpdate, head, tail, bigint string
	}{
		{MySQL, " FOR UPDATE", "INSERT IGNORE INTO ", "", "?"},
		{Postgres, " FOR UPDATE", "INSERT INTO ", " ON CONFLICT DO NOTHING", "?::bigint"},
		{SQLite, "", "INSERT OR IGNORE INTO ", "", "?"},
	} {
		d := Dialect{Name: tc.name}
		head, tail := d.insertIgnore()
		if d.forUpdate() != tc.forUpdate || head != tc.head || tail != tc.tail || d.bigint("?") != tc.bigint {
			t.Errorf("%s: got forUpdate %q, insertIgnore %q %q, bigint %q; want %q, %q %q, %q",
				tc.name, d.forUpdate(), head, tail, d.bigint("?"), tc.forUpdate, tc.head, tc.tail, tc.bigint)
		}
	}
}

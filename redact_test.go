package poolset_test

import (
	"testing"

	"github.com/poolset/poolset"
)

// TestRedact holds the cases of the four redactions it replaced (mysql,
// nats, rabbitmq, redis) and those of a libpq DSN.
func TestRedact(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		// go-sql-driver/mysql DSNs
		{"app:S3cret@tcp(127.0.0.1:3306)/shop?parseTime=true", "app:***@tcp(127.0.0.1:3306)/shop?parseTime=true"},
		{"root@tcp(127.0.0.1:3306)/shop", "root@tcp(127.0.0.1:3306)/shop"},
		{"app:S3cret@tcp(127.0.0.1:3306/shop", "app:***@tcp(127.0.0.1:3306/shop"},
		{"app:S3c@ret@tcp(h:1)/db", "app:***@tcp(h:1)/db"},
		{`invalid value "app:S3cret@tcp(h:1)/db" for flag -mysql`, `invalid value "app:***@tcp(h:1)/db" for flag -mysql`},
		// NATS
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://user:pass@host:4222", "nats://user:***@host:4222"},
		{"nats://s3cr3tt0ken@host:4222", "nats://***@host:4222"},
		{"tls://u:p@a:1,tls://u:p@b:2", "tls://u:***@a:1,tls://u:***@b:2"},
		{"nats://u:p%zz@host", "nats://***@host"},
		{"host:4222", "host:4222"},
		// AMQP
		{"amqp://guest:guest@127.0.0.1:5672/", "amqp://guest:***@127.0.0.1:5672/"},
		{"amqp://guest@host/vh", "amqp://***@host/vh"},
		{"amqp://host", "amqp://host"},
		{"amqp://u:p@h/%zz", "amqp://***@h/%zz"},
		// Redis
		{"redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"},
		{"redis://u:s3cret@host:6379/0", "redis://u:***@host:6379/0"},
		{"redis://host:6379", "redis://host:6379"},
		// PostgreSQL, URL and key=value
		{"postgres://app:S3cret@127.0.0.1:5432/shop?sslmode=disable", "postgres://app:***@127.0.0.1:5432/shop?sslmode=disable"},
		{"postgres://127.0.0.1/shop?user=app&password=S3cret&sslmode=disable", "postgres://127.0.0.1/shop?user=app&password=***&sslmode=disable"},
		{"host=127.0.0.1 user=app password=S3cret dbname=shop", "host=127.0.0.1 user=app password=*** dbname=shop"},
		{"host=h password='S3 cret' dbname=shop", "host=h password=*** dbname=shop"},
		{"", ""},
	} {
		if got := poolset.Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// TestRedactParams: keys are matched whole and in any case, and values end
// where a DSN's or a query's next setting begins.
func TestRedactParams(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"bypass=1 Password=x&PWD=y;token=z,secret='a\\'b c' keep=1", "bypass=1 Password=***&PWD=***;token=***,secret=*** keep=1"},
		{"password=", "password=***"},
		{"password='unterminated", "password=***"},
		{"x=1 y=2", "x=1 y=2"},
	} {
		if got := poolset.Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

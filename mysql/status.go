package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The counting helpers below poll the server, often many times a second
// under load. They use SHOW statements without arguments, so that they run
// over the text protocol and never as server-side prepared statements: a
// prepared SELECT from information_schema.processlist, run every 5 ms
// during a load, crashed MariaDB 10.11.19 here twice (signal 11 in
// ha_maria::drop_table, freeing the statement's temporary table).

// GlobalStatus returns the server's global status variable name, such as
// Threads_connected or Aborted_clients. name is letters, digits and
// underscores.
func GlobalStatus(ctx context.Context, db *sql.DB, name string) (int64, error) {
	for _, r := range name {
		if !(r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return 0, fmt.Errorf("mysql: global status %q: not a status variable name", name)
		}
	}
	v, err := globalStatus(ctx, db, name)
	if err != nil {
		return 0, fmt.Errorf("mysql: global status %s: %w", name, err)
	}
	return v, nil
}

func globalStatus(ctx context.Context, db *sql.DB, name string) (int64, error) {
	// No argument, so no prepared statement. In the LIKE pattern "_"
	// matches any character: the row whose name is name is picked below.
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL STATUS LIKE '"+name+"'")
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var got, v string
		if err := rows.Scan(&got, &v); err != nil {
			return 0, err
		}
		if strings.EqualFold(got, name) {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("value %q is not an integer", v)
			}
			return n, rows.Err()
		}
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no such status variable")
}

// ConnectionsTo returns how many client connections the server has open with
// database dbName as their current database, from SHOW PROCESSLIST, not
// counting the connection it asks on. Opening each pool of a process on its
// own database (or counting from a connection on another) tells that
// process's connections apart from everyone else's.
func ConnectionsTo(ctx context.Context, db *sql.DB, dbName string) (int, error) {
	n, err := connectionsTo(ctx, db, dbName)
	if err != nil {
		return 0, fmt.Errorf("mysql: count connections to %s: %w", dbName, err)
	}
	return n, nil
}

func connectionsTo(ctx context.Context, db *sql.DB, dbName string) (int, error) {
	c, err := db.Conn(ctx)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	self, ps, err := processesFrom(ctx, c)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range ps {
		if p.ID != self && p.DB == dbName && p.Command != "Daemon" {
			n++
		}
	}
	return n, nil
}

// processesFrom returns c's own connection id and the server's process
// list, as Processes reads it.
func processesFrom(ctx context.Context, c *sql.Conn) (self string, ps []Process, err error) {
	if err := c.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&self); err != nil {
		return "", nil, err
	}
	ps, err = Processes(ctx, c)
	return self, ps, err
}

// Process is one row of SHOW FULL PROCESSLIST: a connection or a server
// thread. Empty strings stand for NULL.
type Process struct {
	ID, User, Host, DB, Command, State, Info string
}

// Processes returns the server's SHOW FULL PROCESSLIST, read over the text
// protocol (see GlobalStatus), from q: a *sql.DB, *sql.Conn or *sql.Tx.
func Processes(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) ([]Process, error) {
	rows, err := q.QueryContext(ctx, "SHOW FULL PROCESSLIST")
	if err != nil {
		return nil, fmt.Errorf("mysql: processlist: %w", err)
	}
	all, err := rowMaps(rows)
	if err != nil {
		return nil, fmt.Errorf("mysql: processlist: %w", err)
	}
	ps := make([]Process, len(all))
	for k, row := range all {
		p := &ps[k]
		for c, v := range row {
			switch strings.ToLower(c) {
			case "id":
				p.ID = v
			case "user":
				p.User = v
			case "host":
				p.Host = v
			case "db":
				p.DB = v
			case "command":
				p.Command = v
			case "state":
				p.State = v
			case "info":
				p.Info = v
			}
		}
	}
	return ps, nil
}

// rowMaps reads every row of rows, as text, into a map from column name to
// value; a NULL leaves its column out. It closes rows.
func rowMaps(rows *sql.Rows) ([]map[string]string, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	var all []map[string]string
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make(map[string]string, len(cols))
		for i, c := range cols {
			if vals[i].Valid {
				row[c] = vals[i].String
			}
		}
		all = append(all, row)
	}
	return all, rows.Err()
}

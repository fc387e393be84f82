// rnn-cluster: the client side of tests/cluster/run.sh, through go-dqlite's database/sql driver and client
// packages. Built by `make cluster-client` (tests/cluster/cluster.mk) into build/rnn-cluster.
//
//	rnn-cluster ports N                      N free TCP ports on 127.0.0.1, one a line
//	rnn-cluster -s A,B,C wait N              waits until the cluster has N voters and a leader; prints the leader
//	rnn-cluster -s A,B,C leader              prints the leader's address
//	rnn-cluster -s A,B,C transfer ADDRESS    makes the node at ADDRESS the leader
//	rnn-cluster -s A,B,C setup MODEL ROWS    creates the tables, stores MODEL as 'room_temp', inserts ROWS readings
//	rnn-cluster -s A,B,C score               SELECT ... rnn_predict() OVER, then DELETE FROM pred and
//	                                         INSERT INTO pred SELECT ...: prints each one's rows and rows/s,
//	                                         and the hash of the rows the SELECT returned
//	rnn-cluster -s A,B,C hash                the hash of the pred table, and the leader's kernel
//	rnn-cluster -s A,B,C live                the hash of predictions computed now, on the leader
//
// Every request runs under a deadline (-timeout). The SQL commands use one connection, set up first by the
// workload's "connection" statement (PRAGMA cache_spill = OFF: see there). A hash is the SHA-256 of one line per row, "id %016x\n" with
// the float64 bits of the prediction ("null" for NULL), in id order: equal hashes mean bit-identical rows.
// tests/cluster/local.py writes the same lines for a local file. The SQL is in tests/cluster/workload.sql.
package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"flag"
	"fmt"
	"hash"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/canonical/go-dqlite/client"
	"github.com/canonical/go-dqlite/driver"
)

var (
	servers  = flag.String("s", "", "comma-separated dqlite node addresses")
	dbname   = flag.String("db", "rnn", "database name")
	workload = flag.String("sql", "tests/cluster/workload.sql", "the workload's statements")
	timeout  = flag.Duration("timeout", 60*time.Second, "deadline of the whole command")
)

func main() {
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	err := run(ctx, flag.Args())
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "rnn-cluster: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no command (ports, wait, leader, transfer, setup, score, hash, live)")
	}
	if args[0] == "ports" && len(args) == 2 {
		return ports(args[1])
	}
	if *servers == "" {
		return fmt.Errorf("no servers: give -s host:port,...")
	}
	store := client.NewInmemNodeStore()
	infos := []client.NodeInfo{}
	for _, a := range strings.Split(*servers, ",") {
		infos = append(infos, client.NodeInfo{Address: a})
	}
	store.Set(ctx, infos)
	switch {
	case args[0] == "wait" && len(args) == 2:
		return wait(ctx, store, args[1])
	case args[0] == "leader" && len(args) == 1:
		cli, err := client.FindLeader(ctx, store)
		if err != nil {
			return err
		}
		defer cli.Close()
		info, err := cli.Leader(ctx)
		if err == nil {
			fmt.Println(info.Address)
		}
		return err
	case args[0] == "transfer" && len(args) == 2:
		return transfer(ctx, store, args[1])
	}
	stmts, err := readWorkload(*workload)
	if err != nil {
		return err
	}
	db, err := openDB(ctx, store, stmts["connection"])
	if err != nil {
		return err
	}
	defer db.Close()
	switch {
	case args[0] == "setup" && len(args) == 3:
		return setup(ctx, db, stmts, args[1], args[2])
	case args[0] == "score" && len(args) == 1:
		return score(ctx, db, stmts)
	case args[0] == "hash" && len(args) == 1:
		return report(ctx, db, stmts, "pred", "pred")
	case args[0] == "live" && len(args) == 1:
		return report(ctx, db, stmts, "live", "score")
	}
	return fmt.Errorf("unknown command or wrong arguments: %s", strings.Join(args, " "))
}

// ports prints n TCP ports the kernel just handed out on 127.0.0.1 (free when this returns).
func ports(arg string) error {
	n, err := strconv.Atoi(arg)
	if err != nil || n < 1 {
		return fmt.Errorf("ports: want a count, got %q", arg)
	}
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		ls = append(ls, l)
		fmt.Println(l.Addr().(*net.TCPAddr).Port)
	}
	return nil
}

// wait polls until the cluster has n voters and a leader (or the deadline passes).
func wait(ctx context.Context, store client.NodeStore, arg string) error {
	n, err := strconv.Atoi(arg)
	if err != nil {
		return fmt.Errorf("wait: want a voter count, got %q", arg)
	}
	last := "no leader yet"
	for {
		if voters, leader, err := countVoters(ctx, store); err != nil {
			last = err.Error()
		} else if voters >= n {
			fmt.Println(leader)
			return nil
		} else {
			last = fmt.Sprintf("%d voters", voters)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait: no %d voters before the deadline (%s)", n, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func countVoters(ctx context.Context, store client.NodeStore) (int, string, error) {
	cli, err := client.FindLeader(ctx, store)
	if err != nil {
		return 0, "", err
	}
	defer cli.Close()
	leader, err := cli.Leader(ctx)
	if err != nil {
		return 0, "", err
	}
	nodes, err := cli.Cluster(ctx)
	if err != nil {
		return 0, "", err
	}
	voters := 0
	for _, node := range nodes {
		if node.Role == client.Voter {
			voters++
		}
	}
	return voters, leader.Address, nil
}

func transfer(ctx context.Context, store client.NodeStore, address string) error {
	cli, err := client.FindLeader(ctx, store)
	if err != nil {
		return err
	}
	defer cli.Close()
	nodes, err := cli.Cluster(ctx)
	if err != nil {
		return err
	}
	for _, node := range nodes {
		if node.Address == address {
			return cli.Transfer(ctx, node.ID)
		}
	}
	return fmt.Errorf("transfer: no node at %s in the cluster", address)
}

// readWorkload returns the statements of workload.sql by name: each follows a "-- name: NAME" line; other
// comment lines are dropped.
func readWorkload(path string) (map[string]string, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	stmts := map[string]string{}
	name := ""
	for _, line := range strings.Split(string(text), "\n") {
		if strings.HasPrefix(line, "-- name: ") {
			name = strings.TrimSpace(line[len("-- name: "):])
		} else if name != "" && !strings.HasPrefix(line, "--") {
			stmts[name] = strings.TrimSpace(stmts[name] + "\n" + line)
		}
	}
	for _, want := range []string{"connection", "schema_models", "schema_readings", "schema_index", "schema_pred", "model", "readings", "score",
		"clear_pred", "insert_pred", "pred", "kernel"} {
		if stmts[want] == "" {
			return nil, fmt.Errorf("%s: no statement named %s", path, want)
		}
	}
	return stmts, nil
}

// openDB returns one connection to the leader, set up by the workload's "connection" statement (see there).
func openDB(ctx context.Context, store client.NodeStore, setup string) (*sql.Conn, error) {
	drv, err := driver.New(store)
	if err != nil {
		return nil, err
	}
	sql.Register("dqlite-rnn", drv)
	pool, err := sql.Open("dqlite-rnn", *dbname)
	if err != nil {
		return nil, err
	}
	db, err := pool.Conn(ctx)
	if err == nil {
		if _, err = db.ExecContext(ctx, setup); err != nil {
			db.Close()
			err = fmt.Errorf("connection: %w", err)
		}
	}
	return db, err
}

func setup(ctx context.Context, db *sql.Conn, stmts map[string]string, modelPath, rowsArg string) error {
	rows, err := strconv.Atoi(rowsArg)
	if err != nil || rows < 1 {
		return fmt.Errorf("setup: want a row count, got %q", rowsArg)
	}
	model, err := os.ReadFile(modelPath)
	if err != nil {
		return err
	}
	for _, name := range []string{"connection", "schema_models", "schema_readings", "schema_index", "schema_pred"} {
		if _, err := db.ExecContext(ctx, stmts[name]); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	if _, err := db.ExecContext(ctx, stmts["model"], model); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	res, err := db.ExecContext(ctx, stmts["readings"], rows)
	if err != nil {
		return fmt.Errorf("readings: %w", err)
	}
	n, _ := res.RowsAffected()
	fmt.Printf("readings %d\n", n)
	return nil
}

// score runs the window query (rows back to the client), then empties pred and fills it with INSERT ... SELECT
// (rows into pred, replicated), and prints for each: rows, seconds, rows per second, and for the query the hash
// of what came back.
func score(ctx context.Context, db *sql.Conn, stmts map[string]string) error {
	start := time.Now()
	n, sum, err := hashQuery(ctx, db, stmts["score"])
	if err != nil {
		return fmt.Errorf("score: %w", err)
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("select %d rows %.3f s %.0f rows/s sha256 %s\n", n, secs, float64(n)/secs, sum)
	if _, err := db.ExecContext(ctx, stmts["clear_pred"]); err != nil {
		return fmt.Errorf("clear_pred: %w", err)
	}
	start = time.Now()
	res, err := db.ExecContext(ctx, stmts["insert_pred"])
	if err != nil {
		return fmt.Errorf("insert_pred: %w", err)
	}
	secs = time.Since(start).Seconds()
	m, _ := res.RowsAffected()
	fmt.Printf("insert %d rows %.3f s %.0f rows/s\n", m, secs, float64(m)/secs)
	return nil
}

// report prints "LABEL ROWS rows sha256 HASH kernel KERNEL" for the statement named stmt, run on the leader.
func report(ctx context.Context, db *sql.Conn, stmts map[string]string, label, stmt string) error {
	var kernel string
	if err := db.QueryRowContext(ctx, stmts["kernel"]).Scan(&kernel); err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	n, sum, err := hashQuery(ctx, db, stmts[stmt])
	if err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	fmt.Printf("%s %d rows sha256 %s kernel %s\n", label, n, sum, kernel)
	return nil
}

// hashQuery runs a query of (id, REAL) rows and returns their count and hash (see the top of the file).
func hashQuery(ctx context.Context, db *sql.Conn, query string) (int, string, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return 0, "", err
	}
	defer rows.Close()
	var h hash.Hash = sha256.New()
	n := 0
	for rows.Next() {
		var id int64
		var v sql.NullFloat64
		if err := rows.Scan(&id, &v); err != nil {
			return 0, "", err
		}
		if v.Valid {
			fmt.Fprintf(h, "%d %016x\n", id, math.Float64bits(v.Float64))
		} else {
			fmt.Fprintf(h, "%d null\n", id)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, "", err
	}
	return n, fmt.Sprintf("%x", h.Sum(nil)), nil
}

// rnn-dqlite-node: a dqlite node (go-dqlite's app package, as dqlite-demo) with sqlite-rnn linked in, the way a
// Go application that embeds dqlite gets the rnn_* functions. Built by `make cluster-node` (tests/cluster/
// cluster.mk) into build/rnn-dqlite-node; tests/cluster/run.sh runs it as the third node of its cluster.
//
//	rnn-dqlite-node --db 127.0.0.1:9003 -D /var/lib/node3 [--join 127.0.0.1:9001,...]
//
// Unlike LD_PRELOAD of build/rnn_autoload.so, this needs no GO_DQLITE_MULTITHREAD=1 and leaves SQLite in the
// single-thread mode go-dqlite chose: Go runs the init of every imported package (go-dqlite's calls
// sqlite3_config(SQLITE_CONFIG_SINGLETHREAD), which works only before SQLite is initialised) before main, and
// main then calls sqlite3_auto_extension (which initialises SQLite) before the node opens any database.
// Stops on SIGINT or SIGTERM, handing leadership over first.
package main

/*
#cgo LDFLAGS: ${SRCDIR}/../../../build/static/librnn.a -lsqlite3 -lm -pthread
#include <sqlite3.h>
int sqlite3_rnn_init(sqlite3 *db, char **err, const sqlite3_api_routines *api);
static int rnn_register(void) { return sqlite3_auto_extension((void (*)(void))sqlite3_rnn_init); }
*/
import "C"

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/canonical/go-dqlite/app"
	"golang.org/x/sys/unix"
)

func main() {
	address := flag.String("db", "", "address of this node, host:port")
	dir := flag.String("D", "", "data directory of this node")
	join := flag.String("join", "", "comma-separated addresses of nodes of the cluster to join")
	flag.Parse()
	if err := run(*address, *dir, *join); err != nil {
		fmt.Fprintf(os.Stderr, "rnn-dqlite-node: %v\n", err)
		os.Exit(1)
	}
}

func run(address, dir, join string) error {
	if address == "" || dir == "" {
		return fmt.Errorf("give --db host:port and -D directory")
	}
	// go-dqlite's package init has configured SQLite by now; registering initialises it.
	if rc := C.rnn_register(); rc != C.SQLITE_OK {
		return fmt.Errorf("sqlite3_auto_extension(sqlite3_rnn_init): %s", C.GoString(C.sqlite3_errstr(rc)))
	}
	if err := os.MkdirAll(dir, 0755); err != nil {
		return err
	}
	var cluster []string
	if join != "" {
		cluster = strings.Split(join, ",")
	}
	node, err := app.New(dir, app.WithAddress(address), app.WithCluster(cluster))
	if err != nil {
		return err
	}
	ready, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := node.Ready(ready); err != nil {
		return err
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, unix.SIGINT, unix.SIGTERM)
	<-stop
	handover, cancelHandover := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelHandover()
	node.Handover(handover)
	return node.Close()
}

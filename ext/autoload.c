/*
** autoload.c: rnn_autoload.so, the extension for programs that link the system
** libsqlite3 and never call sqlite3_load_extension(): dqlite's nodes and shells.
**
**   make autoload                                   # build/rnn_autoload.so
**   GO_DQLITE_MULTITHREAD=1 LD_PRELOAD=$PWD/build/rnn_autoload.so \
**     dqlite-demo --api 127.0.0.1:8001 --db 127.0.0.1:9001
**   dqlite -s 127.0.0.1:9001 rnn "SELECT rnn_version()"   -- 0.1.0, on the leader
**
** The library holds the ext/ sources compiled with -DSQLITE_CORE (build/static/
** librnn.a) and this file. When the dynamic loader maps it, its constructor
** registers sqlite3_rnn_init with sqlite3_auto_extension, so every connection
** the process opens afterwards has the rnn_* functions.
**
** Rules kept:
**  1. Nothing but the registration happens at load: no table, no connection, no
**     state of ours (sqlite3_auto_extension keeps the list inside SQLite).
**  2. sqlite3_auto_extension initialises SQLite, and a program that calls
**     sqlite3_config() afterwards gets SQLITE_MISUSE. go-dqlite does exactly that
**     in its package init (SQLITE_CONFIG_SINGLETHREAD) and panics on failure
**     unless GO_DQLITE_MULTITHREAD=1 is set, which makes it skip the call: set it
**     for every dqlite program started with this library (README "Scaling out").
**  3. A failed registration cannot be returned to anyone (a constructor has no
**     caller); it is written to stderr, naming the library and SQLite's reason,
**     and the process runs on without the functions.
*/
#include <sqlite3.h>
#include <stdio.h>

int sqlite3_rnn_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);

__attribute__((constructor)) static void rnn_autoload(void) {
  int rc = sqlite3_auto_extension((void (*)(void))sqlite3_rnn_init);
  if (rc != SQLITE_OK) {
    fprintf(stderr, "rnn_autoload.so: sqlite3_auto_extension(sqlite3_rnn_init) failed: %s\n", sqlite3_errstr(rc));
  }
}

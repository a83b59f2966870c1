// Command server is the trivial HTTP server the load generator comparison
// runs against: every request gets a 200 with a two-byte body.
package main

import (
	"flag"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8099", "listen address (loopback only)")
	flag.Parse()
	body := []byte("ok")
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(body) })
	log.Fatal(http.ListenAndServe(*addr, h))
}

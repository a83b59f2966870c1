// Package wire holds the shapes of ratelab's scripts API on the wire: the
// paths, the JSON bodies of requests and responses, the scope names of
// rate-limit policies and the one table between error codes and HTTP
// statuses. The server (package ratelab/httpapi) and the Go client
// (package ratelab/client) both import it, so that the two sides cannot
// drift apart, and neither reaches into the other.
//
// It depends on the domain package only, and on nothing the server needs
// (metrics, YAML), so that importing the client stays light.
package wire

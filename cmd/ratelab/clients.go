package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
)

func init() {
	register(&command{name: "clients", summary: "manage OAuth clients: clients create --org NAME", run: runClients})
}

const clientsDescription = `Creates an OAuth client (client-credentials grant) in an org, creating the
org when missing, and prints the new credentials as one JSON object on
stdout: {"org", "client_id", "client_secret"}. The secret is stored only as
a hash and shown only here. It works while a server runs on the same
database. Limits and data are per org.`

// createdClient is the output of clients create.
type createdClient struct {
	Org          string `json:"org"`
	OrgID        string `json:"org_id"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

func runClients(ctx context.Context, env *environ, args []string) error {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(env.stderr, "Usage: ratelab clients create --org NAME [--db sqlite:PATH|postgres://…]")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			return nil
		}
		return &exitError{code: 2}
	}
	fs := newFlagSet(env, "clients create", "clients create --org NAME [flags]", clientsDescription)
	org := fs.String("org", "", "org `name` (created when missing); required")
	dbSpec := fs.String("db", envDefault(env, "RATELAB_DB", "sqlite:./ratelab.db"), "database: sqlite:PATH or a postgres:// `URL`")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *org == "" {
		return errors.New("--org is required")
	}
	db, err := openDB(ctx, *dbSpec, slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	defer db.Close()
	o, err := db.EnsureOrg(ctx, *org)
	if err != nil {
		return fmt.Errorf("org %q: %w", *org, err)
	}
	cl, secret, err := db.CreateClient(ctx, o.ID, "", "")
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	enc := json.NewEncoder(env.stdout)
	return enc.Encode(createdClient{Org: o.Name, OrgID: o.ID, ClientID: cl.ID, ClientSecret: secret})
}

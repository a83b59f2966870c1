package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"time"
)

func init() {
	register(&command{name: "clients", summary: "manage OAuth clients: clients create|list|rotate|delete", run: runClients})
}

const clientsUsage = `Usage: ratelab clients create --org NAME [--db sqlite:PATH|postgres://…]
       ratelab clients list              [--db …]
       ratelab clients rotate CLIENT_ID  [--db …]
       ratelab clients delete CLIENT_ID  [--db …]`

const clientsDescription = `Manages the OAuth clients (client-credentials grant) of the database; each
works while a server runs on the same database, and takes effect at once.

  create  creates a client in an org (creating the org when missing) and
          prints {"org", "org_id", "client_id", "client_secret"}
  list    prints one {"client_id", "org_id", "dateCreated"} a line, oldest first
  rotate  gives the client a new random secret, revokes its tokens and
          prints {"client_id", "client_secret"}
  delete  deletes the client; its tokens stop working at once

A secret is stored only as a hash and shown only by create and rotate.`

// createdClient is the output of clients create.
type createdClient struct {
	Org          string `json:"org"`
	OrgID        string `json:"org_id"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

// rotatedClient is the output of clients rotate.
type rotatedClient struct {
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
}

func runClients(ctx context.Context, env *environ, args []string) error {
	sub := ""
	if len(args) > 0 {
		sub = args[0]
	}
	switch sub {
	case "create", "list", "rotate", "delete":
	case "-h", "--help", "help":
		fmt.Fprintln(env.stderr, clientsUsage+"\n\n"+clientsDescription)
		return nil
	default:
		fmt.Fprintln(env.stderr, clientsUsage)
		return &exitError{code: 2}
	}
	fs := newFlagSet(env, "clients "+sub, "clients "+sub+" [flags]", clientsDescription)
	dbSpec := fs.String("db", envDefault(env, "RATELAB_DB", "sqlite:./ratelab.db"), "database: sqlite:PATH or a postgres:// `URL`")
	var org *string
	if sub == "create" {
		org = fs.String("org", "", "org `name` (created when missing); required")
	}
	id, err := parseClientArgs(fs, sub, args[1:])
	if err != nil {
		return err
	}
	db, err := openDB(ctx, *dbSpec, slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	defer db.Close()
	enc := json.NewEncoder(env.stdout)
	switch sub {
	case "create":
		o, err := db.EnsureOrg(ctx, *org)
		if err != nil {
			return fmt.Errorf("org %q: %w", *org, err)
		}
		cl, secret, err := db.CreateClient(ctx, o.ID, "", "")
		if err != nil {
			return fmt.Errorf("create client: %w", err)
		}
		return enc.Encode(createdClient{Org: o.Name, OrgID: o.ID, ClientID: cl.ID, ClientSecret: secret})
	case "list":
		list, err := db.ListClients(ctx)
		if err != nil {
			return fmt.Errorf("list clients: %w", err)
		}
		for _, c := range list {
			if err := enc.Encode(struct {
				ClientID  string    `json:"client_id"`
				OrgID     string    `json:"org_id"`
				CreatedAt time.Time `json:"dateCreated"`
			}{c.ID, c.OrgID, c.CreatedAt}); err != nil {
				return err
			}
		}
		return nil
	case "rotate":
		secret, err := db.RotateSecret(ctx, id, "")
		if err != nil {
			return fmt.Errorf("rotate: %w", err)
		}
		return enc.Encode(rotatedClient{ClientID: id, ClientSecret: secret})
	default: // delete
		if err := db.DeleteClient(ctx, id); err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		fmt.Fprintf(env.stderr, "deleted client %q and its tokens\n", id)
		return nil
	}
}

// parseClientArgs parses a clients subcommand's flags and its one
// positional argument, the client id of rotate and delete.
func parseClientArgs(fs *flag.FlagSet, sub string, args []string) (string, error) {
	if err := parseInterspersed(fs, args); err != nil {
		return "", err
	}
	needID := sub == "rotate" || sub == "delete"
	switch {
	case needID && fs.NArg() == 0:
		return "", fmt.Errorf("clients %s: a CLIENT_ID is required", sub)
	case needID && fs.NArg() > 1, !needID && fs.NArg() > 0:
		return "", fmt.Errorf("unexpected argument %q", fs.Arg(fs.NArg()-1))
	case sub == "create" && fs.Lookup("org").Value.String() == "":
		return "", errors.New("--org is required")
	}
	return fs.Arg(0), nil
}

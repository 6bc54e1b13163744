//go:build noscopedpgx

package main

import (
	"context"
	"net/http"
)

// pgxSkipped says why the pgx comparison is not in this build.
const pgxSkipped = "pgx comparison (E/F) skipped: built with -tags noscopedpgx"

type pgxSide struct{ hand, scoped http.Handler }

func openPgx(context.Context, config, queries) (*pgxSide, error) { return nil, nil }

func (p *pgxSide) inUse() int { return 0 }

func (p *pgxSide) close() {}

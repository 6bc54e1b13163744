// Package adapters shows, as examples that compile and run with the tests,
// that any session type works with scoped: a *sqlx.Tx with no
// configuration, and a gorm transaction with explicit teardown options
// and savepoints for nested units of work (scoped.WithNesting).
// It lives in the examples module, not in the library's, so that sqlx,
// gorm and SQLite never enter the module graph of a program that imports
// scoped.
package adapters

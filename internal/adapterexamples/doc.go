// Package adapterexamples shows, as examples that compile and run with the
// tests, that any session type works with scoped: a *sqlx.Tx with no
// configuration, and a gorm transaction with explicit teardown options.
// It holds nothing but those tests, so that sqlx and gorm never enter the
// imports of the library itself.
package adapterexamples

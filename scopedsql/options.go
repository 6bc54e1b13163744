package scopedsql

// An Option configures [Open].
type Option interface{ apply(*openOptions) }

type openOptions struct {
	requireDefault bool
}

func defaultOpenOptions() openOptions { return openOptions{requireDefault: true} }

type optionFunc func(*openOptions)

func (f optionFunc) apply(o *openOptions) { f(o) }

// RequireDefault says whether [Open] fails when no engine is named
// [DefaultEngine]. It does by default, so that a configuration that
// forgot the engine most code uses fails at start, not at the first query.
// RequireDefault(false) is for applications whose engines all have names
// of their own.
func RequireDefault(required bool) Option {
	return optionFunc(func(o *openOptions) { o.requireDefault = required })
}

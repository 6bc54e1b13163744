package scopedconnect

import "reflect"

// walk calls f on err and every error it wraps, depth first, until f
// returns true, as errors.As traverses the tree.
func walk(err error, f func(error) bool) bool {
	for err != nil {
		if f(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if walk(e, f) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}

// mysqlErrorNumber returns the Number of a go-sql-driver/mysql
// *MySQLError, or 0. It reads the field by reflection so that this package
// does not pull a MySQL driver into every Connect server's build.
func mysqlErrorNumber(err error) uint16 {
	v := reflect.ValueOf(err)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return 0
	}
	v = v.Elem()
	if v.Kind() != reflect.Struct || v.Type().Name() != "MySQLError" {
		return 0
	}
	n := v.FieldByName("Number")
	if !n.IsValid() || n.Kind() != reflect.Uint16 {
		return 0
	}
	return uint16(n.Uint())
}

package testenv

import (
	"net/url"
	"testing"
)

// IcebergSQL returns the PostgreSQL URL, password included, of the test SQL catalog.
func IcebergSQL(t testing.TB) string {
	t.Helper()
	return reachableURL(t, "KARCH_TEST_ICEBERG_SQL")
}

// IcebergREST returns the base URL of the test REST catalog.
func IcebergREST(t testing.TB) string {
	t.Helper()
	return reachableURL(t, "KARCH_TEST_ICEBERG_REST")
}

func reachableURL(t testing.TB, name string) string {
	t.Helper()
	v := mustEnv(t, name)
	u, err := url.Parse(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	reachable(t, name, u.Host)
	return v
}
